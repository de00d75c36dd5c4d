"""The attack registry: every attack by name, with a parameter schema.

The app and the notebooks build their controls from :class:`ParamSpec`; the benchmark
iterates :data:`ATTACKS`.  An attack joins the registry with the :func:`register_attack`
decorator, which also

* checks at import time that the schema's defaults are the function's defaults, so the
  two cannot drift apart, and
* validates every call's keyword arguments before the attack runs, raising
  :class:`~explorer.errors.InputError` for an unknown name, a value out of range or of the
  wrong kind (``True`` for a number, ``"no"`` for ``targeted``, a callback that cannot
  be called).
* records the hyper-parameters each call ran with (defaults included) in the result's
  ``params`` (:func:`record_hyperparameters`).

Hyper-parameters shared by several attacks (:data:`EPS`, :data:`RANDOM_INIT`,
:data:`OBJECTIVE`, :data:`APGD_TRACK`, :data:`PROX_SOLVER_PARAM`, :data:`SEARCH_STEPS`, :data:`EPS_MAX`,
:func:`steps_param`, :func:`step_ratio_param`) are defined here, once.

Values from an untrusted source (a run file, a web form) go through
:meth:`AttackSpec.validate_hyperparameters`, which accepts the schema's hyper-parameters
and ``adv_threshold`` only — never ``callback``, ``masks``, ``record_maps`` or ``targeted``.

``print(get_attack("alma_prox"))`` shows every hyper-parameter with its default.
"""
from __future__ import annotations

import functools
import inspect
import math
import numbers
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from explorer.attacks.losses import OBJECTIVES
from explorer.attacks.prox import PROX_SOLVERS
from explorer.errors import InputError

#: Keyword arguments every attack accepts that are not hyper-parameters.
COMMON_KEYWORDS = ("targeted", "masks", "adv_threshold", "callback", "record_maps")
#: Keywords that only a program may pass (they carry code, tensors or the attack's mode):
#: :meth:`AttackSpec.validate_hyperparameters` refuses them.
PROGRAM_KEYWORDS = ("targeted", "masks", "callback", "record_maps")


