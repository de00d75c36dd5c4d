"""The batch benchmark: [Rony2023]'s evaluation on any model, resumable and shardable.

Modules, in the order a run uses them:

* :mod:`~explorer.data.sources` — image sources (samples, procedural seeds, a folder) and
  the labels each mode attacks;
* :mod:`~explorer.bench.run` — the batch plan, per-image records, ``torchrun`` sharding;
* :mod:`~explorer.bench.store` — the append-only JSONL results file and its resumption;
* :mod:`~explorer.bench.report` — Table 1, failure-rate curves, fixed-budget and timing tables;
* :mod:`~explorer.bench.compare` — side-by-side runs: ours vs adv-lib, true vs reference
  penalty derivative;
* :mod:`~explorer.bench.prox_solvers` — the prox operator by ternary search vs DFB,
  accelerated DFB and Douglas–Rachford ([Rony2023] Fig. 2);
* :mod:`~explorer.bench.speed` — ALMA prox time over the model's own forward+backward time;
* :mod:`~explorer.bench.checks` — every argument checked before anything is computed or
  written (one line a person can act on, for the command line and the library alike);
* :mod:`~explorer.bench.cli` — ``explorer-bench`` (``python -m explorer.bench``).
"""
