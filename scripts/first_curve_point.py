"""How long a visitor waits after Run, server side: the app's Run handler on the default model.

Calls ``explorer.ui.run_attack`` (the code path of the Run button, without the browser) for
ALMA prox on the default model and its default sample, and prints the seconds until the first
update that carries a curve and until the first that carries the pictures, then the whole
run's time.  The first call also loads the model; later calls show the steady state.

Usage::

    python scripts/first_curve_point.py            # 3 runs of the default budget
    python scripts/first_curve_point.py 3 20       # 3 runs of 20 iterations
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from app_events import widget_defaults  # noqa: E402  (the widgets' defaults, as the page sends them)

from explorer import ui  # noqa: E402
from explorer.models import DEFAULT_MODEL  # noqa: E402


def main(argv):
    runs = int(argv[0]) if argv else 3
    steps = int(argv[1]) if len(argv) > 1 else ui.DEFAULT_STEPS
    sample = ui.default_sample(DEFAULT_MODEL)
    for _ in range(runs):
        start = time.perf_counter()
        first_curve = first_image = None
        for update in ui.run_attack(DEFAULT_MODEL, sample, None, "alma_prox", "untargeted", None, steps, 0, 0.99,
                                    *widget_defaults()):
            now = time.perf_counter() - start
            if first_curve is None and "apsr_plot" in update:
                first_curve = now
            if first_image is None and "perturbation" in update:
                first_image = now
        print(f"{DEFAULT_MODEL} {sample}, ALMA prox {steps} iterations, torch threads {torch.get_num_threads()}: "
              f"first curve {first_curve:.2f} s, first image {first_image:.2f} s, "
              f"whole run {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
