"""The attack registry: every attack by name, with a parameter schema.

The app and the notebooks build their controls from :class:`ParamSpec`; the benchmark
iterates :data:`ATTACKS`.  An attack joins the registry with the :func:`register_attack`
decorator, which also

* checks at import time that the schema's defaults are the function's defaults, so the
  two cannot drift apart, and
* validates every call's hyper-parameters against the schema, raising
  :class:`~explorer.errors.InputError` for an unknown name or a value out of range.

``print(get_attack("alma_prox"))`` shows every hyper-parameter with its default.
"""
from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from explorer.errors import InputError

#: Keyword arguments every attack accepts that are not hyper-parameters.
COMMON_KEYWORDS = ("targeted", "masks", "adv_threshold", "callback", "record_maps")


@dataclass(frozen=True)
class ParamSpec:
    """One hyper-parameter: name, type, default, allowed range or choices, help text.

    ``type`` is one of ``float``, ``int``, ``bool``, ``str``.  ``low``/``high`` bound
    numbers (inclusive); ``choices`` lists the allowed strings; ``log`` says a slider for
    it should be logarithmic; ``symbol`` is the paper's notation.
    """

    name: str
    type: type
    default: Any
    help: str
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Optional[Tuple[str, ...]] = None
    log: bool = False
    symbol: str = ""

    def validate(self, value: Any, attack: str = "") -> Any:
        """Return ``value`` converted to this parameter's type, or raise :class:`InputError`."""
        where = f"{attack}: " if attack else ""
        if self.type is bool:
            if isinstance(value, bool):
                return value
            raise InputError(f"{where}{self.name} must be true or false; got {value!r}")
        if self.type is str:
            if self.choices is not None and value not in self.choices:
                raise InputError(f"{where}{self.name} must be one of {list(self.choices)}; got {value!r}")
            return str(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise InputError(f"{where}{self.name} must be a number; got {value!r}") from None
        if not math.isfinite(value):
            raise InputError(f"{where}{self.name} must be finite; got {value!r}")
        if self.type is int:
            if float(value) != int(value):
                raise InputError(f"{where}{self.name} must be a whole number; got {value!r}")
            value = int(value)
        else:
            value = float(value)
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise InputError(f"{where}{self.name} must be in [{self.low}, {self.high}]; got {value!r}")
        return value

    def describe(self) -> str:
        """One line: name = default, range, help."""
        if self.choices:
            domain = " | ".join(self.choices)
        elif self.low is not None or self.high is not None:
            domain = f"[{self.low}, {self.high}]" + (" log" if self.log else "")
        else:
            domain = self.type.__name__
        symbol = f" ({self.symbol})" if self.symbol else ""
        return f"{self.name}{symbol} = {self.default!r}  {domain}  — {self.help}"


#: The success threshold ν, shared by every attack.
ADV_THRESHOLD = ParamSpec("adv_threshold", float, 0.99, "APSR needed to call an image fooled",
                          low=1e-6, high=1.0, symbol="ν")


@dataclass
class AttackSpec:
    """A registered attack: the function, what it is, and its parameter schema."""

    name: str
    function: Callable
    title: str
    kind: str  # "minimal-norm" or "fixed-budget"
    summary: str
    reference: str
    params: Tuple[ParamSpec, ...]
    presets: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    targeted_support: bool = True

    def param(self, name: str) -> ParamSpec:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def defaults(self) -> Dict[str, Any]:
        """Hyper-parameter defaults by name."""
        return {p.name: p.default for p in self.params}

    def validate(self, params: Mapping[str, Any]) -> Dict[str, Any]:
        """Check hyper-parameters against the schema; return them converted.

        Unknown names raise :class:`InputError` listing the accepted ones.  Common keywords
        (``targeted``, ``masks``, ...) pass through, ``adv_threshold`` range-checked.
        """
        known = {p.name: p for p in self.params}
        out: Dict[str, Any] = {}
        for name, value in params.items():
            if name in known:
                out[name] = known[name].validate(value, self.name)
            elif name == "adv_threshold":
                out[name] = ADV_THRESHOLD.validate(value, self.name)
            elif name in COMMON_KEYWORDS:
                out[name] = value
            else:
                raise InputError(f"{self.name} has no parameter {name!r}; its parameters are "
                                 f"{sorted(known) + list(COMMON_KEYWORDS)}")
        return out

    def __call__(self, model, images, labels, **kwargs):
        return self.function(model, images, labels, **kwargs)

    def __str__(self) -> str:
        lines = [f"{self.title} [{self.name}, {self.kind}] — {self.summary}", f"  ref: {self.reference}"]
        lines += ["  " + p.describe() for p in self.params]
        if self.presets:
            lines.append("  presets: " + ", ".join(self.presets))
        return "\n".join(lines)


#: name -> AttackSpec, in registration order
ATTACKS: Dict[str, AttackSpec] = {}


def get_attack(name: str) -> AttackSpec:
    """The registered attack called ``name`` (raises :class:`InputError` listing the known ones)."""
    try:
        return ATTACKS[name]
    except KeyError:
        raise InputError(f"unknown attack {name!r}; known attacks: {sorted(ATTACKS)}") from None


def register_attack(name: str, *, title: str, kind: str, summary: str, reference: str,
                    params: Sequence[ParamSpec], presets: Optional[Dict[str, Dict[str, Any]]] = None,
                    targeted_support: bool = True):
    """Decorator adding an attack function to :data:`ATTACKS` with its schema.

    The decorated function validates its keyword arguments against the schema before
    running.  A schema whose defaults differ from the function's raises at import.
    """
    if kind not in ("minimal-norm", "fixed-budget"):
        raise ValueError(f"kind must be 'minimal-norm' or 'fixed-budget', got {kind!r}")

    def decorate(function: Callable) -> Callable:
        signature = inspect.signature(function)
        for p in params:
            if p.name not in signature.parameters:
                raise TypeError(f"{name}: schema parameter {p.name!r} is not an argument of {function.__name__}")
            default = signature.parameters[p.name].default
            if default != p.default:
                raise TypeError(f"{name}: schema default {p.name}={p.default!r} differs from "
                                f"the function's {default!r}")
        for preset in (presets or {}).values():
            for key in preset:
                if key not in {p.name for p in params}:
                    raise TypeError(f"{name}: preset sets unknown parameter {key!r}")

        spec = AttackSpec(name=name, function=function, title=title, kind=kind, summary=summary,
                          reference=reference, params=tuple(params), presets=dict(presets or {}),
                          targeted_support=targeted_support)

        @functools.wraps(function)
        def validated(model, images, labels, **kwargs):
            return function(model, images, labels, **spec.validate(kwargs))

        validated.spec = spec
        spec.function = validated
        if name in ATTACKS:
            raise ValueError(f"attack {name!r} registered twice")
        ATTACKS[name] = spec
        return validated

    return decorate
