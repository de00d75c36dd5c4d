"""Stop requests that cross processes: a run's flag is a file in its own folder.

A run may execute in another process than the one that serves the Stop button — on a
Hugging Face ZeroGPU Space, ``spaces.GPU`` runs the attack in a forked worker, and a flag
in the server's memory never reaches it.  A :class:`StopSignal` is the path of a flag
file: the server writes it (:meth:`request`), the run looks for it once per iteration
(:meth:`requested`, one ``stat`` call), whichever process, thread or machine sharing the
folder each side lives in.  It is plain data (a path), so it pickles into a worker.  The
path is chosen by the server (the run's own folder), never by a client.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: the flag file's name inside a run's folder
STOP_FLAG_NAME = "stop-requested"


@dataclass(frozen=True)
class StopSignal:
    """The stop flag of one run: ``folder / STOP_FLAG_NAME``."""

    folder: Path

    @property
    def path(self) -> Path:
        return Path(self.folder) / STOP_FLAG_NAME

    def request(self) -> None:
        """Ask the run to stop after its current iteration (idempotent; a missing folder —
        the run already cleaned up — is not an error)."""
        try:
            self.path.touch()
        except FileNotFoundError:
            pass

    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return os.path.exists(self.path)

    def clear(self) -> None:
        """Forget the request (the run is over)."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
