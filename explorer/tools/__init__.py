"""Commands that make the shipped assets (a top layer, like the app and the benchmark).

* :mod:`explorer.tools.train` — train a shipped model (``explorer-train``)
* :mod:`explorer.tools.majority` — the smoothed majority-label street target
* :mod:`explorer.tools.samples` — the sample images
"""
