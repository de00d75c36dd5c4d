"""Train a small segmentation model on a procedural world and write it as a shipped model.

Usage::

    python -m explorer.tools.train --world street --arch fpn-mobilenet
    python -m explorer.tools.train --world street --arch segformer-b0 --steps 3000
    python -m explorer.tools.train --world objects --arch fpn-mobilenet \
        --out explorer/models/weights/objects-fpn-mobilenet
    # adversarial fine-tuning of a shipped model (SegPGD inner attack, [Gu2022]'s settings)
    explorer-train --world street --arch unet-mobilenet \
        --init-from explorer/models/weights/street-unet-mobilenet --adversarial segpgd --adv-eps 8 \
        --steps 1000 --lr 5e-4 --out explorer/models/weights/street-unet-mobilenet-robust

Recipe (all choices recorded in the model card): a pool of procedurally rendered training
scenes (half of them with shuffled region classes, see :mod:`explorer.data.worlds`), stored as
8-bit images like the PNG samples; random horizontal flips; AdamW with a one-cycle
learning-rate schedule; cross-entropy with ignored pixels (255) left out.  Networks are
segmentation-models-pytorch architectures with random initial weights
(``encoder_weights=None``).  Everything is seeded, and the schedule depends on the step
count only (never on wall-clock time), so a run is reproducible by its seed.

The output folder holds ``config.json`` + ``model.safetensors`` (smp's ``save_pretrained``
format, weights stored in float16), ``card.json`` (machine-readable model card) and
``README.md`` (the same card for people).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from explorer.data.splits import VALIDATION_SEEDS, training_seeds
from explorer.data.worlds import WORLDS, render_batch
from explorer.metrics import confusion_matrix, iou_per_class, mean_iou
from explorer.models.architectures import ARCHITECTURES, TITLES, build_network
from explorer.models.registry import WEIGHTS_DIR
from explorer.models.wrapper import IMAGENET_MEAN, IMAGENET_STD
from explorer.tools.adversarial_training import (
    INNER_ATTACKS,
    SEGPGD_AT,
    AdversarialRecipe,
    adversarial_examples,
    trades_loss,
)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation (the shipped-model wrapper applies the same)."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def _render_chunk(world: str, seeds: List[int], size: Tuple[int, int], shuffle_fraction: float,
                  seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """One chunk of the pool: 8-bit images (N,3,H,W) and 8-bit labels (N,H,W; 255 = ignored)."""
    x, y = render_batch(world, seeds, size[0], size[1], shuffle_fraction=shuffle_fraction, shuffle_seed=seed)
    return (x * 255).round().to(torch.uint8), y.to(torch.uint8)


def render_pool(world: str, count: int, size: Tuple[int, int], shuffle_fraction: float, seed: int,
                chunk: int = 64, workers: int = 1) -> Tuple[torch.Tensor, torch.Tensor]:
    """Render ``count`` training scenes as uint8 images (N,3,H,W) and uint8 labels (N,H,W).

    Every scene depends on its own seed only, so ``workers`` processes render chunks side by
    side and the pool is the same whatever their number (an accelerator machine's 16 cores
    render a large pool in seconds).  Labels are class ids below 255 (or 255, ignored), kept
    in 8 bits: 20 000 street scenes at 128 x 256 take 2.0 GB of images and 0.66 GB of labels
    (int64 labels would take 5.2 GB)."""
    seeds = list(training_seeds(count))
    starts = range(0, count, chunk)
    description = f"rendering {count} {world} scenes"
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_render_chunk, world, seeds[start:start + chunk], size, shuffle_fraction, seed)
                       for start in starts]
            parts = [future.result() for future in tqdm(futures, desc=description, unit="chunk")]
    else:
        parts = [_render_chunk(world, seeds[start:start + chunk], size, shuffle_fraction, seed)
                 for start in tqdm(starts, desc=description, unit="chunk")]
    return torch.cat([images for images, _ in parts]), torch.cat([labels for _, labels in parts])


@torch.no_grad()
def evaluate(net: torch.nn.Module, world: str, size: Tuple[int, int], num_classes: int,
             seeds=VALIDATION_SEEDS, batch: int = 16) -> Dict[str, object]:
    """Pixel accuracy and dataset-level mIoU on unshuffled validation scenes (8-bit, as shipped),
    on the device the network's weights are on."""

    net.eval()
    device = next(net.parameters()).device
    seeds = list(seeds)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for start in range(0, len(seeds), batch):
        x, y = render_batch(world, seeds[start:start + batch], size[0], size[1])
        x = (x * 255).round() / 255
        pred = net(normalize(x.to(device))).argmax(1).cpu()
        confusion += confusion_matrix(pred, y, num_classes)
    correct = confusion.diag().sum().item()
    per_class = iou_per_class(confusion)
    return {"pixel_accuracy": correct / max(confusion.sum().item(), 1),
            "miou": float(mean_iou(confusion)),
            "per_class_iou": [None if math.isnan(v) else round(float(v), 4) for v in per_class.tolist()],
            "num_images": len(seeds)}


