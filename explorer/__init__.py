"""Segmentation Attack Explorer: see and measure adversarial attacks on segmentation models.

The package is built in layers; each imports only those below it (``tests/test_layers.py``):

0. :mod:`explorer.errors`, :mod:`explorer.validation` — :class:`InputError`, argument checks
1. :mod:`explorer.attacks` — the attacks, their registry, losses, proximity operator, shared loop
2. :mod:`explorer.metrics`, :mod:`explorer.targets` — APSR, accuracy, IoU, curves; target maps
3. :mod:`explorer.data` — datasets, splits, samples, procedural worlds, file decoding, image sources
4. :mod:`explorer.models` — the model registry (shipped models, public checkpoints), architectures
5. :mod:`explorer.live` — the engine of the app and the notebooks (scene, live run, render, exports)
6. :mod:`explorer.ui` (the Gradio app, ``explorer-app``), :mod:`explorer.bench` (``explorer-bench``),
   :mod:`explorer.tools` (training, the majority target, the sample images)
"""

from explorer.errors import InputError

# the one place the version is written: pyproject.toml reads this literal statically (without
# importing the package, so without torch) through [tool.setuptools.dynamic]; keep it a plain string
__version__ = "0.2.0"

__all__ = ["InputError", "__version__"]
