"""The wheel is what gets installed: built from the checkout and installed into a fresh virtual
environment, it must hold everything the installed explorer reads, and run.

* the wheel's file list: the sample index and every sample and label PNG, the majority target,
  every shipped model's config, weights and cards, ``py.typed``, the licence; its METADATA
  (``License-Expression: MIT``, the version of :data:`explorer.__version__`) and console scripts;
* from the installed package: a sample and the default shipped model load, and it predicts;
* the installed ``explorer-app`` command serves the app (HTTP 200 on ``/`` and its config).

The virtual environment has no system site packages: the checkout's editable install lives in
this interpreter's site-packages as a ``.pth`` file that installs an import hook, and ``-I`` does
not stop ``.pth`` files, so ``--system-site-packages`` would let the checkout leak in.  Instead a
``.pth`` file in the environment lists this interpreter's site-packages folders as plain paths
(torch, gradio, ... without downloads); a folder listed that way is put on ``sys.path`` but its
own ``.pth`` files are not run, so the hook never is, and the installed copy comes first.  The
checks then prove it: ``explorer.__file__``, the samples and the weights lie inside the
environment.  Nothing is downloaded (``--no-index``, ``--no-build-isolation``).
"""
from __future__ import annotations

import email.parser
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import zipfile
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Dict, List, Optional

import pytest

import explorer
from explorer.models import DEFAULT_MODEL

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "explorer"
SAMPLES = PACKAGE / "data" / "sample_images"
WEIGHTS = PACKAGE / "models" / "weights"
#: what the build reads: the pyproject, what it names (readme, licence) and the package
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE", "explorer")
APP_START_S = 180


