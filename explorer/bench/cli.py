"""``explorer-bench`` (also ``python -m explorer.bench``): the benchmark's command line.

    explorer-bench run --models street-fpn-mobilenet --attacks table1 fixed --eps 0.25 0.5 1 --out results/bench.jsonl
    explorer-bench report results/bench.jsonl --out-dir results/report
    torchrun --standalone --nproc_per_node=2 -m explorer.bench run ...     # same records, two processes
    explorer-bench reference --model street-fpn-mobilenet --limit 4        # ours vs adv-lib
    explorer-bench penalty --model street-fpn-mobilenet --limit 4          # true vs reference penalty derivative
    explorer-bench prox                                                    # prox solvers ([Rony2023] Fig. 2)
    explorer-bench speed                                                   # ALMA prox time / forward+backward time
    explorer-bench lattice --attack alma_prox --steps 500                  # the 8-bit finish's options
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from explorer.attacks import ATTACKS, get_attack
from explorer.bench import checks
from explorer.bench.checks import argument
from explorer.bench.compare import compare_penalty_gradients, compare_with_reference, import_adv_lib
from explorer.bench.lattice_options import COLUMNS as LATTICE_COLUMNS
from explorer.bench.lattice_options import compare_options
from explorer.bench.peers import COLUMNS as PEER_COLUMNS
from explorer.bench.peers import PEERS, compare_with_authors, ours_params
from explorer.bench.prox_solvers import compare_solvers
from explorer.bench.report import describe_skipped, markdown_table, usable_records, write_report
from explorer.bench.run import check_run_arguments, parse_rows, run_benchmark
from explorer.bench.speed import main as speed_main
from explorer.bench.store import one_warning_per_file, read_records
from explorer.data.sources import attack_labels, check_spec, check_targeted, open_source
from explorer.errors import InputError
from explorer.models import DEFAULT_MODEL, load_model
from explorer.models.registry import get_model_entry

POSITIVE = argument(checks.positive_int)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(package)
    except PackageNotFoundError:
        return "(a checkout, unversioned)"


def _model_name(text: str, what: str = "") -> str:
    """A registered model's name (InputError listing the available ones)."""

    get_model_entry(text)
    return text


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", default="samples",
                        help="'samples', 'seeds:A-B' (procedural, inclusive) or a folder with images/ and labels/")
    parser.add_argument("--limit", type=POSITIVE, default=None, help="use the first N images only (N >= 1)")
    parser.add_argument("--threads", type=argument(checks.threads), default=None, help="torch CPU threads (>= 1)")
    parser.add_argument("--device", type=argument(checks.device), default=None,
                        help="cpu, cuda, cuda:1 (default: this rank's GPU, else CPU)")


def _load_inputs(args):
    """The model (frozen) and the chosen images with their ground truth, on the model's device."""

    model = load_model(args.model, device=args.device)
    if "targeted" in getattr(args, "modes", ()):
        check_targeted(model)
    source = open_source(args.images, model, args.limit)
    if len(set(source.sizes)) > 1:  # the comparisons attack every image in one batch
        sizes = sorted({f"{w}x{h}" for h, w in source.sizes})
        raise InputError(f"{args.command} attacks all images in one batch, so they must share one size; "
                         f"{args.images} holds {', '.join(sizes[:4])}{', ...' if len(sizes) > 4 else ''}: "
                         f"use --limit or a folder of one size")
    images, labels = source.load(source.ids)
    device = next(model.parameters()).device
    return model, images.to(device), labels.to(device)


def _saved_paths(out: Optional[Path]):
    """The two files ``--out`` names: ``<out>.md`` and ``<out>.json``."""
    return [] if out is None else [out.with_suffix(".md"), out.with_suffix(".json")]


def _check_saved_paths(out: Optional[Path]) -> None:
    if out is not None and (str(out).strip() == "" or out.name in ("", ".", "..")):
        raise InputError(f"--out must name a file stem, e.g. results/reference; got {str(out)!r}")
    for path in _saved_paths(out):
        checks.output_file(path, "--out")


