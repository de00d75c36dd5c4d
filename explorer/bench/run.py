"""Run models × attack rows × modes (× ε) × images and append per-image results.

The work is cut into *batches* — a model, an attack row, a mode, a budget and up to
``batch_size`` consecutive images of one size — in one fixed order that depends only on
the command line.  Batch ``j`` belongs to rank ``j mod world_size``, and the random
generator is re-seeded from the batch's identity before it runs, so every batch is
computed the same way whatever the number of processes: a ``torchrun`` run gives the
records of a single-process run (up to the time fields).

A batch whose images are all in the results file is skipped; one with some images missing
(a killed run) is rerun on the missing ones only — as a smaller batch with its own seed, so
an attack with random starts may then differ from an uninterrupted run on those images.
With ``--batch-size 1`` (the default) no batch is ever partly finished.
"""
from __future__ import annotations

import json
import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from explorer.attacks import ATTACKS, get_attack
from explorer.attacks.lattice import finish_8bit
from explorer.bench import checks
from explorer.bench.checks import budget_fraction as check_fraction
from explorer.bench.checks import output_file
from explorer.bench.store import append_records, finished_keys, merge_parts, part_path, record_key
from explorer.bench.tables import FIXED_BUDGET_ATTACKS, TABLE1_ROWS, quick_params
from explorer.data.sources import attack_labels, check_limit, check_spec, check_targeted, open_source
from explorer.errors import InputError
from explorer.metrics import confusion_matrix, l2_norm
from explorer.models import load_model

#: the row holding each image's clean prediction (accuracy and per-class IoU without attack)
CLEAN_ROW = "clean"
MODES = ("untargeted", "targeted")


@dataclass(frozen=True)
class AttackRow:
    """One configured attack: its label in tables and results, registry name and parameters."""

    label: str
    attack: str
    params: Tuple[Tuple[str, object], ...] = ()

    @property
    def kwargs(self) -> Dict[str, object]:
        return dict(self.params)


@dataclass(frozen=True)
class Batch:
    model: str
    row: AttackRow
    mode: str
    eps_255: Optional[float]
    image_ids: Tuple[str, ...]

    def key(self, image: str) -> str:
        return record_key(self.model, self.row.label, self.mode, self.eps_255, image)

    @property
    def seed_offset(self) -> int:
        """A stable number from the batch's identity (re-seeds the RNG identically on every rank)."""
        return zlib.crc32(self.key(",".join(self.image_ids)).encode())


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


#: keywords the benchmark sets itself: a row's parameters must not (they would clash at the call)
RESERVED_KEYWORDS = ("targeted", "masks", "callback", "record_maps")


def validate_params(spec, params: Dict[str, object]) -> Dict[str, object]:
    """A row's parameters checked by the attack's schema (InputError otherwise), refusing the
    keywords the benchmark passes itself."""
    for name in RESERVED_KEYWORDS:
        if name in params:
            raise InputError(f"{spec.name}: {name} is set by the benchmark (--modes), not by an attack parameter")
    return spec.validate(params)


#: the titles of Table 1's rows, each usable alone as an --attacks token
TABLE1_TITLES = frozenset(title for title, _, _ in TABLE1_ROWS)


def parse_rows(tokens: Sequence[str], budget_fraction: float = 1.0) -> List[AttackRow]:
    """Attack rows from command-line tokens.

    ``table1`` expands to [Rony2023]'s minimal-norm rows (:data:`explorer.bench.tables.TABLE1_ROWS`),
    a row's title (``"ALMA prox"``, ``"DAG η = 0.003"``) is that row alone (the same label as in
    ``table1``, so a subset run on another model lines up with a full one),
    ``fixed`` to the fixed-budget attacks, and ``name[:key=value,...]`` is one registered
    attack with parameters (JSON values, e.g. ``pgd_bisection:loss="dlr",num_steps=10``).
    ``budget_fraction`` scales iteration budgets (and is written into the row label, so
    results of different budgets never share a key).
    """


    budget_fraction = check_fraction(budget_fraction)
    if isinstance(tokens, str):
        tokens = [tokens]
    rows: List[Tuple[str, str, Dict[str, object]]] = []
    for token in tokens:
        if token == "table1":
            rows += [(title, attack, dict(params)) for title, attack, params in TABLE1_ROWS]
        elif token in TABLE1_TITLES:
            rows += [(title, attack, dict(params)) for title, attack, params in TABLE1_ROWS if title == token]
        elif token == "fixed":
            rows += [(get_attack(a).title, a, {}) for a in FIXED_BUDGET_ATTACKS]
        else:
            name, _, rest = token.partition(":")
            params = {}
            for item in filter(None, rest.split(",")):
                k, sep, v = item.partition("=")
                if not sep:
                    raise InputError(f"attack parameter {item!r} in {token!r} is not key=value")
                params[k.strip()] = _parse_value(v.strip())
            rows.append((token, name, params))
    out = []
    for label, attack, params in rows:
        spec = get_attack(attack)
        if spec.kind == "fixed-budget" and "eps" in params:
            raise InputError(f"{label}: give the budgets of fixed-budget attacks with --eps (ε × 255), "
                             f"not as a parameter of the attack")
        params = validate_params(spec, params)
        if budget_fraction != 1.0:
            params = quick_params(attack, params, budget_fraction)
            label = f"{label} [budget ×{budget_fraction:g}]"
        out.append(AttackRow(label, attack, tuple(sorted(params.items()))))
    labels = [r.label for r in out]
    if len(set(labels)) != len(labels):
        raise InputError(f"attack rows repeat: {labels}")
    return out


