#!/usr/bin/env python3
"""Start the app the way the Hugging Face Space does, from a fresh virtual environment.

    python scripts/simulate_space.py                      # --torch auto: see below
    python scripts/simulate_space.py --torch pinned       # the exact torch pair of requirements.txt
    python scripts/simulate_space.py --python python3.10  # the Space's Python, when one is at hand

1. copies what a push would carry (``git ls-files --cached --others --exclude-standard``: the
   tracked files and new files git does not ignore, as they are in the working tree) to a
   temporary folder;
2. creates a fresh venv there and installs what the Space builder installs, in its order:
   ``pip install -r requirements.txt``, then ``gradio[oauth]==<sdk_version>`` (README.md's front
   matter), ``uvicorn>=0.14.0`` and ``spaces`` (ZeroGPU's package);
3. imports ``spaces`` and the app's ZeroGPU-decorated handlers (the decorator is effect-free off
   ZeroGPU), then runs ``python app.py`` with the Space's environment (GRADIO_SERVER_NAME=0.0.0.0,
   a port, SYSTEM=spaces, SPACE_ID) and waits until ``/`` answers 200, ``/config`` reports
   gradio ``<sdk_version>`` and ``/gradio_api/info`` lists the app's endpoints;
4. stops the app and deletes the temporary folder (``--keep`` keeps it). Exit 0 only if the app served.

``--torch``: ``pinned`` installs requirements.txt exactly as written (torch's CUDA build from
PyPI: a download of about 3 GB). ``local`` replaces only the torch/torchvision lines by a pair
available locally (default: the versions installed beside this script's Python), and says so
loudly. ``auto`` (default) takes ``pinned`` when pip would fetch the pinned wheels from a local
source (a wheel folder or local index) and ``local`` otherwise.

What it cannot check: the real ZeroGPU (GPU allocation, ``@spaces.GPU`` taking effect), CUDA
torch on a GPU, and — unless ``--python`` names one — the Space's Python version.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import space_requirements  # noqa: E402  (this folder's sibling script)

TORCH_PACKAGES = ("torch", "torchvision")
START = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - START:7.1f}s] {message}", flush=True)


def banner(message: str) -> None:
    line = "!" * 96
    print(f"\n{line}\n{message}\n{line}\n", flush=True)


# pip's note for every package on a machine whose pip configuration names local indexes that
# lack it: noise, not a finding
PIP_NOISE = re.compile(r"^WARNING: Location 'file:.*' is ignored: it is neither a file nor a directory\.$")


def run(command: list[str], **kwargs) -> None:
    """Run a command, streaming its output (less pip's local-index noise); raise on failure."""
    shown = [part if "\n" not in part else part.splitlines()[0] + " ..." for part in command]
    say("$ " + " ".join(shown))
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", **kwargs) as process:
        for line in process.stdout:
            if not PIP_NOISE.match(line.rstrip("\n")):
                print(line, end="", flush=True)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         check=True, capture_output=True).stdout.decode()
    return sorted({p for p in out.split("\0") if p and (ROOT / p).is_file()})


def copy_tree(paths: list[str], destination: Path) -> int:
    size = 0
    for relative in paths:
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)
        size += target.stat().st_size
    return size


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def pinned_versions(requirements: str) -> dict[str, str]:
    pins = {}
    for line in requirements.splitlines():
        name, sep, version = line.partition("==")
        if sep and name.strip() in TORCH_PACKAGES:
            pins[name.strip()] = version.split(";")[0].strip()
    return pins


def local_pair(argument: str | None) -> dict[str, str]:
    if argument:
        torch, vision = (v.strip() for v in argument.split(","))
        return {"torch": torch, "torchvision": vision}
    try:
        return {name: importlib.metadata.version(name).split("+")[0] for name in TORCH_PACKAGES}
    except importlib.metadata.PackageNotFoundError:
        sys.exit("--torch local needs --local-torch-versions TORCH,TORCHVISION (none installed beside this Python)")