def training_device(name: str) -> torch.device:
    """``"auto"``: the GPU when there is one, else the CPU; ``"cpu"``/``"cuda"``/``"cuda:N"`` as named.

    A named GPU that is absent is refused with one line (no silent fall-back: a stage planned for
    minutes of a GPU would take hours of a CPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SystemExit(f"--device must be auto, cpu or cuda[:N], got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise SystemExit(f"--device must be auto, cpu or cuda[:N], got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: no CUDA GPU is visible to torch {torch.__version__}")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise SystemExit(f"--device {name}: only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    return device


def prepare_device(device: torch.device) -> None:
    """Per-process settings for training on ``device``: on CUDA, cuDNN's autotuner (fixed input
    sizes) and TF32 for the SegFormer's matrix products; nothing on the CPU."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")


def batch_loss(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
               adversarial: Optional[AdversarialRecipe]) -> Tuple[torch.Tensor, Optional[float]]:
    """The training loss of one batch, and the inner attack's pixel success rate (``None`` for a
    clean stage): plain cross-entropy; with ``adversarial``, its share of the batch attacked and
    either put in place of the clean images or, with ``trades_beta``, scored by :func:`trades_loss`."""
    if adversarial is None:
        return F.cross_entropy(net(normalize(x)), y, weight=weights, ignore_index=255), None
    attacked = adversarial.attacked(len(x))
    x_adv, apsr = adversarial_examples(net, normalize, x[:attacked], y[:attacked], adversarial)
    if adversarial.trades_beta:
        logits = net(normalize(torch.cat([x, x_adv])))
        return trades_loss(logits[:len(x)], logits[len(x):], y, adversarial.trades_beta, weights), apsr
    mixed = torch.cat([x_adv, x[attacked:]])
    return F.cross_entropy(net(normalize(mixed)), y, weight=weights, ignore_index=255), apsr


def describe_device(device: torch.device) -> str:
    """What a stage ran on, for its card: "x86_64 CPU, 1 threads, torch …" or "NVIDIA H100 … GPU, torch …"."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} GPU, torch {torch.__version__}"
    return f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"


def save_fp16(net: torch.nn.Module, out_dir: Path) -> None:
    """``save_pretrained`` then rewrite the safetensors file in float16 (halves the size)."""
    from safetensors.torch import load_file, save_file

    net.save_pretrained(str(out_dir))
    weights = out_dir / "model.safetensors"
    state = load_file(str(weights))
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    save_file(state, str(weights), metadata={"format": "pt"})


def _recipe_line(recipe: Dict[str, object]) -> str:
    """The model card's one-line training recipe."""
    return (f"{recipe['steps']} steps, batch {recipe['batch_size']}, AdamW lr {recipe['lr']}, one-cycle, "
            f"{recipe['pool_size']} scenes ({recipe['shuffle_fraction']:.0%} shuffled)")


def _stage_steps(stage: Dict[str, object]) -> str:
    """A stage's steps for the card: "2200 of 7000 (cut)" for a stage exported unfinished."""
    return f"{stage['steps']} of {stage['of']} (cut)" if stage.get("cut") else str(stage["steps"])


def _adversarial_rows(card: Dict[str, object]) -> str:
    """The README's rows on adversarial training (none for a clean model)."""
    adversarial = card.get("adversarial_training")
    if not adversarial:
        return ""
    rows = f"| adversarial training | {adversarial['summary']}, {adversarial.get('time_s', 0) / 60:.1f} min |\n"
    if "clean_miou_before" in adversarial:
        before, drop = adversarial["clean_miou_before"], adversarial["clean_miou_drop"]
        rows += f"| clean cost | validation mIoU {before:.4f} before, {before - drop:.4f} after ({drop:.4f} lost) |\n"
    return rows