def plan_batches(model_name: str, source, rows: Sequence[AttackRow], modes: Sequence[str],
                 eps_255: Sequence[float], batch_size: int) -> List[Batch]:
    """Every batch of one model, in a fixed order (clean row first, then rows × modes × ε)."""

    if batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")
    groups: List[Tuple[str, ...]] = []
    current: List[str] = []
    current_size = None
    for image, size in zip(source.ids, source.sizes):
        if current and (len(current) == batch_size or size != current_size):
            groups.append(tuple(current))
            current = []
        current.append(image)
        current_size = size
    if current:
        groups.append(tuple(current))
    batches = [Batch(model_name, AttackRow(CLEAN_ROW, CLEAN_ROW), "untargeted", None, g) for g in groups]
    for row in rows:
        spec = get_attack(row.attack)
        budgets = list(eps_255) if spec.kind == "fixed-budget" else [None]
        if spec.kind == "fixed-budget" and not budgets:
            raise InputError(f"{row.label} is a fixed-budget attack: give at least one --eps")
        for mode in modes:
            if mode == "targeted" and not spec.targeted_support:
                continue
            for eps in budgets:
                batches += [Batch(model_name, row, mode, eps, g) for g in groups]
    return batches


def per_class_counts(prediction: Tensor, labels: Tensor, num_classes: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Per image and class: intersection and union of prediction and labels, and labelled pixels.

    Pixels labelled outside ``[0, num_classes)`` are ignored.  Shapes (N,K), (N,K), (N,).
    """

    confusion = confusion_matrix(prediction, labels, num_classes, per_image=True).long()
    intersection = confusion.diagonal(dim1=1, dim2=2)
    union = confusion.sum(1) + confusion.sum(2) - intersection
    return intersection, union, confusion.flatten(1).sum(1)


def execute_batch(batch: Batch, model, source, seed: int = 0) -> List[Dict[str, object]]:
    """Run one batch and return its per-image records."""

    device = next(model.parameters()).device
    images, labels = source.load(batch.image_ids)
    images, labels = images.to(device), labels.to(device)
    torch.manual_seed(seed + batch.seed_offset)
    n = len(images)
    start = time.perf_counter()
    if batch.row.attack == CLEAN_ROW:
        adv = images
        linf = torch.zeros(n)
        apsr = success = None
        forwards, backwards = torch.ones(n), torch.zeros(n)
    else:
        target = attack_labels(model, labels, batch.mode)
        params = batch.row.kwargs
        if batch.eps_255 is not None:
            params["eps"] = batch.eps_255 / 255
        result = ATTACKS[batch.row.attack](model, images, target, targeted=batch.mode == "targeted", **params)
        adv, linf, apsr, success = result.adv_images, result.linf, result.apsr, result.success
        forwards, backwards = result.num_forwards, result.num_backwards
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    eight_bit = None
    if batch.row.attack != CLEAN_ROW and batch.eps_255 is None:  # a minimal-norm row: its 8-bit finish too
        finish_start = time.perf_counter()
        finished = finish_8bit(model, images, target, result)
        eight_bit = (finished, (time.perf_counter() - finish_start) / n)
    with torch.no_grad():
        prediction = model(adv).argmax(1)
    intersection, union, labelled = per_class_counts(prediction, labels, model.num_classes)
    l2 = l2_norm(adv - images)
    records = []
    for i, image in enumerate(batch.image_ids):
        records.append({
            "key": batch.key(image), "model": batch.model, "row": batch.row.label, "attack": batch.row.attack,
            "params": batch.row.kwargs, "mode": batch.mode, "eps_255": batch.eps_255, "image": image,
            "linf_255": float(linf[i]) * 255, "l2": float(l2[i]),
            "apsr": None if apsr is None else float(apsr[i]),
            "success": None if success is None else bool(success[i]),
            "accuracy": float(intersection[i].sum()) / max(int(labelled[i]), 1),
            "labelled": int(labelled[i]), "intersection": intersection[i].tolist(), "union": union[i].tolist(),
            "seconds": seconds / n, "forwards": int(forwards[i]), "backwards": int(backwards[i]),
            "batch_size": n, "device": str(device),
            **({} if eight_bit is None else eight_bit_fields(eight_bit[0], result, i, eight_bit[1])),
        })
    return records


def eight_bit_fields(finished, result, i: int, seconds: float) -> Dict[str, object]:
    """The record fields of image ``i``'s 8-bit finish (:func:`explorer.attacks.lattice.finish_8bit`):
    its norm in whole levels, APSR and success on the PNG-decoded image, and what it added."""
    return {"linf_8bit_255": round(float(finished.linf[i]) * 255, 4), "apsr_8bit": float(finished.apsr[i]),
            "success_8bit": bool(finished.success[i]),
            "forwards_8bit": int(finished.num_forwards[i] - result.num_forwards[i]),
            "backwards_8bit": int(finished.num_backwards[i] - result.num_backwards[i]), "seconds_8bit": seconds}


@dataclass
class Distributed:
    """This process's place in a ``torchrun`` job (rank 0 of 1 without one).

    The ranks share no tensors — results go through files — so they coordinate through
    torch.distributed's rendezvous *store* alone (the key–value store ``torchrun`` hosts)
    and never start a communication backend.  This keeps a many-hour benchmark free of a
    backend's collective timeout (a rank that finishes first simply polls the store), and
    avoids gloo's teardown, which once aborted a finished rank at exit ("terminate called
    without an active exception").
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    store: Optional[object] = field(default=None, repr=False)
    hosts_store: bool = field(default=False, repr=False)
    _rounds: int = field(default=0, repr=False)

    #: seconds between two looks at the store while waiting for the other ranks
    POLL_SECONDS = 0.2
    #: benchmark runs joined by this process so far (every rank makes the same calls)
    _joined = 0

    @classmethod
    def from_environment(cls) -> "Distributed":
        """Join the rendezvous that ``torchrun`` describes in the environment, if any.

        Inside a process that already has a default process group, its store is reused.  The
        keys live under a prefix naming torchrun's restart count and this process's run
        number, so neither a restarted job nor a second run in one process meets old counters.
        """
        import torch.distributed as dist

        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if dist.is_initialized():
            store = dist.distributed_c10d._get_default_store()
            rank, world_size, hosts = dist.get_rank(), dist.get_world_size(), False
        else:
            store, rank, world_size = next(dist.rendezvous("env://"))
            agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
            hosts = rank == 0 and not agent_store
        cls._joined += 1
        prefix = f"explorer-bench/restart{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/run{cls._joined}"
        return cls(rank, world_size, local_rank, dist.PrefixStore(prefix, store), hosts)

    def device(self, requested: Optional[str]) -> torch.device:
        if requested:
            return torch.device(requested)
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank % torch.cuda.device_count())
        return torch.device("cpu")

    def _wait_for_all(self, key: str) -> None:
        while self.store.add(key, 0) < self.world_size:
            time.sleep(self.POLL_SECONDS)

    def sum(self, values: Sequence[int]) -> List[int]:
        """Element-wise sum over the ranks; returns once every rank has contributed (a barrier)."""
        if self.world_size == 1:
            return list(values)
        self._rounds += 1
        prefix = f"round{self._rounds}"
        for i, v in enumerate(values):
            self.store.add(f"{prefix}/value{i}", int(v))
        self.store.add(f"{prefix}/arrived", 1)
        self._wait_for_all(f"{prefix}/arrived")
        return [self.store.add(f"{prefix}/value{i}", 0) for i in range(len(values))]

    def barrier(self) -> None:
        """Return once every rank has reached this barrier."""
        self.sum([])

    def close(self, finished: bool = True) -> None:
        """Leave the job.

        After a finished run, a rank that hosts the store waits until every rank has read its
        last result.  After a failure nobody waits: the launcher stops the other ranks.
        """
        if self.world_size == 1 or not finished:
            return
        self.store.add("left", 1)
        if self.hosts_store:
            self._wait_for_all("left")


