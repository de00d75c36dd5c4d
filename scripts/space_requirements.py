#!/usr/bin/env python3
"""Write ``requirements.txt`` — what the Hugging Face Space installs — from ``pyproject.toml``.

    python scripts/space_requirements.py          # (re)write requirements.txt
    python scripts/space_requirements.py --check  # exit 1 when requirements.txt is not what this writes

One list of dependencies, ``[project].dependencies``, so the two files cannot drift:

* every dependency is written as pyproject states it, except
* ``gradio``: the Space builder installs ``gradio==<sdk_version>`` from README.md's front matter
  itself, and a second gradio requirement would only fight it;
* the packages named in ``[tool.explorer.space].pins`` get that exact version instead of their
  range (torch/torchvision: ZeroGPU runs only the torch releases it lists, and an unpinned torch
  pulls the newest CUDA stack on every build). A pin must satisfy pyproject's range, and the
  torch/torchvision pair must be one of :data:`ZEROGPU_TORCH_PAIRS`.

Standard library plus ``packaging`` (and ``tomli`` on Python 3.10): both come with pytest.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = "scripts/space_requirements.py"

# installed by the Space builder from README.md's sdk_version, never from requirements.txt
SDK_PACKAGES = ("gradio",)

# The torch releases ZeroGPU supports (huggingface/hub-docs, docs/hub/spaces-zerogpu.md,
# "Supported Versions", 2026-08: 2.8.0, 2.9.1, 2.10.0, 2.11.0; Python 3.10.13 or 3.12.12) and the
# torchvision release built for each (its wheel's metadata says ``Requires-Dist: torch==<that>``).
ZEROGPU_TORCH_PAIRS = {
    "2.8.0": "0.23.0",
    "2.9.1": "0.24.1",
    "2.10.0": "0.25.0",
    "2.11.0": "0.26.0",
}


class SpaceConfigError(ValueError):
    """pyproject.toml's dependencies and [tool.explorer.space] do not fit together."""


def load_pyproject(root: Path = ROOT) -> dict:
    with open(root / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)


def front_matter(text: str) -> dict[str, str]:
    """The top-level ``key: value`` scalars of README.md's YAML front matter (quotes removed).
    Enough for the keys these scripts read; the tests parse the block with a real YAML parser."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise SpaceConfigError("README.md does not start with a '---' front matter block")
    values: dict[str, str] = {}
    for line in lines[1:]:
        if line.strip() == "---":
            return values
        match = re.match(r"^([A-Za-z_][\w-]*):\s*(.*?)\s*$", line)
        if match:
            value = match.group(2)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[match.group(1)] = value
    raise SpaceConfigError("README.md's front matter block is not closed by '---'")


def read_front_matter(root: Path = ROOT) -> dict[str, str]:
    return front_matter((root / "README.md").read_text(encoding="utf-8"))


def dependencies(pyproject: dict) -> list[Requirement]:
    return [Requirement(text) for text in pyproject["project"]["dependencies"]]


def space_pins(pyproject: dict) -> dict[str, str]:
    """``[tool.explorer.space].pins`` by canonical package name."""
    pins = pyproject.get("tool", {}).get("explorer", {}).get("space", {}).get("pins", {})
    return {canonicalize_name(name): str(version) for name, version in pins.items()}


def validate(pyproject: dict) -> None:
    """Raise :class:`SpaceConfigError` when a pin names no dependency, falls outside pyproject's
    range, or torch/torchvision are not a pair ZeroGPU supports."""
    requirements = {canonicalize_name(req.name): req for req in dependencies(pyproject)}
    pins = space_pins(pyproject)
    for name, version in pins.items():
        if name not in requirements:
            raise SpaceConfigError(f"[tool.explorer.space] pins {name}, which is no [project] dependency")
        if name in SDK_PACKAGES:
            raise SpaceConfigError(f"{name} comes from README.md's sdk_version, not from a pin")
        if not requirements[name].specifier.contains(Version(version), prereleases=True):
            raise SpaceConfigError(f"pin {name}=={version} is outside pyproject's {requirements[name]}")
    torch, vision = pins.get("torch"), pins.get("torchvision")
    if torch is None or vision is None:
        raise SpaceConfigError("[tool.explorer.space] pins must give both torch and torchvision")
    if ZEROGPU_TORCH_PAIRS.get(torch) != vision:
        raise SpaceConfigError(f"torch {torch} / torchvision {vision} is not a pair ZeroGPU supports: "
                               f"{ZEROGPU_TORCH_PAIRS}")


def requirement_lines(pyproject: dict) -> list[str]:
    """The requirement lines, in pyproject's order."""
    validate(pyproject)
    pins = space_pins(pyproject)
    lines = []
    for req in dependencies(pyproject):
        name = canonicalize_name(req.name)
        if name in SDK_PACKAGES:
            continue
        if name in pins:
            extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
            marker = f"; {req.marker}" if req.marker else ""
            lines.append(f"{req.name}{extras}=={pins[name]}{marker}")
        else:
            lines.append(str(req))
    return lines


def render(pyproject: dict, readme: dict[str, str]) -> str:
    """The whole text of requirements.txt."""
    sdk_version = readme.get("sdk_version", "?")
    pins = space_pins(pyproject)
    header = [
        f"# Generated by {SCRIPT} from pyproject.toml: do not edit by hand.",
        f"# Regenerate: python {SCRIPT}  (CI compares: python {SCRIPT} --check)",
        "# What the Hugging Face Space installs; app.py imports the explorer package from the repository.",
        f"# gradio is left out on purpose: the Space builder installs gradio=={sdk_version} itself, from",
        "# sdk_version in README.md's front matter, and a gradio line here would fight it.",
        f"# torch=={pins.get('torch')} / torchvision=={pins.get('torchvision')} come from "
        "[tool.explorer.space] pins: a pair ZeroGPU supports.",
    ]
    return "\n".join(header + requirement_lines(pyproject)) + "\n"


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when requirements.txt differs from the generated text")
    args = parser.parse_args(argv)
    try:
        text = render(load_pyproject(root), read_front_matter(root))
    except SpaceConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    target = root / "requirements.txt"
    current = target.read_text(encoding="utf-8") if target.exists() else None
    if args.check:
        if current != text:
            print(f"requirements.txt is out of date: run python {SCRIPT}", file=sys.stderr)
            return 1
        print("requirements.txt is up to date")
        return 0
    if current != text:
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}")
    else:
        print("requirements.txt already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