def is_boolean(value: Any) -> bool:
    """Whether ``value`` is a true boolean (``bool`` or ``numpy.bool_``), not 0/1 or a string."""
    return isinstance(value, (bool, np.bool_))


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` on one short line, for error messages.

    A huge integer is described by its size (its ``repr`` would fill a screen, and past
    4300 digits Python refuses to write it); a tensor by its dtype and shape.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of about {int(value.bit_length() * math.log10(2))} digits"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if torch.is_tensor(value) and value.numel() != 1:
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    try:
        text = " ".join(repr(value).split())
    except Exception:  # a hostile __repr__ must not hide the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 1] + "…"


def as_number(value: Any, what: str):
    """``value`` as a Python ``int`` or ``float``, or :class:`InputError` naming ``what``.

    Booleans are refused (``True`` would silently become 1), integers stay exact
    (``10**400`` is kept as an int, so range checks cannot overflow), strings must spell a
    number, and anything else must convert with ``float()``.
    """
    if is_boolean(value) or (torch.is_tensor(value) and value.dtype == torch.bool):
        raise InputError(f"{what} must be a number, not true/false; got {short_repr(value)}")
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)  # '1e400' becomes inf and is refused as not finite
        except ValueError:
            raise InputError(f"{what} must be a number; got {short_repr(value)}") from None
    if isinstance(value, numbers.Integral) or (torch.is_tensor(value) and not value.is_floating_point()):
        try:
            return operator.index(value)
        except (TypeError, ValueError, RuntimeError):
            pass
    try:
        return float(value)
    except OverflowError:
        raise InputError(f"{what} is too large to be a number; got {short_repr(value)}") from None
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"{what} must be a number; got {short_repr(value)}") from None


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
        """Return ``value`` converted to this parameter's type, or raise :class:`InputError`.

        Numbers are checked strictly, because values also come from run files and web
        forms: ``True``/``False`` are not numbers (Python would read them as 1 and 0), a
        string must spell a number, and an integer too large for a float (``10**400``) is
        refused with the parameter's range instead of escaping as an ``OverflowError``.
        """
        where = f"{attack}: " if attack else ""
        if self.type is bool:
            if is_boolean(value):
                return bool(value)
            raise InputError(f"{where}{self.name} must be true or false; got {short_repr(value)}")
        if self.type is str:
            if not isinstance(value, str) or (self.choices is not None and value not in self.choices):
                accepted = f"one of {list(self.choices)}" if self.choices is not None else "a string"
                raise InputError(f"{where}{self.name} must be {accepted}; got {short_repr(value)}")
            return str(value)
        number = as_number(value, f"{where}{self.name}")
        domain = f" in [{self.low}, {self.high}]" if (self.low is not None or self.high is not None) else ""
        if isinstance(number, float):
            if not math.isfinite(number):
                raise InputError(f"{where}{self.name} must be a finite number{domain}; got {short_repr(value)}")
            if self.type is int and not number.is_integer():
                raise InputError(f"{where}{self.name} must be a whole number; got {short_repr(value)}")
        # Python compares an int with a float bound exactly, without converting (no overflow)
        if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
            raise InputError(f"{where}{self.name} must be{domain}; got {short_repr(value)}")
        try:
            return int(number) if self.type is int else float(number)
        except OverflowError:  # only reachable without bounds
            raise InputError(f"{where}{self.name} is too large; got {short_repr(value)}") from None

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

# ----------------------------------------------------------------------------------------
# Hyper-parameters shared by several attacks, written once
# ----------------------------------------------------------------------------------------

#: Radius of the ℓ∞ ball of the fixed-budget attacks (PGD, SegPGD, CosPGD, APGD, TsallisPGD, SEA).
EPS = ParamSpec("eps", float, 8 / 255, "radius of the ℓ∞ ball, pixel units of [0, 1] images (8/255 ≈ 0.031)",
                low=0.0, high=1.0, symbol="ε")
#: Whether a fixed-budget attack starts from a uniform draw in the ε-ball.
RANDOM_INIT = ParamSpec("random_init", bool, True, "start from a uniform draw in the ε-ball")
#: The objective a PGD-like attack maximises, one of :data:`explorer.attacks.losses.OBJECTIVES`.
OBJECTIVE = ParamSpec("loss", str, "ce", "objective maximised (explorer.attacks.losses.OBJECTIVES)",
                      choices=tuple(OBJECTIVES))
#: What drives the step-size control of the APGD optimiser (APGD, TsallisPGD, SEA's members): the
#: per-image CE over ``M`` (-CE to the target when targeted), as both authors' codes do, or the attack's own
#: objective (our behaviour before issue 21).  The gradient always follows the objective.
APGD_TRACK = ParamSpec(
    "track", str, "ce", "what APGD's step-size control and restart point follow: per-image CE ('ce', as the "
    "authors' code) or the attack's own objective ('objective')", choices=("ce", "objective"))
#: How the proximity operator is solved (ALMA prox and PDPGD).  Both solvers give the same
#: operator to within ``prox_tolerance``; the histogram bracketing takes a third of the time.
#: The default stays [Rony2023]'s ternary search, with which every recorded benchmark number
#: was made: on borderline images the attack's trajectory is chaotic, so even a 1e-7 change
#: in the prox can move an image across the APSR threshold (docs/benchmarks.md).
PROX_SOLVER_PARAM = ParamSpec(
    "prox_solver", str, "ternary", "how the prox is solved: [Rony2023]'s ternary search ('ternary', "
    "Algorithm 1) or bracketing f' by histograms ('histogram', 3x faster)", choices=tuple(PROX_SOLVERS))
#: Bisection steps on ε of the minimal-norm bisection attacks ([Rony2023] §5.5).
SEARCH_STEPS = ParamSpec("search_steps", int, 13, "bisection steps on ε", low=1, high=40)
#: Upper end of the bisection attacks' search interval.
EPS_MAX = ParamSpec("eps_max", float, 1.0, "upper end of the search interval (pixel units)",
                    low=1e-6, high=1.0, log=True, symbol="ε_max")


def steps_param(default: int) -> ParamSpec:
    """The ``num_steps`` spec of the fixed-budget attacks (T iterations), with default ``default``."""
    return ParamSpec("num_steps", int, default, "iterations (each one forward and one backward)",
                     low=1, high=100_000, symbol="T")


def step_ratio_param(default: float, help: str = "step size α as a fraction of ε") -> ParamSpec:
    """The ``step_ratio`` spec of the sign-gradient attacks: the step α as a fraction of ε."""
    return ParamSpec("step_ratio", float, default, help, low=1e-4, high=2.0, log=True, symbol="α/ε")


def validate_common(name: str, value: Any, attack: str = "") -> Any:
    """Check one of :data:`COMMON_KEYWORDS`; return it converted, or raise :class:`InputError`.

    Protects the attack from arguments that Python would happily misread: ``targeted="no"``
    (a non-empty string is truthy, so the attack would run *targeted*), ``record_maps=1``,
    a ``callback`` that is not callable (it would fail only at the first iteration, after
    the model already ran) and ``masks`` that are not a boolean (N, H, W) tensor (their
    match with the images' shape is checked by :func:`explorer.attacks.core.check_inputs`).
    """
    where = f"{attack}: " if attack else ""
    if name in ("targeted", "record_maps"):
        if not is_boolean(value):
            raise InputError(f"{where}{name} must be True or False; got {short_repr(value)}")
        return bool(value)
    if name == "adv_threshold":
        return ADV_THRESHOLD.validate(value, attack)
    if name == "callback":
        if value is not None and not callable(value):
            raise InputError(f"{where}callback must be None or a function taking an IterationRecord; "
                             f"got {short_repr(value)}")
        return value
    if name == "masks":
        if value is not None and (not torch.is_tensor(value) or value.dtype != torch.bool or value.ndim != 3):
            got = (f"a {value.dtype} tensor of shape {tuple(value.shape)}" if torch.is_tensor(value)
                   else short_repr(value))
            raise InputError(f"{where}masks must be None or a boolean (torch.bool) tensor of shape (N, H, W); "
                             f"got {got}")
        return value
    raise KeyError(name)


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
    #: attacks run one after another on each image (SEA's members); 1 for a single attack.
    #: A function of the call's hyper-parameters (defaults filled in) when the ensemble is one
    #: of them; read it through :meth:`ensemble_count`
    ensemble_size: Union[int, Callable[[Mapping[str, Any]], int]] = 1

    def param(self, name: str) -> ParamSpec:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def defaults(self) -> Dict[str, Any]:
        """Hyper-parameter defaults by name."""
        return {p.name: p.default for p in self.params}

    def label(self, params: Optional[Mapping[str, Any]] = None) -> str:
        """The title with the budget it runs with, as [Rony2023]'s tables name the bisection
        attacks: "I-FGSM 13×20" is 13 search steps of 20 iterations; others: the title."""
        values = {**self.defaults(), **(params or {})}
        if "search_steps" not in values:
            return self.title
        return f"{self.title} {int(values['search_steps'])}×{int(values['num_steps'])}"

    def ensemble_count(self, params: Optional[Mapping[str, Any]] = None) -> int:
        """How many attacks a call with ``params`` (defaults fill the rest) runs in turn on each image."""
        if callable(self.ensemble_size):
            return int(self.ensemble_size({**self.defaults(), **(params or {})}))
        return self.ensemble_size

    def gradient_passes(self, params: Mapping[str, Any]) -> int:
        """The forward+backward passes of the model a call with ``params`` (validated
        hyper-parameters; defaults fill the rest) makes per image at most: ``num_steps`` per
        bisection step (``search_steps``), per restart (``restarts``), per ensemble member.
        The bisection attacks report one record per search step, the others one per pass.
        What a GPU is booked for (:mod:`explorer.ui`)."""
        values = {**self.defaults(), **params}
        count = self.ensemble_count(values)
        for name in ("num_steps", "search_steps", "restarts"):
            count *= int(values.get(name, 1))
        return count

    def validate(self, params: Mapping[str, Any]) -> Dict[str, Any]:
        """Check a call's keyword arguments against the schema; return them converted.

        Unknown names raise :class:`InputError` listing the accepted ones.  Hyper-parameters
        are checked by their :class:`ParamSpec`, the common keywords by
        :func:`validate_common` (``targeted`` and ``record_maps`` real bools, ``callback``
        callable, ``masks`` a boolean tensor, ``adv_threshold`` in range), so a bad
        argument is refused before the model runs.  For values from an untrusted source
        use :meth:`validate_hyperparameters`.
        """
        return self._validate(params, allow_program_keywords=True)

    def validate_hyperparameters(self, params: Mapping[str, Any]) -> Dict[str, Any]:
        """Check hyper-parameters from an untrusted source (a run file, a web form).

        Accepts only the schema's hyper-parameters and ``adv_threshold``, converted as by
        :meth:`validate`.  ``targeted``, ``masks``, ``callback`` and ``record_maps`` are
        refused with :class:`InputError`: they are set by the program that runs the
        attack, and a file must not be able to smuggle in code (a callback), tensors or
        the attack's mode.  ``params`` must be a mapping with string keys.
        """
        return self._validate(params, allow_program_keywords=False)

    def _validate(self, params: Mapping[str, Any], allow_program_keywords: bool) -> Dict[str, Any]:
        if not isinstance(params, Mapping):
            raise InputError(f"{self.name}: parameters must be a mapping of name to value; "
                             f"got {type(params).__name__}")
        known = {p.name: p for p in self.params}
        accepted = sorted(known) + (list(COMMON_KEYWORDS) if allow_program_keywords else ["adv_threshold"])
        out: Dict[str, Any] = {}
        for name, value in params.items():
            if not isinstance(name, str):
                raise InputError(f"{self.name}: parameter names must be strings; got {short_repr(name)}")
            if name in known:
                out[name] = known[name].validate(value, self.name)
            elif name == "adv_threshold":
                out[name] = ADV_THRESHOLD.validate(value, self.name)
            elif name in COMMON_KEYWORDS and allow_program_keywords:
                out[name] = validate_common(name, value, self.name)
            elif name in PROGRAM_KEYWORDS:
                raise InputError(f"{self.name}: {name!r} is not a hyper-parameter and cannot be set here; "
                                 f"accepted: {accepted}")
            else:
                raise InputError(f"{self.name} has no parameter {short_repr(name)}; its parameters are {accepted}")
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
    """The registered attack called ``name`` (raises :class:`InputError` listing the known ones,
    whatever ``name`` is)."""
    spec = ATTACKS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise InputError(f"unknown attack {repr(name)[:60]}; known attacks: {sorted(ATTACKS)}")
    return spec


def record_hyperparameters(result, hyperparameters: Mapping[str, Any]):
    """Put the call's ``hyperparameters`` in ``result.params`` (and its members'); return ``result``.

    ``hyperparameters`` are the values the attack ran with, by name in schema order (its
    defaults applied).  Keys a run recorded itself (an ensemble member's ``loss``) come
    after them and take precedence.  Called by :func:`register_attack`'s wrapper on the
    :class:`~explorer.attacks.core.AttackResult` the attack returned, so an attack never
    writes its hyper-parameters out a second time; no state is shared between calls, so
    attacks may run concurrently in threads.
    """
    result.params = {**hyperparameters, **result.params}
    for member in (result.members or {}).values():
        member.params = {**hyperparameters, **member.params}
    return result


def register_attack(name: str, *, title: str, kind: str, summary: str, reference: str,
                    params: Sequence[ParamSpec], presets: Optional[Dict[str, Dict[str, Any]]] = None,
                    targeted_support: bool = True,
                    ensemble_size: Union[int, Callable[[Mapping[str, Any]], int]] = 1):
    """Decorator adding an attack function to :data:`ATTACKS` with its schema.

    The decorated function validates its keyword arguments against the schema before
    running, binds them to the function's signature (defaults applied) and records the
    schema's hyper-parameters of the call in the result's ``params``
    (:func:`record_hyperparameters`): an attack writes each hyper-parameter in its schema,
    its signature and where it uses it, never in a hand-made ``params`` dict.  A schema
    whose defaults differ from the function's raises at import.
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
                          targeted_support=targeted_support, ensemble_size=ensemble_size)

        @functools.wraps(function)
        def validated(model, images, labels, **kwargs):
            kwargs = spec.validate(kwargs)
            call = signature.bind(model, images, labels, **kwargs)
            call.apply_defaults()
            result = function(model, images, labels, **kwargs)
            return record_hyperparameters(result, {p.name: call.arguments[p.name] for p in spec.params})

        validated.spec = spec
        spec.function = validated
        if name in ATTACKS:
            raise ValueError(f"attack {name!r} registered twice")
        ATTACKS[name] = spec
        return validated

    return decorate
