"""The Hugging Face Space can be pushed and built: README.md's front matter within the Hub's
rules, requirements.txt generated from pyproject.toml (gradio left to sdk_version, torch pinned to
a ZeroGPU release), and every binary or large file routed to LFS by .gitattributes.

Everything is read from the live repository (git ls-files, pyproject.toml, README.md), so files
and dependencies added later are checked too. See docs/app.md, "Deploying the Space".
"""
from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
HUB_COLOURS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}  # Spaces config reference
HUB_SDKS = {"gradio", "docker", "static"}  # Spaces config reference (streamlit left the list)
SHORT_DESCRIPTION_LIMIT = 60  # characters; the Hub rejects a longer short_description
HUB_PLAIN_FILE_LIMIT = 10_000_000  # bytes; the Hub takes larger files only through LFS/Xet


def load_script():
    spec = importlib.util.spec_from_file_location("space_requirements", ROOT / "scripts" / "space_requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


space = load_script()


@pytest.fixture(scope="module")
def pyproject():
    return space.load_pyproject(ROOT)


@pytest.fixture(scope="module")
def card():
    """README.md's front matter, parsed as YAML the way the Hub reads it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "README.md must start with a --- YAML front matter block"
    return yaml.safe_load(match.group(1))


def requirement_names(text: str) -> list[str]:
    return [canonicalize_name(Requirement(line).name) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def gradio_requirement(pyproject) -> Requirement:
    (req,) = [r for r in space.dependencies(pyproject) if canonicalize_name(r.name) == "gradio"]
    return req


# --- requirements.txt ---------------------------------------------------------------------------

def test_requirements_txt_is_the_generated_text(pyproject):
    committed = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert committed == space.render(pyproject, space.read_front_matter(ROOT)), \
        "requirements.txt is stale: run python scripts/space_requirements.py"


def test_requirements_hold_every_dependency_but_gradio(pyproject):
    names = requirement_names((ROOT / "requirements.txt").read_text(encoding="utf-8"))
    assert "gradio" not in names, "the Space installs gradio from sdk_version; a gradio line fights it"
    expected = [canonicalize_name(r.name) for r in space.dependencies(pyproject)
                if canonicalize_name(r.name) != "gradio"]
    assert names == expected


def test_pins_satisfy_pyproject_and_are_exact_in_requirements(pyproject):
    pins = space.space_pins(pyproject)
    assert {"torch", "torchvision"} <= set(pins)
    ranges = {canonicalize_name(r.name): r.specifier for r in space.dependencies(pyproject)}
    lines = {canonicalize_name(Requirement(line).name): Requirement(line)
             for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")}
    for name, version in pins.items():
        assert name in ranges, f"pin for {name}, which is no [project] dependency"
        assert ranges[name].contains(Version(version), prereleases=True), f"{name}=={version} vs {ranges[name]}"
        assert str(lines[name].specifier) == f"=={version}"


def test_torch_pair_is_one_zerogpu_supports(pyproject):
    pins = space.space_pins(pyproject)
    assert space.ZEROGPU_TORCH_PAIRS.get(pins["torch"]) == pins["torchvision"]


def test_check_mode_fails_on_a_stale_file_and_passes_once_written(tmp_path, capsys):
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "requirements.txt").write_text("torch\ngradio\n", encoding="utf-8")
    assert space.main(["--check"], root=tmp_path) == 1
    assert (tmp_path / "requirements.txt").read_text(encoding="utf-8") == "torch\ngradio\n"  # --check writes nothing
    assert space.main([], root=tmp_path) == 0
    assert space.main(["--check"], root=tmp_path) == 0
    assert (tmp_path / "requirements.txt").read_text() == (ROOT / "requirements.txt").read_text()


def test_bad_pins_are_refused(pyproject):
    import copy
    for pins, message in [({"torch": "2.7.1", "torchvision": "0.22.1"}, "ZeroGPU"),
                          ({"torch": "2.11.0", "torchvision": "0.23.0"}, "ZeroGPU"),
                          ({"torch": "2.11.0", "torchvision": "0.26.0", "gradio": "6.0"}, "sdk_version"),
                          ({"torch": "2.11.0", "torchvision": "0.26.0", "left-pad": "1.0"}, "no \\[project\\]")]:
        bad = copy.deepcopy(pyproject)
        bad["tool"]["explorer"]["space"]["pins"] = pins
        with pytest.raises(space.SpaceConfigError, match=message):
            space.requirement_lines(bad)
    below = copy.deepcopy(pyproject)
    below["project"]["dependencies"] = [d if not d.startswith("torch>") else "torch>=2.12"
                                        for d in below["project"]["dependencies"]]
    with pytest.raises(space.SpaceConfigError, match="outside"):
        space.requirement_lines(below)


# --- README.md front matter ---------------------------------------------------------------------

def test_sdk_version_satisfies_pyprojects_gradio(pyproject, card):
    assert isinstance(card["sdk_version"], str)
    assert gradio_requirement(pyproject).specifier.contains(Version(card["sdk_version"]))


def test_front_matter_within_the_hubs_rules(card):
    assert card["sdk"] == "gradio" and card["sdk"] in HUB_SDKS  # ZeroGPU runs Gradio Spaces only
    assert card["colorFrom"] in HUB_COLOURS and card["colorTo"] in HUB_COLOURS
    assert isinstance(card["short_description"], str)
    assert 0 < len(card["short_description"]) <= SHORT_DESCRIPTION_LIMIT, len(card["short_description"])
    assert isinstance(card["title"], str) and card["title"].strip()
    # a string "3.x" or "3.x.x": unquoted, YAML would read 3.10 as the number 3.1
    assert isinstance(card["python_version"], str) and re.fullmatch(r"3\.\d+(\.\d+)?", card["python_version"])
    assert (ROOT / card["app_file"]).is_file()
    assert card["license"] == "mit"
    assert is_single_emoji(card["emoji"]), card["emoji"]


def test_the_script_reads_the_front_matter_as_yaml_does(card):
    simple = space.read_front_matter(ROOT)
    for key, value in card.items():
        if isinstance(value, str):
            assert simple[key] == value, key


def is_single_emoji(text: str) -> bool:
    """One emoji: a pictograph, optionally with a variation selector or skin tone, or several
    joined by ZWJ into one glyph; or a flag (two regional indicators)."""
    if not isinstance(text, str) or not text:
        return False
    parts = text.replace("\ufe0f", "").split("\u200d")
    for part in parts:
        symbols = [c for c in part if not 0x1F3FB <= ord(c) <= 0x1F3FF]  # skin tones
        flag = len(symbols) == 2 and all(0x1F1E6 <= ord(c) <= 0x1F1FF for c in symbols)
        if not flag and (len(symbols) != 1 or unicodedata.category(symbols[0]) != "So"):
            return False
    return True


def test_emoji_rule_itself():
    assert is_single_emoji("🎯") and is_single_emoji("❤️") and is_single_emoji("👩‍🔬") and is_single_emoji("🇫🇷")
    assert not is_single_emoji("🎯🎯") and not is_single_emoji("a") and not is_single_emoji("🎯 x")


# --- .gitattributes -----------------------------------------------------------------------------

def git(*args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["git", "-C", str(ROOT), *args], input=stdin, capture_output=True, check=True).stdout


@pytest.fixture(scope="module")
def repository_files() -> list[str]:
    """Every file the Space would receive: tracked, plus new files git does not ignore."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    try:
        git("rev-parse", "--is-inside-work-tree")
    except subprocess.CalledProcessError:
        pytest.skip("not a git work tree")
    paths = git("ls-files", "-z", "--cached", "--others", "--exclude-standard").decode().split("\0")
    return sorted({p for p in paths if p and (ROOT / p).is_file()})


def is_binary(path: Path) -> bool:
    """git's rule: a NUL byte among the first 8000 bytes."""
    with open(path, "rb") as handle:
        return b"\0" in handle.read(8000)


def attributes(paths: list[str]) -> dict[str, dict[str, str]]:
    out = git("check-attr", "-z", "--stdin", "filter", "diff", "merge", "text",
              stdin="\0".join(paths).encode() + b"\0").decode().split("\0")
    result: dict[str, dict[str, str]] = {}
    for path, name, value in zip(out[0::3], out[1::3], out[2::3]):
        result.setdefault(path, {})[name] = value
    return result


def test_every_binary_and_large_file_goes_through_lfs(repository_files):
    needs_lfs = [p for p in repository_files
                 if is_binary(ROOT / p) or (ROOT / p).stat().st_size > HUB_PLAIN_FILE_LIMIT]
    assert any(p.endswith(".safetensors") for p in needs_lfs) and any(p.endswith(".png") for p in needs_lfs)
    attrs = attributes(needs_lfs)
    wrong = sorted(p for p in needs_lfs
                   if attrs.get(p) != {"filter": "lfs", "diff": "lfs", "merge": "lfs", "text": "unset"})
    kinds = sorted({Path(p).suffix or p for p in wrong})
    assert not wrong, (f"{len(wrong)} files outside LFS, e.g. {wrong[:3]}: add {kinds} to .gitattributes "
                       "as `*.ext filter=lfs diff=lfs merge=lfs -text`")


def test_the_repository_holds_real_files_not_lfs_pointers(repository_files):
    """Tests and CI (a clone without git-lfs) read the weights and images themselves: LFS is for
    the Space's copy only (docs/app.md, "Deploying the Space")."""
    pointers = []
    for p in repository_files:
        with open(ROOT / p, "rb") as handle:
            if handle.read(48).startswith(b"version https://git-lfs.github.com/spec/"):
                pointers.append(p)
    assert not pointers, (f"LFS pointer files where real files belong: {pointers[:5]}; commit the real "
                          "content with git-lfs's filters off (docs/app.md, 'Deploying the Space')")


def test_small_text_files_stay_out_of_lfs(repository_files):
    """README.md (the Space's configuration), code and notebooks must stay readable git blobs."""
    text = [p for p in repository_files
            if not is_binary(ROOT / p) and (ROOT / p).stat().st_size <= HUB_PLAIN_FILE_LIMIT]
    assert "README.md" in text and "app.py" in text
    attrs = attributes(text)
    assert not [p for p in text if attrs[p]["filter"] == "lfs"]


def test_check_mode_runs_as_a_script():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "space_requirements.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