def write_card(out_dir: Path, card: Dict[str, object], class_names) -> None:
    """Write ``card.json`` and a human-readable ``README.md`` model card."""
    (out_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    ious = card["validation"]["per_class_iou"]
    stages = "\n".join(f"| {i} | {_stage_steps(stage)} | {(stage['time_s'] or 0) / 60:.1f} min | {stage['sessions']} | "
                       f"`{stage['command']}` |" for i, stage in enumerate(card.get("stages", []), start=1))
    rows = "\n".join(f"| {name} | {'—' if iou is None else f'{iou:.3f}'} |" for name, iou in zip(class_names, ious))
    text = f"""# {card['title']} ({card['name']})

{card['description']}

| | |
|---|---|
| world | {card['world']} (procedural, {card['dataset']} classes) |
| architecture | {card['arch']} (segmentation-models-pytorch, random init) |
| input size | {card['input_size'][0]} x {card['input_size'][1]} |
| training | {_recipe_line(card['recipe'])} |
| seed | {card['seed']} |
| training time | {card['training_time_s'] / 60:.1f} min on {card['trained_on']} |
| validation | {card['validation']['num_images']} unseen scenes (seeds {card['validation']['seeds']}) |
| pixel accuracy | {card['validation']['pixel_accuracy']:.4f} |
| mIoU | {card['validation']['miou']:.4f} |
{_adversarial_rows(card)}
Command: `{card['command']}`

Training stages (each a one-cycle run; later ones start from the weights of the one before):

| stage | steps | time | sessions | command |
|---|---|---|---|---|
{stages}

| class | IoU |
|---|---|
{rows}
"""
    (out_dir / "README.md").write_text(text)


def class_weights(labels: torch.Tensor, num_classes: int, power: float) -> torch.Tensor:
    """Cross-entropy class weights ``w_c = (median_f / f_c) ** power`` from the pool's label
    frequencies ``f_c`` (ignored pixels left out), clipped to [0.2, 10]; absent classes get 1.

    ``power=0`` is plain cross-entropy; ``power=0.5`` (square-root inverse frequency) lifts thin,
    rare classes (poles, lights, riders) without letting them dominate the loss."""
    valid = labels[labels != 255]
    counts = torch.bincount(valid.flatten(), minlength=num_classes).double()
    weights = torch.ones(num_classes, dtype=torch.float64)
    present = counts > 0
    if power > 0 and present.any():
        freq = counts[present] / counts[present].sum()
        weights[present] = (freq.median() / freq).pow(power).clamp(0.2, 10.0)
    return weights.float()


def _atomic_save(payload: Dict[str, object], path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a kill never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    os.replace(partial, path)


def load_initial_weights(net: torch.nn.Module, folder: Path) -> Dict[str, object]:
    """Load a shipped model folder's weights into ``net`` (float16 on disk -> float32); return its card.

    A continuation stage starts here: the network keeps what earlier stages learnt, the
    optimiser and learning-rate schedule start afresh."""
    from safetensors.torch import load_file

    stored = load_file(str(folder / "model.safetensors"))
    state = {k: v.float() if v.is_floating_point() else v for k, v in stored.items()}
    net.load_state_dict(state)
    card_path = folder / "card.json"
    return json.loads(card_path.read_text()) if card_path.is_file() else {}


def earlier_stages(card: Dict[str, object]) -> list:
    """The training stages recorded in a model card (cards from before stages were kept: one stage)."""
    if not card:
        return []
    if "stages" in card:
        return list(card["stages"])
    return [{"command": card.get("command"), "steps": card.get("recipe", {}).get("steps"),
             "time_s": card.get("training_time_s"), "sessions": 1}]


def train(world: str, arch: str, out_dir: Path, steps: int, batch_size: int, lr: float, pool_size: int,
          shuffle_fraction: float, seed: int, size: Tuple[int, int], command: str,
          balance: float = 0.0, init_from: Optional[Path] = None, checkpoint: Optional[Path] = None,
          save_every: int = 200, session_steps: Optional[int] = None,
          adversarial: Optional[AdversarialRecipe] = None, device: str = "cpu",
          render_workers: int = 1, pool: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
          validation_images: Optional[int] = None) -> Optional[Dict[str, object]]:
    """Train one model (one *stage*) and write it to ``out_dir``; return its card.

    Resumable: every ``save_every`` steps the network, optimiser, schedule, both random
    generators and the time spent so far go to ``checkpoint``; a run started with the same
    settings and checkpoint continues from the last save, bit-for-bit the run it replaces
    (the scene pool is re-rendered from its seeds).  ``init_from`` starts the network from a
    shipped model's weights (a new stage on top of earlier ones; the card keeps every stage).
    ``session_steps`` ends this invocation after that many steps with the checkpoint saved and
    nothing else written (returns ``None``): a long stage split across sessions.
    ``adversarial`` makes the stage adversarial training: that share of each batch is replaced
    by its attacked version (:mod:`explorer.tools.adversarial_training`).

    ``device`` (``"cpu"``, ``"cuda"``, ``"auto"``) is where the pool, the network and the inner
    attack live.  On the CPU a resumed stage is bit-for-bit the uninterrupted one; on a GPU it is
    the same recipe, but cuDNN's kernels are not bit-reproducible, so the stage records the
    device it ran on (its card's ``stages``) and the command names it.  ``pool`` passes the
    scenes :func:`render_pool` returns for these settings, rendered once for several stages;
    ``validation_images`` evaluates on the first that many validation scenes (a dry run; the
    card says how many)."""

    info = WORLDS[world]
    num_classes = info.dataset.num_classes
    where = training_device(device)
    prepare_device(where)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    start_time = time.perf_counter()
    settings = {"world": world, "arch": arch, "steps": steps, "batch_size": batch_size, "lr": lr,
                "pool_size": pool_size, "shuffle_fraction": shuffle_fraction, "seed": seed,
                "size": list(size), "balance": balance, "init_from": str(init_from) if init_from else None}
    if adversarial is not None:
        settings["adversarial"] = adversarial.as_dict()
    if where.type != "cpu":  # a CPU checkpoint of an earlier version stays resumable
        settings["device"] = where.type

    images, labels = pool if pool is not None else render_pool(world, pool_size, size, shuffle_fraction, seed,
                                                               workers=render_workers)
    if len(images) != pool_size or tuple(images.shape[-2:]) != tuple(size):
        raise ValueError(f"the pool holds {len(images)} scenes of {tuple(images.shape[-2:])}, the stage asks for "
                         f"{pool_size} of {tuple(size)}")
    weights = class_weights(labels, num_classes, balance).to(where)
    images, labels = images.to(where), labels.to(where)
    net = build_network(arch, num_classes)
    initial_card = load_initial_weights(net, init_from) if init_from else {}
    net.to(where)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)

    first_step, spent_before, sessions = 0, 0.0, 1
    if checkpoint is not None and checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=True, map_location="cpu")
        if saved["settings"] != settings:
            raise SystemExit(f"{checkpoint} was written by a run with other settings ({saved['settings']}); "
                             f"remove it or pass another --checkpoint")
        net.load_state_dict(saved["net"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        rng.bit_generator.state = saved["numpy_rng"]
        torch.set_rng_state(saved["torch_rng"])
        if where.type == "cuda" and "cuda_rng" in saved:
            torch.cuda.set_rng_state(saved["cuda_rng"], where)
        first_step, spent_before, sessions = saved["step"], saved["time_s"], saved["sessions"] + 1
        print(f"resuming from {checkpoint} at step {first_step} of {steps} ({spent_before / 60:.1f} min spent)")

    def save(step: int) -> None:
        _atomic_save({"settings": settings, "step": step, "net": net.state_dict(),
                      "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                      "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                      **({"cuda_rng": torch.cuda.get_rng_state(where)} if where.type == "cuda" else {}),
                      "time_s": spent_before + time.perf_counter() - start_time, "sessions": sessions},
                     checkpoint)

    last_step = steps if session_steps is None else min(steps, first_step + session_steps)
    if last_step < steps and checkpoint is None:
        raise SystemExit("stopping before the last step needs a checkpoint to resume from")
    net.train()
    progress = tqdm(range(first_step, last_step), desc=f"training {arch} on {world}", unit="step",
                    initial=first_step, total=steps)
    running, flipped = None, None
    for step in progress:
        index = torch.from_numpy(rng.choice(len(images), size=batch_size, replace=False)).to(where)
        x = images[index].float() / 255
        y = labels[index].long()
        flip = torch.from_numpy(rng.random(batch_size) < 0.5).to(where)
        x[flip] = x[flip].flip(-1)
        y[flip] = y[flip].flip(-1)
        loss, apsr = batch_loss(net, x, y, weights, adversarial)
        if apsr is not None:
            flipped = apsr if flipped is None else 0.98 * flipped + 0.02 * apsr
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        progress.set_postfix(loss=f"{running:.3f}", lr=f"{schedule.get_last_lr()[0]:.2e}",
                             **({} if flipped is None else {"flipped": f"{flipped:.2f}"}))
        if checkpoint is not None and ((step + 1) % save_every == 0 or step + 1 == last_step):
            save(step + 1)
    if last_step < steps:
        print(f"stopped at step {last_step} of {steps}; rerun the same command to continue from {checkpoint}")
        return None

    stage = {"command": command, "steps": steps, "time_s": round(spent_before + time.perf_counter() - start_time, 1),
             "sessions": sessions, "trained_on": describe_device(where),
             **({"adversarial": settings["adversarial"]} if adversarial else {})}
    return finish_stage(net, settings, stage, initial_card, out_dir, command, validation_images)


def finish_stage(net: torch.nn.Module, settings: Dict[str, object], stage: Dict[str, object],
                 initial_card: Dict[str, object], out_dir: Path, command: str,
                 validation_images: Optional[int] = None) -> Dict[str, object]:
    """Evaluate the network on the validation scenes and write it to ``out_dir`` as a shipped
    model (weights in float16, ``card.json``, ``README.md``) whose card lists every stage:
    the earlier ones (from ``initial_card``) and ``stage``.  Returns the card."""
    world, arch, size = settings["world"], settings["arch"], tuple(settings["size"])
    info = WORLDS[world]
    seeds = VALIDATION_SEEDS if validation_images is None else VALIDATION_SEEDS[:validation_images]
    validation = evaluate(net, world, size, info.dataset.num_classes, seeds=seeds)
    stages = earlier_stages(initial_card) + [stage]
    out_dir.mkdir(parents=True, exist_ok=True)
    save_fp16(net.eval().cpu(), out_dir)
    pool_size = settings["pool_size"]
    robust = next((AdversarialRecipe(**stage["adversarial"]) for stage in reversed(stages)
                   if stage.get("adversarial")), None)
    description = (f"{TITLES[arch]} trained from scratch on the procedural {world} world "
                   f"({info.dataset.name} classes). Shipped so the explorer runs offline.")
    if robust is not None:
        description += f" Adversarially trained: {robust.describe()}."
    card = {
        "name": out_dir.name,
        "title": f"{TITLES[arch]} — {world} world" + (", adversarially trained" if robust else ""),
        "description": description,
        "world": world, "dataset": info.dataset.name, "arch": arch,
        "smp_class": ARCHITECTURES[arch][0], "encoder": ARCHITECTURES[arch][1],
        "input_size": list(size), "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
        "seed": settings["seed"],
        "recipe": {"steps": settings["steps"], "batch_size": settings["batch_size"], "lr": settings["lr"],
                   "optimizer": "AdamW(wd=1e-4)", "schedule": "one-cycle (10% warm-up)", "pool_size": pool_size,
                   "shuffle_fraction": settings["shuffle_fraction"], "class_balance_power": settings["balance"],
                   "augmentation": "horizontal flip",
                   "train_seeds": [training_seeds(pool_size).start, training_seeds(pool_size).stop - 1],
                   "initialised_from": initial_card.get("name") if settings["init_from"] else None,
                   **({"adversarial": settings["adversarial"]} if settings.get("adversarial") else {})},
        **({"adversarial_training": adversarial_card_fields(robust, stages, initial_card, validation)}
           if robust else {}),
        "training_time_s": round(sum(stage["time_s"] or 0 for stage in stages), 1),
        "stages": stages,
        "trained_on": "; ".join(dict.fromkeys(
            stage.get("trained_on") or initial_card.get("trained_on") or describe_device(torch.device("cpu"))
            for stage in stages)),
        "validation": {**validation, "seeds": f"{seeds.start}-{seeds.stop - 1}"},
        "command": command,
    }
    write_card(out_dir, card, info.dataset.class_names)
    return card


def adversarial_card_fields(robust: AdversarialRecipe, stages: List[Dict[str, object]],
                            initial_card: Dict[str, object], validation: Dict[str, object]) -> Dict[str, object]:
    """The card's ``adversarial_training`` entry: the recipe, its one-line summary, the time of
    the adversarial stages, and the clean cost — the validation mIoU of the model the first
    adversarial stage started from, and how much of it was lost."""
    first = next(i for i, stage in enumerate(stages) if stage.get("adversarial"))
    fields: Dict[str, object] = {**robust.as_dict(), "summary": robust.describe(),
                                 "time_s": round(sum(stage["time_s"] or 0 for stage in stages[first:]), 1)}
    before = initial_card.get("validation", {}).get("miou") if first == len(stages) - 1 else \
        (initial_card.get("adversarial_training") or {}).get("clean_miou_before")
    if before is not None:
        fields["clean_miou_before"] = round(float(before), 4)
        fields["clean_miou_drop"] = round(float(before) - float(validation["miou"]), 4)
    return fields


def command_line(settings: Dict[str, object], threads: Optional[int] = 1) -> str:
    """The ``explorer.tools.train`` command that runs a stage with these settings."""
    return (f"python -m explorer.tools.train --world {settings['world']} --arch {settings['arch']} "
            f"--steps {settings['steps']} --batch-size {settings['batch_size']} --lr {settings['lr']} "
            f"--pool-size {settings['pool_size']} --shuffle-fraction {settings['shuffle_fraction']} "
            f"--seed {settings['seed']}" + (f" --balance {settings['balance']}" if settings["balance"] else "")
            + (f" --init-from {settings['init_from']}" if settings["init_from"] else "")
            + adversarial_flags(settings.get("adversarial"))
            + (f" --device {settings['device']}" if settings.get("device", "cpu") != "cpu" else "")
            + (f" --threads {threads}" if threads else ""))


def adversarial_flags(recipe: Optional[Dict[str, object]]) -> str:
    """The command-line flags of an adversarial stage ("" for a clean one)."""
    if not recipe:
        return ""
    return (f" --adversarial {recipe['attack']} --adv-eps {recipe['eps_255']:g} --adv-steps {recipe['steps']} "
            f"--adv-step {recipe['step_255']:g} --adv-fraction {recipe['fraction']:g}"
            + (f" --adv-trades-beta {recipe['trades_beta']:g}" if recipe.get("trades_beta") else ""))


def export_checkpoint(checkpoint: Path, out_dir: Path) -> Dict[str, object]:
    """Write the network of an unfinished stage's checkpoint as a model folder, its card
    saying where the stage was cut (``steps`` done ``of`` the planned ones, the learning
    rate not yet annealed): a stage that cannot finish in one session hands its progress to
    a new stage (``--init-from`` that folder) instead of losing it."""
    saved = torch.load(checkpoint, weights_only=True, map_location="cpu")
    settings = saved["settings"]
    net = build_network(settings["arch"], WORLDS[settings["world"]].dataset.num_classes)
    net.load_state_dict(saved["net"])
    init_from = settings["init_from"]
    initial_card = json.loads((Path(init_from) / "card.json").read_text()) if init_from else {}
    command = command_line(settings)
    stage = {"command": command, "steps": saved["step"], "of": settings["steps"], "cut": True,
             "time_s": round(saved["time_s"], 1), "sessions": saved["sessions"],
             **({"trained_on": f"{settings['device']} (exported from a checkpoint)"} if settings.get("device") else {})}
    return finish_stage(net, settings, stage, initial_card, out_dir,
                        f"python -m explorer.tools.train --export-checkpoint {checkpoint} --out {out_dir}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Train a shipped model on a procedural world.")
    parser.add_argument("--world", choices=sorted(WORLDS), required=False)
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="fpn-mobilenet")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default explorer/models/weights/<world>-<arch>)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--pool-size", type=int, default=2000)
    parser.add_argument("--shuffle-fraction", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--balance", type=float, default=0.0,
                        help="class-weight power: weights (median freq / freq)^power; 0 = plain cross-entropy")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="start from this shipped model folder's weights (a new stage; the card keeps all stages)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="resumable state, saved every --save-every steps; a rerun with the same settings "
                             "continues from it (default: <out>.checkpoint.pt next to the output folder)")
    parser.add_argument("--save-every", type=int, default=200)
    parser.add_argument("--session-steps", type=int, default=None,
                        help="stop after this many steps of this invocation (checkpoint kept; rerun to continue)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice); 1 when training several models at once")
    parser.add_argument("--device", default="cpu",
                        help="cpu (default), cuda[:N], or auto (the GPU when there is one); the stage's card "
                             "records what it ran on")
    parser.add_argument("--render-workers", type=int, default=1,
                        help="processes rendering the scene pool (the pool is the same for any number)")
    parser.add_argument("--export-checkpoint", type=Path, default=None,
                        help="write the network of this (unfinished) stage's checkpoint to --out, evaluated, "
                             "with a card that says where the stage was cut; nothing is trained")
    adversarial = parser.add_argument_group(
        "adversarial training", "attack part of each batch with the explorer's SegPGD or PGD (defaults: "
        f"[Gu2022]'s settings, {SEGPGD_AT.describe()}); budgets in 1/255 units")
    adversarial.add_argument("--adversarial", choices=sorted(INNER_ATTACKS), default=None,
                             help="inner attack; without it the stage trains on clean images")
    adversarial.add_argument("--adv-eps", type=float, default=SEGPGD_AT.eps_255, help="ε × 255")
    adversarial.add_argument("--adv-steps", type=int, default=SEGPGD_AT.steps, help="inner attack iterations")
    adversarial.add_argument("--adv-step", type=float, default=SEGPGD_AT.step_255, help="step size α × 255")
    adversarial.add_argument("--adv-fraction", type=float, default=SEGPGD_AT.fraction,
                             help="share of each batch that is attacked (the rest stays clean)")
    adversarial.add_argument("--adv-trades-beta", type=float, default=0.0,
                             help="β > 0: TRADES ([Zhang2019]) — every clean image's cross-entropy plus β × the "
                                  "KL divergence of each attacked image's prediction from its clean one; "
                                  "0 (default): the attacked images replace their clean versions")
    args = parser.parse_args(argv)
    recipe = None
    if args.adversarial is not None:
        try:
            recipe = AdversarialRecipe(args.adversarial, args.adv_eps, args.adv_steps, args.adv_step,
                                       args.adv_fraction, args.adv_trades_beta)
        except ValueError as error:
            parser.error(str(error))
    if args.export_checkpoint is not None:
        if args.out is None:
            parser.error("--export-checkpoint needs --out")
        card = export_checkpoint(args.export_checkpoint, args.out)
        print(json.dumps({"name": card["name"], "miou": card["validation"]["miou"]}))
        return
    if args.world is None:
        parser.error("--world is required")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or WEIGHTS_DIR / f"{args.world}-{args.arch}"
    size = WORLDS[args.world].train_size
    if args.render_workers < 1:
        parser.error(f"--render-workers must be at least 1, got {args.render_workers}")
    device = training_device(args.device)
    command = command_line({"world": args.world, "arch": args.arch, "steps": args.steps, "batch_size": args.batch_size,
                            "lr": args.lr, "pool_size": args.pool_size, "shuffle_fraction": args.shuffle_fraction,
                            "seed": args.seed, "balance": args.balance, "init_from": args.init_from,
                            "adversarial": recipe.as_dict() if recipe else None, "device": device.type},
                           threads=args.threads)
    checkpoint = args.checkpoint or out.with_name(out.name + ".checkpoint.pt")
    card = train(args.world, args.arch, out, args.steps, args.batch_size, args.lr, args.pool_size,
                 args.shuffle_fraction, args.seed, size, command, balance=args.balance,
                 init_from=args.init_from, checkpoint=checkpoint, save_every=args.save_every,
                 session_steps=args.session_steps, adversarial=recipe, device=str(device),
                 render_workers=args.render_workers)
    if card is None:
        return
    print(json.dumps({k: card[k] for k in ("name", "training_time_s")} | {
        "pixel_accuracy": card["validation"]["pixel_accuracy"], "miou": card["validation"]["miou"]}))


if __name__ == "__main__":
    main()
