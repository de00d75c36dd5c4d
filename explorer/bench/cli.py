"""``explorer-bench`` (also ``python -m explorer.bench``): the benchmark's command line.

    explorer-bench run --models street-fpn-mobilenet --attacks table1 fixed --eps 0.25 0.5 1 --out results/bench.jsonl
    explorer-bench report results/bench.jsonl --out-dir results/report
    torchrun --standalone --nproc_per_node=2 -m explorer.bench run ...     # same records, two processes
    explorer-bench reference --model street-fpn-mobilenet --limit 4        # ours vs adv-lib
    explorer-bench penalty --model street-fpn-mobilenet --limit 4          # true vs reference penalty derivative
    explorer-bench prox                                                    # prox solvers (seed 001 Fig. 2)
    explorer-bench speed                                                   # ALMA prox time / forward+backward time
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from explorer.bench.report import markdown_table


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", default="samples",
                        help="'samples', 'seeds:A-B' (procedural, inclusive) or a folder with images/ and labels/")
    parser.add_argument("--limit", type=int, default=None, help="use the first N images only")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: this rank's GPU, else CPU)")


def _load_inputs(args):
    """The model (frozen) and the chosen images with their ground truth, on the model's device."""
    from explorer.bench.sources import open_source
    from explorer.models import load_model

    model = load_model(args.model, device=args.device)
    for p in model.parameters():
        p.requires_grad_(False)
    source = open_source(args.images, model, args.limit)
    images, labels = source.load(source.ids)
    device = next(model.parameters()).device
    return model, images.to(device), labels.to(device)


def _print_and_save(text: str, payload: dict, out: Optional[Path]) -> None:
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text(text)
        out.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n")


RUN_COLUMNS = (("run", "run", ""), ("median ℓ∞×255", "median_255", ".3f"), ("mean ℓ∞×255", "mean_255", ".3f"),
               ("success", "success_rate", ".0%"), ("seconds", "seconds", ".1f"))
RATIO_COLUMNS = (("attack", "attack", ""), ("median ours / ref", "median_ratio", ".3f"),
                 ("ours median", "ours_median_255", ".3f"), ("ref median", "reference_median_255", ".3f"),
                 ("ours success", "ours_success", ".0%"), ("ref success", "reference_success", ".0%"),
                 ("time ours / ref", "time_ratio", ".2f"))


