"""Segmentation Attack Explorer: see and measure adversarial attacks on segmentation models.

Subpackages and modules (data flows one way, top to bottom):

* :mod:`explorer.losses`, :mod:`explorer.prox` — DLR constraints, penalty, proximity operator
* :mod:`explorer.attacks` — the attacks, their registry and shared loop machinery
* :mod:`explorer.metrics`, :mod:`explorer.targets` — APSR, accuracy, IoU, curves; target maps
* :mod:`explorer.datasets`, :mod:`explorer.worlds` — class names/palettes; procedural scenes
* :mod:`explorer.models` — the model registry (shipped models, public checkpoints)
* :mod:`explorer.samples`, :mod:`explorer.splits` — sample images; which seeds are for what
* :mod:`explorer.errors` — :class:`InputError`, the one exception for bad input
* :mod:`explorer.live`, :mod:`explorer.render`, :mod:`explorer.exports` — one attack run
  live (stop, replay, metrics), its pictures and plots, its run file and downloads
* :mod:`explorer.ui` — the Gradio app over the three above (``app.py`` launches it)
"""
from explorer.errors import InputError

__version__ = "0.1.0"
__all__ = ["InputError", "__version__"]