def check_run_arguments(models: Sequence[str], rows: Sequence[AttackRow], out: Path, *, images: str,
                        modes: Sequence[str], eps_255: Sequence[float], limit: Optional[int], batch_size: int,
                        seed: int, device: Optional[str]) -> Tuple[List[str], List[str], List[float]]:
    """Every check of a run that needs no model and no image: InputError on the first bad one.

    Called before anything is computed or written, so a bad ε, device, limit or output path
    never leaves a half-written results file.  Returns the models, modes and budgets as lists.
    """

    if isinstance(models, str):
        models = [models]
    models = checks.model_names(list(models), "--models")
    if not models:
        raise InputError("give at least one model (--models)")
    modes = checks.distinct(list(modes), "--modes")
    for mode in modes:
        if mode not in MODES:
            raise InputError(f"unknown mode {mode!r}; choose from {MODES}")
    if not modes:
        raise InputError(f"give at least one mode (--modes), from {MODES}")
    eps_255 = [checks.eps_255(e) for e in eps_255]
    checks.distinct([f"{e:g}" for e in eps_255], "--eps")  # as written in the keys: 0.5 and 0.5000001 clash
    check_limit(limit)
    checks.positive_int(batch_size, "--batch-size")
    checks.seed(seed)
    if device is not None:
        checks.device(device)
    check_spec(images, "--images")
    checks.output_file(out, "--out", readable=True)
    for row in rows:
        spec = get_attack(row.attack)
        if spec.kind != "fixed-budget":
            continue
        if not eps_255:
            raise InputError(f"{row.label} is a fixed-budget attack: give at least one --eps")
        for eps in eps_255:  # the parameters the attack will get, checked by its own schema now
            try:
                validate_params(spec, {**row.kwargs, "eps": eps / 255})
            except InputError as error:
                raise InputError(f"{row.label} at --eps {eps:g}: {error}") from None
    return models, modes, eps_255