def _print_and_save(text: str, payload: dict, out: Optional[Path]) -> None:
    print(text)
    if out:
        md, js = _saved_paths(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(text)
        js.write_text(json.dumps(payload, indent=1) + "\n")


RUN_COLUMNS = (("run", "run", ""), ("median ℓ∞×255", "median_255", ".3f"), ("mean ℓ∞×255", "mean_255", ".3f"),
               ("success", "success_rate", ".0%"), ("seconds", "seconds", ".1f"))
RATIO_COLUMNS = (("attack", "attack", ""), ("median ours / ref", "median_ratio", ".3f"),
                 ("ours median", "ours_median_255", ".3f"), ("ref median", "reference_median_255", ".3f"),
                 ("ours success", "ours_success", ".0%"), ("ref success", "reference_success", ".0%"),
                 ("time ours / ref", "time_ratio", ".2f"))


def _side_by_side(args, compare) -> None:

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
    """Run a subcommand; bad input (an unknown attack, image source, parameter) exits with its message.

    Every argument is checked before anything is computed or written: a bad value exits
    with argparse's usage line (status 2), a bad combination or an unusable file with one
    ``explorer-bench: ...`` line (status 1).  Any other exception is a bug and keeps its
    traceback."""

    try:
        with one_warning_per_file():
            _main(argv)
    except InputError as error:
        message = f"explorer-bench: {error}"
        print(message, file=sys.stderr, flush=True)
        stop = SystemExit(message)  # the message for whoever catches it (a test, a notebook) ...
        stop.code = 1  # ... and exit status 1 for the shell
        raise stop from None


def _main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="explorer-bench", description="[Rony2023]'s evaluation on any model: "
                                     "resumable runs, reports, comparisons with the reference, speed.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="attack images, append per-image results to a JSONL file")
    run.add_argument("--models", nargs="+", default=[DEFAULT_MODEL], type=argument(_model_name))
    run.add_argument("--attacks", nargs="+", default=["table1"],
                     help="'table1', a Table 1 row's title (e.g. 'ALMA prox'), 'fixed', or name[:key=value,...] "
                          "with JSON values")
    run.add_argument("--modes", nargs="+", default=["untargeted", "targeted"], choices=["untargeted", "targeted"])
    run.add_argument("--eps", nargs="*", type=argument(checks.eps_255), default=[0.25, 0.5, 1.0],
                     help="budgets × 255 for fixed-budget attacks, each in (0, 255]")
    run.add_argument("--budget-fraction", type=argument(checks.budget_fraction), default=1.0,
                     help="scale every iteration budget (quick runs), in (0, 1]")
    run.add_argument("--batch-size", type=POSITIVE, default=1, help="images per attack call (>= 1)")
    run.add_argument("--seed", type=argument(checks.seed), default=0)
    run.add_argument("--out", type=Path, default=Path("results/bench.jsonl"))
    run.add_argument("--report", type=Path, default=None, help="also write the report to this folder")
    run.add_argument("--no-progress", action="store_true")
    _add_common(run)

    report = sub.add_parser("report", help="tables and failure-rate curves from a results file")
    report.add_argument("results", type=Path, help="a JSONL results file written by run")
    report.add_argument("--out-dir", type=Path, default=None, help="default: <results>_report/")

    for name, help_text in (("reference", "ours against adv-lib (pip install --no-deps adv-lib==0.2.8)"),
                            ("penalty", "ALMA prox: true penalty derivative against the reference's")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--model", default=DEFAULT_MODEL, type=argument(_model_name))
        p.add_argument("--steps", type=POSITIVE, default=500, help="iterations of every attack (>= 1)")
        p.add_argument("--modes", nargs="+", default=["untargeted", "targeted"],
                       choices=["untargeted", "targeted"])
        p.add_argument("--out", type=Path, default=None, help="write <out>.md and <out>.json")
        if name == "reference":
            p.add_argument("--attacks", nargs="+", default=["alma_prox", "dag", "pdpgd"],
                           choices=["alma_prox", "dag", "pdpgd"])
        _add_common(p)

    prox = sub.add_parser("prox", help="ternary search against DFB, accelerated DFB and Douglas–Rachford")
    prox.add_argument("--count", type=POSITIVE, default=4, help="random problems (>= 1)")
    prox.add_argument("--dim", type=POSITIVE, default=3 * 128 * 256, help="dimension of each problem (>= 1)")
    prox.add_argument("--iterations", type=POSITIVE, nargs="+", default=[10, 100, 1000],
                      help="iteration counts of the iterative solvers (each >= 1)")
    prox.add_argument("--threads", type=argument(checks.threads), default=None, help="torch CPU threads (>= 1)")
    prox.add_argument("--device", type=argument(checks.device), default="cpu")
    prox.add_argument("--out", type=Path, default=None, help="write <out>.md and <out>.json")

    lattice = sub.add_parser("lattice", help="the 8-bit finish's options on one minimal-norm attack's results")
    lattice.add_argument("--model", default=DEFAULT_MODEL, type=argument(_model_name))
    lattice.add_argument("--attack", default="alma_prox",
                         choices=sorted(name for name, spec in ATTACKS.items() if spec.kind == "minimal-norm"))
    lattice.add_argument("--steps", type=POSITIVE, default=500, help="iterations of the continuous attack (>= 1)")
    lattice.add_argument("--modes", nargs="+", default=["untargeted", "targeted"], choices=["untargeted", "targeted"])
    lattice.add_argument("--out", type=Path, default=None, help="write <out>.md and <out>.json")
    _add_common(lattice)

    peers = sub.add_parser("peers", help="PGD-CE, SegPGD, CosPGD, TsallisPGD and SEA against their authors' code")
    peers.add_argument("--model", default=DEFAULT_MODEL, type=argument(_model_name))
    peers.add_argument("--attacks", nargs="+", default=["pgd", "segpgd", "cospgd"], choices=list(PEERS),
                       help="tsallis_pgd and sea need the authors' code on PYTHONPATH (docs/benchmarks.md)")
    peers.add_argument("--eps", nargs="+", type=argument(checks.eps_255), default=[0.5, 1.0, 2.0, 4.0],
                       help="radii × 255, each in (0, 255]")
    peers.add_argument("--steps", type=POSITIVE, default=None,
                       help="iterations of both sides (>= 1; default: 20 for the PGD family, 300 for TsallisPGD "
                            "and for each SEA member)")
    peers.add_argument("--step-ratio", type=argument(checks.fraction), default=0.25,
                       help="step α as a fraction of ε, in (0, 1] (the papers' 20-step PGD: 0.25)")
    peers.add_argument("--no-random-start", action="store_true", help="both sides start at the clean image")
    peers.add_argument("--seed", type=argument(checks.seed), default=0)
    peers.add_argument("--out", type=Path, default=None, help="write <out>.md and <out>.json")
    _add_common(peers)

    sub.add_parser("speed", help="ALMA prox time over plain forward+backward time (options: speed -h)",
                   add_help=False)

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["speed"]:

        return speed_main(argv[1:])
    args = parser.parse_args(argv)
    rows = _check(args)  # every check that needs no model and no image, before anything runs
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)

    if args.command == "run":

        counts = run_benchmark(args.models, rows, args.out, **_run_options(args), progress=not args.no_progress)
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"{counts['run']} batches run, {counts['skipped']} already done; results in {args.out}")
            if args.report:
                _write_report(args.out, args.report)
    elif args.command == "report":
        _write_report(args.results, _report_dir(args))
    elif args.command == "reference":

        _side_by_side(args, compare_with_reference)
    elif args.command == "penalty":

        _side_by_side(args, compare_penalty_gradients)
    elif args.command == "lattice":
        model, images, ground_truth = _load_inputs(args)
        labels = {mode: attack_labels(model, ground_truth, mode) for mode in args.modes}
        rows = compare_options(model, images, labels, args.attack, args.steps)
        text = (f"{args.model}, {args.attack} {args.steps} iterations, {len(images)} images, device {images.device}, "
                f"torch {torch.__version__}\n\n" + markdown_table(rows, LATTICE_COLUMNS))
        _print_and_save(text, {"rows": rows}, args.out)
    elif args.command == "peers":
        model, images, ground_truth = _load_inputs(args)
        labels = attack_labels(model, ground_truth, "untargeted")
        rows = compare_with_authors(model, images, labels, attacks=args.attacks, eps_255=args.eps,
                                    num_steps=args.steps, step_ratio=args.step_ratio,
                                    random_start=not args.no_random_start, seed=args.seed)
        sources = sorted({PEERS[name].source for name in args.attacks})
        versions = ", ".join(f"{package} {_version(package)}" for package in sources)
        text = (f"{args.model}, untargeted, {len(images)} images, PGD family α = {args.step_ratio:g} ε, "
                f"{'zero' if args.no_random_start else 'random'} start, seed {args.seed}, device {images.device}, "
                f"torch {torch.__version__}, {versions}\n\n"
                + markdown_table(rows, PEER_COLUMNS))
        _print_and_save(text, {"rows": rows}, args.out)
    elif args.command == "prox":

        rows = compare_solvers(args.count, args.dim, args.iterations, device=args.device)
        columns = (("solver", "solver", ""), ("iterations", "iterations", "d"),
                   ("ms / vector", "ms_per_vector", ".2f"), ("median gap", "median_gap", ".2e"),
                   ("max gap", "max_gap", ".2e"), ("median relative gap", "median_relative_gap", ".2e"))
        text = (f"{args.count} random problems of dimension {args.dim} (float64, {args.device}, "
                f"{torch.get_num_threads()} threads)\n\n" + markdown_table(rows, columns))
        _print_and_save(text, {"rows": rows}, args.out)