def resolves_locally(python: Path, versions: dict[str, str], scratch: Path) -> bool:
    """Whether pip would take these exact wheels from a local source (file:// URLs)."""
    report = scratch / "torch-dry-run.json"
    result = subprocess.run([str(python), "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps",
                             "--ignore-installed", "--report", str(report),
                             *[f"{name}=={version}" for name, version in versions.items()]],
                            capture_output=True, text=True)
    if result.returncode != 0 or not report.exists():
        say(f"pip cannot resolve {versions} here: {result.stderr.strip().splitlines()[-1:]}")
        return False
    urls = [item["download_info"]["url"] for item in json.loads(report.read_text())["install"]]
    return bool(urls) and all(url.startswith("file:") for url in urls)


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def site_packages_summary(venv: Path) -> str:
    (site,) = list(venv.glob("lib/python*/site-packages"))
    cuda = sum(folder_size(site / name) for name in ("torch", "nvidia", "triton") if (site / name).exists())
    return (f"venv {folder_size(venv) / 1e9:.2f} GB, of which torch + nvidia + triton {cuda / 1e9:.2f} GB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--torch", choices=("auto", "pinned", "local"), default="auto",
                        help="which torch/torchvision to install (default: auto)")
    parser.add_argument("--local-torch-versions", metavar="TORCH,TORCHVISION",
                        help="the pair --torch local installs (default: the versions installed beside this Python)")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter the venv is made from (default: this one)")
    parser.add_argument("--port", type=int, default=0, help="port to serve on (default: a free one)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the app to serve")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (venv, copy, app log)")
    args = parser.parse_args(argv)

    card = space_requirements.read_front_matter(ROOT)
    sdk_version, app_file = card["sdk_version"], card.get("app_file", "app.py")
    space_python = card.get("python_version", "3.10 (the Hub's default)")
    requirements = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    if space_requirements.main(["--check"]) != 0:
        say("WARNING: requirements.txt is not what pyproject.toml generates; the simulation installs it as it is")

    scratch = Path(tempfile.mkdtemp(prefix="space-sim-"))
    app_dir, venv = scratch / "app", scratch / "venv"
    app = None
    served = False
    try:
        files = tracked_files()
        size = copy_tree(files, app_dir)
        say(f"copied {len(files)} files ({size / 1e6:.1f} MB) to {app_dir}")

        run([args.python, "-m", "venv", str(venv)])
        python = venv / "bin" / "python"
        version = subprocess.run([str(python), "-c", "import platform; print(platform.python_version())"],
                                 check=True, capture_output=True, text=True).stdout.strip()
        if not (version + ".").startswith(space_python + "."):
            banner(f"NOTE: this venv runs Python {version}; the Space runs python_version {space_python} "
                   "(ZeroGPU: 3.10.13). Use --python to choose another interpreter.")
        run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])

        pinned = pinned_versions(requirements)
        mode = args.torch
        if mode == "auto":
            mode = "pinned" if resolves_locally(python, pinned, scratch) else "local"
            say(f"--torch auto: the pinned pair {pinned} is {'' if mode == 'pinned' else 'not '}available "
                f"from a local source -> {mode}")
        install_file = app_dir / "requirements.txt"
        if mode == "local":
            local = local_pair(args.local_torch_versions)
            banner(f"LOCAL TORCH: installing torch=={local['torch']} torchvision=={local['torchvision']} INSTEAD OF\n"
                   f"requirements.txt's torch=={pinned.get('torch')} torchvision=={pinned.get('torchvision')} "
                   "(the Space's pair is not checked by this run;\nuse --torch pinned to download it). "
                   "Every other line of requirements.txt is installed as written.")
            lines = []
            for line in requirements.splitlines():
                name = line.partition("==")[0].strip()
                lines.append(f"{name}=={local[name]}" if name in TORCH_PACKAGES and "==" in line else line)
            install_file = scratch / "requirements.local-torch.txt"
            install_file.write_text("\n".join(lines) + "\n", encoding="utf-8")

        step = time.monotonic()
        run([str(python), "-m", "pip", "install", "--quiet", "-r", str(install_file)], cwd=app_dir)
        say(f"requirements installed in {time.monotonic() - step:.0f}s")
        step = time.monotonic()
        run([str(python), "-m", "pip", "install", "--quiet", f"gradio[oauth]=={sdk_version}", "uvicorn>=0.14.0",
             "spaces"], cwd=app_dir)
        say(f"gradio {sdk_version} + spaces installed in {time.monotonic() - step:.0f}s")
        say(site_packages_summary(venv))

        env = {**os.environ, "GRADIO_SERVER_NAME": "0.0.0.0", "SYSTEM": "spaces",
               "SPACE_ID": "local/seg-attack-explorer-simulation", "PYTHONUNBUFFERED": "1",
               "GRADIO_ANALYTICS_ENABLED": "False"}
        env.pop("PYTHONPATH", None)
        probe = ("import importlib.metadata as m, spaces, spaces.config, torch, torchvision, gradio\n"
                 "import explorer.ui as ui\n"
                 "print('python', __import__('platform').python_version(), '| torch', torch.__version__,\n"
                 "      '| torchvision', torchvision.__version__, '| gradio', gradio.__version__,\n"
                 "      '| spaces', m.version('spaces'), '| cuda available', torch.cuda.is_available())\n"
                 "assert callable(ui.attack_on_gpu) and callable(ui.compare_on_gpu)\n"
                 "print('spaces imported; ZeroGPU here:', spaces.config.Config.zero_gpu,\n"
                 "      '| GPU streams:', ui.attack_on_gpu, ui.compare_on_gpu)\n")
        run([str(python), "-c", probe], cwd=app_dir, env=env)

        port = args.port or free_port()
        env["GRADIO_SERVER_PORT"] = str(port)
        log_path = scratch / "app.log"
        say(f"starting {app_file} on port {port} (log: {log_path})")
        with open(log_path, "wb") as log:
            app = subprocess.Popen([str(python), app_file], cwd=app_dir, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline and app.poll() is None:
            try:
                status, _ = fetch(base + "/", timeout=5)
                if status == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(1)
        else:
            state = "exited with " + str(app.returncode) if app.poll() is not None else "timed out"
            say(f"FAILED: the app never answered 200 on / ({state}); its log ends with:")
            print(log_path.read_text(errors="replace")[-4000:])
            return 1
        say(f"GET / -> 200 after {time.monotonic() - (deadline - args.timeout):.1f}s")
        status, body = fetch(base + "/config")
        config = json.loads(body) if status == 200 else {}
        say(f"GET /config -> {status}, gradio version {config.get('version')}, space_id {config.get('space_id')}")
        status_info, body = fetch(base + "/gradio_api/info")
        info = json.loads(body) if status_info == 200 else {}
        endpoints = sorted(info.get("named_endpoints", {}))
        say(f"GET /gradio_api/info -> {status_info}, {len(endpoints)} named endpoints: {', '.join(endpoints)}")
        served = (status == 200 and config.get("version") == sdk_version and status_info == 200
                  and "/run" in endpoints and "/compare" in endpoints)
        if not served:
            say("FAILED: the app answered, but not as expected (gradio version or endpoints); log tail:")
            print(log_path.read_text(errors="replace")[-4000:])
        return 0 if served else 1
    except subprocess.CalledProcessError as error:
        say(f"FAILED: {' '.join(map(str, error.cmd))[:300]} exited with {error.returncode}")
        return 1
    finally:
        if app is not None and app.poll() is None:
            os.killpg(app.pid, signal.SIGTERM)
            try:
                app.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(app.pid, signal.SIGKILL)
                app.wait()
            say(f"stopped the app (exit status {app.returncode})")
        if args.keep:
            say(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
            say(f"removed {scratch}")
        say(f"{'SERVED' if served else 'NOT SERVED'}: total {time.monotonic() - START:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