def run_benchmark(models: Sequence[str], rows: Sequence[AttackRow], out: Path, *, images: str = "samples",
                  modes: Sequence[str] = MODES, eps_255: Sequence[float] = (), limit: Optional[int] = None,
                  batch_size: int = 1, seed: int = 0, device: Optional[str] = None,
                  progress: bool = True) -> Dict[str, int]:
    """Run the benchmark, appending records to ``out``; return counts of batches run and skipped.

    Works unchanged under ``torchrun``: each rank runs its share of batches into its part
    file, and rank 0 merges the parts into ``out`` once every rank is done.
    """
    from tqdm import tqdm


    models, modes, eps_255 = check_run_arguments(models, rows, out, images=images, modes=modes, eps_255=eps_255,
                                                 limit=limit, batch_size=batch_size, seed=seed, device=device)
    out = Path(out)
    dist = Distributed.from_environment()
    try:
        torch_device = dist.device(device)
        destination = part_path(out, dist.rank) if dist.world_size > 1 else out
        output_file(destination, "--out", readable=True)
        done = finished_keys(out)
        loaded, work = {}, []
        for name in models:
            model = load_model(name, device=str(torch_device))
            if "targeted" in modes and any(get_attack(r.attack).targeted_support for r in rows):
                check_targeted(model)
            source = open_source(images, model, limit)
            loaded[name] = (model, source)
            work += plan_batches(name, source, rows, modes, eps_255, batch_size)
        mine = [b for j, b in enumerate(work) if j % dist.world_size == dist.rank]
        todo = []
        for b in mine:
            missing = tuple(i for i in b.image_ids if b.key(i) not in done)
            if missing:
                todo.append(Batch(b.model, b.row, b.mode, b.eps_255, missing))
        bar = tqdm(todo, desc=f"benchmark (rank {dist.rank}/{dist.world_size})", unit="batch",
                   disable=not progress or dist.rank != 0)
        for b in bar:
            bar.set_postfix_str(f"{b.model} · {b.row.label} · {b.mode}" + ("" if b.eps_255 is None else
                                                                             f" · ε={b.eps_255:g}/255"))
            model, source = loaded[b.model]
            append_records(destination, execute_batch(b, model, source, seed))
        dist.barrier()
        if dist.rank == 0:
            merge_parts(out)
        counts = dist.sum([len(todo), len(mine) - len(todo)])
    except BaseException:
        dist.close(finished=False)
        raise
    dist.close()
    return {"batches": len(work), "run": counts[0], "skipped": counts[1]}
