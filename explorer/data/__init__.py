"""Where images and labels come from (layer 3; imports no models).

* :mod:`explorer.data.datasets` — class names, palettes, the ignore index
* :mod:`explorer.data.splits` — which procedural seeds are samples, validation, training
* :mod:`explorer.data.samples` — the shipped sample images, the majority-label target, the
  paper's targeted setting
* :mod:`explorer.data.worlds` — the procedural street (Cityscapes classes) and objects (VOC
  classes) scenes
* :mod:`explorer.data.decode` — every picture and label-map file or array decoded safely
* :mod:`explorer.data.sources` — the benchmark's image sources (samples, seeds, folders)
* :mod:`explorer.data.resources` — the folders shipped inside the package (samples, weights)
  as paths, read through :mod:`importlib.resources`
"""