def _report_dir(args) -> Path:
    return args.out_dir or args.results.with_name(args.results.stem + "_report")


def _run_options(args) -> dict:
    """The options of ``run`` as :func:`explorer.bench.run.run_benchmark` takes them."""
    return dict(images=args.images, modes=args.modes, eps_255=args.eps, limit=args.limit,
                batch_size=args.batch_size, seed=args.seed, device=args.device)


def _check(args):
    """Cross-argument and file checks of a parsed command line; returns the attack rows of ``run``."""
    rows = None
    if args.command == "run":

        rows = parse_rows(args.attacks, args.budget_fraction)
        check_run_arguments(args.models, rows, args.out, **_run_options(args))
        if args.report is not None:
            checks.output_folder(args.report, "--report")
    elif args.command == "report":
        checks.input_file(args.results, "the results file")
        checks.output_folder(_report_dir(args), "--out-dir")
    elif args.command in ("reference", "penalty"):

        check_spec(args.images, "--images")
        checks.distinct(args.modes, "--modes")
        attacks = checks.distinct(args.attacks, "--attacks") if args.command == "reference" else ["alma_prox"]
        for name in attacks:  # the attacks' own bound on iterations
            get_attack(name).validate({"num_steps": args.steps})
        if args.command == "reference":

            import_adv_lib()
        _check_saved_paths(args.out)
    elif args.command == "lattice":
        check_spec(args.images, "--images")
        checks.distinct(args.modes, "--modes")
        get_attack(args.attack).validate({"num_steps": args.steps})
        _check_saved_paths(args.out)
    elif args.command == "peers":
        check_spec(args.images, "--images")
        checks.distinct(args.attacks, "--attacks")
        checks.distinct(args.eps, "--eps")
        for name in args.attacks:  # the attacks' own bounds, and the authors' code importable
            peer = PEERS[name]
            get_attack(peer.attack).validate(ours_params(peer, args.steps or peer.default_steps,
                                                              args.step_ratio))
            peer.check()
        _check_saved_paths(args.out)
    elif args.command == "prox":
        _check_saved_paths(args.out)
    return rows


def _write_report(results: Path, out_dir: Path) -> None:

    records, skipped = usable_records(read_records(results))
    if skipped:
        checks.warn(describe_skipped(skipped, str(results)))
    if not records:
        raise InputError(f"{results} holds no usable benchmark record: nothing to report")
    path = write_report(records, out_dir, source=str(results))
    print(f"report written to {path}")


if __name__ == "__main__":
    main()