def run(command: List[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """Run ``command``; on failure, fail the test with its output."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(map(str, command))} exited {done.returncode}\n{done.stdout[-3000:]}\n"
                    f"{done.stderr[-3000:]}")
    return done


def clean_environment(venv: Optional[Path] = None) -> Dict[str, str]:
    """This environment without anything that points Python or the explorer elsewhere
    (``PYTHONPATH``, ``EXPLORER_SAMPLES_DIR``, ``EXPLORER_WEIGHTS_DIR``, ...), offline."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "EXPLORER_", "GRADIO_")) and k not in ("VIRTUAL_ENV", "PIP_TARGET")}
    env.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_NO_INPUT="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def host_site_packages() -> List[str]:
    """This interpreter's site-packages folders (where torch, gradio, ... are installed)."""
    return [entry for entry in dict.fromkeys(sys.path)
            if Path(entry).name in ("site-packages", "dist-packages") and Path(entry).is_dir()]


def expected_files() -> List[str]:
    """The data files of the checkout that the installed package reads."""
    index = json.loads((SAMPLES / "index.json").read_text())
    names = [s["name"] for s in index["samples"]]
    assert names, "the checkout's sample index lists no sample"
    files = ["explorer/py.typed", "explorer/data/sample_images/index.json",
             "explorer/data/sample_images/street_majority_target.png"]
    for name in names:
        files += [f"explorer/data/sample_images/{name}.png", f"explorer/data/sample_images/{name}_labels.png"]
    models = sorted(card.parent.name for card in WEIGHTS.glob("*/card.json"))
    assert DEFAULT_MODEL in models
    for model in models:
        files += [f"explorer/models/weights/{model}/{leaf}"
                  for leaf in ("config.json", "model.safetensors", "card.json", "README.md")]
    return files


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the checkout's build inputs (a stale ``build/`` folder of
    the checkout cannot slip old files in), offline and without build isolation."""
    major = int(installed_version("setuptools").split(".")[0])
    assert major >= 77, "building needs setuptools>=77 (the test extra installs it)"
    root = tmp_path_factory.mktemp("wheel")
    source, out = root / "source", root / "dist"
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.checkpoint.pt*"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(out), str(source)], timeout=300, cwd=root, env=clean_environment())
    (built,) = out.glob("seg_attack_explorer-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed; the host's packages reachable."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    run([sys.executable, "-m", "venv", str(venv)], timeout=300, env=clean_environment())
    python = venv / "bin" / "python"
    site_packages = Path(run([str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             timeout=60, env=clean_environment(venv)).stdout.strip())
    (site_packages / "_host_packages.pth").write_text("\n".join(host_site_packages()) + "\n")
    run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], timeout=300,
        cwd=venv.parent, env=clean_environment(venv))
    return venv


def test_wheel_holds_every_file_the_package_reads(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        missing = [name for name in expected_files() if name not in names]
        assert not missing, f"the wheel lacks {missing}"
        sources = {p.relative_to(REPO).as_posix() for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
        assert not sources - names, f"the wheel lacks modules {sorted(sources - names)}"
        # real files, not Git LFS pointers
        for name in names:
            if name.endswith(".png"):
                assert archive.read(name)[:8] == b"\x89PNG\r\n\x1a\n", f"{name} is not a PNG"
        assert not [n for n in names if n.startswith(("sample_images/", "tests/"))]

        dist_info = {n.split("/", 1)[0] for n in names if n.split("/", 1)[0].endswith(".dist-info")}
        assert len(dist_info) == 1
        (dist_info,) = dist_info
        licences = [n for n in names if n.startswith(f"{dist_info}/") and n.rsplit("/", 1)[-1] == "LICENSE"]
        assert licences, "the wheel's dist-info holds no LICENSE"
        assert archive.read(licences[0]) == (REPO / "LICENSE").read_bytes()

        metadata = email.parser.Parser().parsestr(archive.read(f"{dist_info}/METADATA").decode())
        assert metadata["Name"] == "seg-attack-explorer"
        assert metadata["Version"] == explorer.__version__
        assert metadata["License-Expression"] == "MIT"
        assert "LICENSE" in metadata.get_all("License-File")
        requires = metadata.get_all("Requires-Dist")
        assert any(r.replace("-", "_").startswith("huggingface_hub") for r in requires)

        scripts = archive.read(f"{dist_info}/entry_points.txt").decode()
        assert "explorer-app = explorer.ui:main" in scripts
        assert "explorer-bench = explorer.bench.cli:main" in scripts
        assert "explorer-bench-core" not in scripts


CHECK = textwrap.dedent("""
    import importlib.metadata, json, sys
    import torch
    torch.set_num_threads(1)
    import explorer
    from explorer.data.samples import SAMPLES_DIR, list_samples, load_majority_target, load_sample
    from explorer.models import available_models, load_model, weights_dir

    name = list_samples("street")[0]
    image, labels, world = load_sample(name)
    model = load_model("%s", device="cpu")
    with torch.no_grad():
        logits = model(image[None])
    labelled = labels != 255
    accuracy = (logits.argmax(1)[0] == labels)[labelled].float().mean().item()
    print(json.dumps({
        "file": explorer.__file__, "version": explorer.__version__,
        "distribution": importlib.metadata.version("seg-attack-explorer"),
        "samples": str(SAMPLES_DIR), "weights": str(weights_dir()), "world": world,
        "logits": list(logits.shape), "image": list(image.shape), "accuracy": accuracy,
        "shipped": available_models("shipped"), "majority": list(load_majority_target().shape),
        "meta_path": [type(f).__name__ if not isinstance(f, type) else f.__name__ for f in sys.meta_path],
        "path": sys.path,
    }))
""") % DEFAULT_MODEL


def test_installed_package_loads_a_sample_and_the_default_model(venv, tmp_path):
    done = run([str(venv / "bin" / "python"), "-I", "-c", CHECK], timeout=300, cwd=tmp_path,
               env=clean_environment(venv))
    found = json.loads(done.stdout.strip().splitlines()[-1])
    inside = str(venv.resolve())
    for key in ("file", "samples", "weights"):
        path = str(Path(found[key]).resolve())
        assert path.startswith(inside + os.sep), f"{key} {path} is not the installed copy in {inside}"
        assert not path.startswith(str(REPO) + os.sep), f"{key} comes from the checkout: {path}"
    assert not [f for f in found["meta_path"] if "Editable" in f], found["meta_path"]
    assert str(REPO) not in found["path"]
    assert found["version"] == found["distribution"] == explorer.__version__
    assert found["world"] == "street"
    assert found["logits"][0] == 1 and found["logits"][2:] == found["image"][1:]
    assert found["accuracy"] > 0.5, "the installed default model does not segment its own sample"
    shipped = sorted(card.parent.name for card in WEIGHTS.glob("*/card.json"))
    assert sorted(found["shipped"]) == shipped
    assert found["majority"] == found["image"][1:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str) -> tuple:
    """(status, body) of a GET on ``url``, never through a proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


def answers(url: str) -> bool:
    try:
        return fetch(url)[0] == 200
    except OSError:  # not listening yet
        return False


def test_installed_explorer_app_command_serves_the_app(venv, tmp_path):
    command = venv / "bin" / "explorer-app"
    assert command.is_file(), "the wheel installed no explorer-app command"
    port = free_port()
    env = clean_environment(venv)
    env.update(GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1", EXPLORER_TMP=str(tmp_path / "files"),
               EXPLORER_DEVICE="cpu", PYTHONUNBUFFERED="1")  # the log names the URL as soon as it serves
    log = tmp_path / "app.log"
    with open(log, "w") as out:
        app = subprocess.Popen([str(command)], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        base, deadline = None, time.monotonic() + APP_START_S
        while base is None and time.monotonic() < deadline:
            assert app.poll() is None, f"explorer-app exited {app.returncode}:\n{log.read_text()[-4000:]}"
            for line in log.read_text().splitlines():  # gradio moves on when the port was taken meanwhile
                if "Running on local URL:" in line:
                    base = line.split("Running on local URL:", 1)[1].strip().rstrip("/")
            if base is None and answers(f"http://127.0.0.1:{port}/"):
                base = f"http://127.0.0.1:{port}"
            time.sleep(0.5)
        assert base, f"explorer-app did not start within {APP_START_S} s:\n{log.read_text()[-4000:]}"
        status, page = fetch(f"{base}/")
        assert status == 200 and b"<html" in page.lower(), (status, page[:200])
        status, config = fetch(f"{base}/config")
        assert status == 200, status
        assert DEFAULT_MODEL.encode() in config, "the served app does not offer the shipped default model"
        status, info = fetch(f"{base}/gradio_api/info")
        assert status == 200 and json.loads(info), status
    finally:
        app.terminate()
        try:
            app.wait(timeout=30)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait(timeout=30)