def _side_by_side(args, compare) -> None:
    from explorer.bench.sources import attack_labels

    text, payload = [], {}
    model, images, ground_truth = _load_inputs(args)
    extra = {"attacks": tuple(args.attacks)} if hasattr(args, "attacks") else {}
    for mode in args.modes:
        labels = attack_labels(model, ground_truth, mode)
        runs, ratios = compare(model, images, labels, mode == "targeted", num_steps=args.steps, **extra)
        payload[mode] = {"runs": runs, "ratios": ratios}
        text.append(f"### {args.model}, {mode}, {len(images)} images, {args.steps} iterations, "
                    f"device {images.device}, torch {torch.__version__}\n\n"
                    + markdown_table(runs, RUN_COLUMNS) + "\n" + markdown_table(ratios, RATIO_COLUMNS))
    _print_and_save("\n".join(text), payload, args.out)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Run a subcommand; bad input (an unknown attack, image source, parameter) exits with its message."""
    from explorer.errors import InputError

    try:
        _main(argv)
    except InputError as error:
        sys.exit(f"explorer-bench: {error}")


def _main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="explorer-bench", description="Seed 001's evaluation on any model: "
                                     "resumable runs, reports, comparisons with the reference, speed.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="attack images, append per-image results to a JSONL file")
    run.add_argument("--models", nargs="+", default=["street-fpn-mobilenet"])
    run.add_argument("--attacks", nargs="+", default=["table1"],
                     help="'table1', 'fixed', or name[:key=value,...] with JSON values")
    run.add_argument("--modes", nargs="+", default=["untargeted", "targeted"], choices=["untargeted", "targeted"])
    run.add_argument("--eps", nargs="*", type=float, default=[0.25, 0.5, 1.0],
                     help="budgets × 255 for fixed-budget attacks")
    run.add_argument("--budget-fraction", type=float, default=1.0, help="scale every iteration budget (quick runs)")
    run.add_argument("--batch-size", type=int, default=1)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", type=Path, default=Path("results/bench.jsonl"))
    run.add_argument("--report", type=Path, default=None, help="also write the report to this folder")
    run.add_argument("--no-progress", action="store_true")
    _add_common(run)

    report = sub.add_parser("report", help="tables and failure-rate curves from a results file")
    report.add_argument("results", type=Path)
    report.add_argument("--out-dir", type=Path, default=None, help="default: <results>_report/")

    for name, help_text in (("reference", "ours against adv-lib (pip install --no-deps adv-lib==0.2.8)"),
                            ("penalty", "ALMA prox: true penalty derivative against the reference's")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--model", default="street-fpn-mobilenet")
        p.add_argument("--steps", type=int, default=500)
        p.add_argument("--modes", nargs="+", default=["untargeted", "targeted"],
                       choices=["untargeted", "targeted"])
        p.add_argument("--out", type=Path, default=None, help="write <out>.md and <out>.json")
        if name == "reference":
            p.add_argument("--attacks", nargs="+", default=["alma_prox", "dag", "pdpgd"],
                           choices=["alma_prox", "dag", "pdpgd"])
        _add_common(p)

    prox = sub.add_parser("prox", help="ternary search against DFB, accelerated DFB and Douglas–Rachford")
    prox.add_argument("--count", type=int, default=4)
    prox.add_argument("--dim", type=int, default=3 * 128 * 256)
    prox.add_argument("--iterations", type=int, nargs="+", default=[10, 100, 1000])
    prox.add_argument("--threads", type=int, default=None)
    prox.add_argument("--device", default="cpu")
    prox.add_argument("--out", type=Path, default=None)

    sub.add_parser("speed", help="ALMA prox time over plain forward+backward time (options: speed -h)",
                   add_help=False)

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["speed"]:
        from explorer.bench.speed import main as speed_main

        return speed_main(argv[1:])
    args = parser.parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)

    if args.command == "run":
        from explorer.bench.run import parse_rows, run_benchmark

        rows = parse_rows(args.attacks, args.budget_fraction)
        counts = run_benchmark(args.models, rows, args.out, images=args.images, modes=args.modes,
                               eps_255=args.eps, limit=args.limit, batch_size=args.batch_size, seed=args.seed,
                               device=args.device, progress=not args.no_progress)
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"{counts['run']} batches run, {counts['skipped']} already done; results in {args.out}")
            if args.report:
                _write_report(args.out, args.report)
    elif args.command == "report":
        _write_report(args.results, args.out_dir or args.results.with_name(args.results.stem + "_report"))
    elif args.command == "reference":
        from explorer.bench.compare import compare_with_reference

        _side_by_side(args, compare_with_reference)
    elif args.command == "penalty":
        from explorer.bench.compare import compare_penalty_gradients

        _side_by_side(args, compare_penalty_gradients)
    elif args.command == "prox":
        from explorer.bench.prox_solvers import compare_solvers

        rows = compare_solvers(args.count, args.dim, args.iterations, device=args.device)
        columns = (("solver", "solver", ""), ("iterations", "iterations", "d"),
                   ("ms / vector", "ms_per_vector", ".2f"), ("median gap", "median_gap", ".2e"),
                   ("max gap", "max_gap", ".2e"), ("median relative gap", "median_relative_gap", ".2e"))
        text = (f"{args.count} random problems of dimension {args.dim} (float64, {args.device}, "
                f"{torch.get_num_threads()} threads)\n\n" + markdown_table(rows, columns))
        _print_and_save(text, {"rows": rows}, args.out)


def _write_report(results: Path, out_dir: Path) -> None:
    from explorer.bench.report import write_report
    from explorer.bench.store import read_records

    path = write_report(read_records(results), out_dir)
    print(f"report written to {path}")


if __name__ == "__main__":
    main()
