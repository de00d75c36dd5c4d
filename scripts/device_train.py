"""Train the street models on a lent accelerator within one command's time (issues 17 and 18).

A session lent the GPU machine has 15 minutes of it in all, one command at most 10 of them.
This script is that command, prepared so that the minutes go to training:

1. one pool of street scenes is rendered by every CPU core (:func:`render_pool` with workers)
   and kept on the GPU for all stages;
2. each job's seconds per step are measured on the device (a few timed clean steps of its
   network at its batch size; an adversarial step costs ``1 + steps x fraction`` of them), and
   its step count is its share of ``--budget-s`` — so the schedule still depends on the step
   count only, and the card's command reruns the stage;
3. the jobs run in order (a job may start from an earlier job's model), each written as a
   shipped model folder and packed as ``<OUT>/<name>.tar`` (the device returns at most 8 files);
4. ``<OUT>/device_train.json`` lists each job's steps, seconds and validation numbers.

Jobs (``--jobs``, in this order):

* ``street-unet``: a new stage of the shipped default street U-Net (``--init-from``), large
  pool, batch 32 — issue 17's mIoU lever that a CPU cannot afford;
* ``street-segformer``: SegFormer-B0 from scratch — issue 17's second architecture family;
* ``street-unet-robust``: SegPGD-AT (ε = 8/255, 5 × 2/255, half of each batch, [Gu2022]'s
  settings) from ``street-unet``'s result when it ran, else from the shipped model — issue 18.

Back on the CPU machine: unpack the folders, then ``python -m explorer.bench.model_report`` with
``EXPLORER_WEIGHTS_DIR`` pointing at them measures their fragility before anything is shipped.

On the device (the image has torch, timm, safetensors, huggingface_hub, not
segmentation-models-pytorch: carry its wheel, see ``scripts/device_train.sh``)::

    bash scripts/device_train.sh          # OUT, BUDGET_S, JOBS from the environment

A dry run here, on the CPU, in seconds::

    python scripts/device_train.py --device cpu --budget-s 4 --pool-size 8 --batch-size 2 \\
        --validation-images 2 --out /tmp/device_train
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.data.worlds import WORLDS  # noqa: E402
from explorer.models.architectures import build_network  # noqa: E402
from explorer.models.registry import WEIGHTS_DIR  # noqa: E402
from explorer.tools.adversarial_training import SEGPGD_AT, AdversarialRecipe  # noqa: E402
from explorer.tools.train import command_line, normalize, prepare_device, render_pool, train, training_device  # noqa: E402


@dataclass(frozen=True)
class Job:
    """One training stage of the plan: what it trains, from where, and its share of the budget."""

    name: str
    arch: str
    lr: float
    share: float
    init_from: Optional[str] = None  # a shipped model's name, or an earlier job's name
    adversarial: Optional[AdversarialRecipe] = None
    balance: float = 0.75


JOBS = {
    "street-unet": Job("street-unet-mobilenet", "unet-mobilenet", lr=1e-3, share=0.35,
                       init_from="street-unet-mobilenet"),
    "street-segformer": Job("street-segformer-b0", "segformer-b0", lr=6e-4, share=0.35),
    "street-unet-robust": Job("street-unet-mobilenet-robust", "unet-mobilenet", lr=5e-4, share=0.30,
                              init_from="street-unet-mobilenet", adversarial=SEGPGD_AT),
}


def seconds_per_step(arch: str, batch_size: int, size, device: torch.device, timed: int = 5) -> float:
    """Seconds of one clean training step (forward, backward, AdamW) of ``arch`` at ``batch_size``
    on ``device``, from ``timed`` steps after two warm-up steps on random scenes."""
    num_classes = WORLDS["street"].dataset.num_classes
    net = build_network(arch, num_classes).to(device).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.rand(batch_size, 3, *size, device=device)
    y = torch.randint(0, num_classes, (batch_size, *size), device=device)

    def step():
        loss = F.cross_entropy(net(normalize(x)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(timed):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / timed


def planned_steps(job: Job, budget_s: float, clean_step_s: float, batch_size: int) -> int:
    """The job's step count: its share of the budget over its cost per step (an adversarial step
    costs its clean step plus ``steps x fraction`` more forward+backward passes)."""
    cost = clean_step_s
    if job.adversarial is not None:
        cost *= 1 + job.adversarial.steps * job.adversarial.attacked(batch_size) / batch_size
    return max(1, int(job.share * budget_s / cost))


def pack(folder: Path, out: Path) -> Path:
    """``<out>/<folder name>.tar`` holding the model folder (one file back from the device)."""
    archive = out / f"{folder.name}.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "device_results")))
    parser.add_argument("--jobs", default=",".join(JOBS), help=f"comma-separated, from {list(JOBS)}")
    parser.add_argument("--budget-s", type=float, default=400.0, help="training seconds for all jobs together")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pool-size", type=int, default=20000)
    parser.add_argument("--shuffle-fraction", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--render-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--work", type=Path, default=None,
                        help="where the model folders are written (default: a new temporary folder; "
                             "only the .tar files go to --out)")
    parser.add_argument("--validation-images", type=int, default=None,
                        help="evaluate on the first N validation scenes (a dry run; default all 200)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.jobs.split(",") if n.strip()]
    unknown = [n for n in names if n not in JOBS]
    if unknown or not names:
        parser.error(f"--jobs must name some of {list(JOBS)}, got {args.jobs!r}")
    for flag, value in (("--budget-s", args.budget_s), ("--batch-size", args.batch_size),
                        ("--pool-size", args.pool_size), ("--render-workers", args.render_workers)):
        if not value > 0:
            parser.error(f"{flag} must be positive, got {value}")
    if args.pool_size < args.batch_size:
        parser.error(f"--pool-size ({args.pool_size}) must hold at least one batch ({args.batch_size})")
    device = training_device(args.device)
    prepare_device(device)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="device_train_"))
    size = WORLDS["street"].train_size
    started = time.perf_counter()

    pool = render_pool("street", args.pool_size, size, args.shuffle_fraction, args.seed, workers=args.render_workers)
    render_s = time.perf_counter() - started
    step_s = {arch: seconds_per_step(arch, args.batch_size, size, device)
              for arch in dict.fromkeys(JOBS[n].arch for n in names)}
    report = {"device": str(device), "pool": args.pool_size, "render_s": round(render_s, 1),
              "clean_step_s": {k: round(v, 5) for k, v in step_s.items()}, "jobs": []}
    done: Dict[str, Path] = {}
    for name in names:
        job = JOBS[name]
        steps = planned_steps(job, args.budget_s, step_s[job.arch], args.batch_size)
        init_from = done.get(job.init_from) or (WEIGHTS_DIR / job.init_from if job.init_from else None)
        out_dir = work / job.name
        settings = {"world": "street", "arch": job.arch, "steps": steps, "batch_size": args.batch_size,
                    "lr": job.lr, "pool_size": args.pool_size, "shuffle_fraction": args.shuffle_fraction,
                    "seed": args.seed, "balance": job.balance, "init_from": init_from,
                    "adversarial": job.adversarial.as_dict() if job.adversarial else None, "device": device.type}
        print(f"{name}: {steps} steps of batch {args.batch_size} on {device} from {init_from or 'scratch'}", flush=True)
        card = train("street", job.arch, out_dir, steps, args.batch_size, job.lr, args.pool_size,
                     args.shuffle_fraction, args.seed, size, command_line(settings, threads=None),
                     balance=job.balance, init_from=init_from, checkpoint=None, adversarial=job.adversarial,
                     device=str(device), pool=pool, validation_images=args.validation_images)
        done[job.name] = out_dir
        archive = pack(out_dir, args.out)
        report["jobs"].append({"job": name, "model": job.name, "steps": steps,
                               "time_s": card["stages"][-1]["time_s"], "archive": archive.name,
                               "miou": round(card["validation"]["miou"], 4),
                               "pixel_accuracy": round(card["validation"]["pixel_accuracy"], 4),
                               "validation_images": card["validation"]["num_images"]})
        (args.out / "device_train.json").write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["jobs"][-1]), flush=True)
    report["total_s"] = round(time.perf_counter() - started, 1)
    (args.out / "device_train.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"done in {report['total_s']} s; unpack with: for f in <files_at>/*.tar; do tar -xf $f -C <folder>; done")


if __name__ == "__main__":
    main()
