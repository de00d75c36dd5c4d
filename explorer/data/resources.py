"""Folders shipped inside the package — the sample images, the models' weights — as real paths.

They are read through :mod:`importlib.resources`, so they are found wherever the package is
installed: a wheel in site-packages, an editable install, a checkout on ``sys.path``.  Every
ordinary install unpacks the package onto the file system, where the folder is returned as
it is; a package imported from a zip archive has the folder extracted once (Python 3.12+ can
extract folders) to a temporary folder that is removed when the process exits.

    >>> package_folder("explorer.data", "sample_images").joinpath("index.json").is_file()
    True
"""
from __future__ import annotations

import atexit
from contextlib import ExitStack
from importlib.resources import as_file, files
from pathlib import Path

#: folders extracted from a zipped package, kept until the process exits
_EXTRACTED = ExitStack()
atexit.register(_EXTRACTED.close)


def package_folder(package: str, name: str) -> Path:
    """The folder ``name`` inside the installed package ``package`` (e.g. ``"explorer.data"``),
    as a path on the file system."""
    folder = files(package) / name
    if isinstance(folder, Path):
        return folder
    return _EXTRACTED.enter_context(as_file(folder))
