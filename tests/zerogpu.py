"""A stand-in for Hugging Face ZeroGPU's ``spaces.GPU`` decorator, for tests.

On ZeroGPU, ``spaces.GPU(duration=...)`` books the GPU for ``duration(*args)`` seconds and
runs the decorated generator in a worker process forked from the server; the arguments are
pickled into the worker, and every value the generator yields is pickled back.  This fake
does the same with ``multiprocessing``'s fork context (one worker per call, which is what
ZeroGPU does for a first call), so a value that cannot cross a process boundary — a lock,
a thread, a model — fails here as it fails on a Space, and state kept in the server
process's memory is invisible to the stream, as it is there.
"""
from __future__ import annotations

import multiprocessing
import pickle
import traceback
from typing import Any, Callable, List


def _worker(stream: Callable, payload: bytes, connection) -> None:
    try:
        args, kwargs = pickle.loads(payload)
        for value in stream(*args, **kwargs):
            connection.send_bytes(pickle.dumps(("value", value)))
        connection.send_bytes(pickle.dumps(("end", None)))
    except BaseException:  # pickling failures included: reported like ZeroGPU's "worker error"
        connection.send_bytes(pickle.dumps(("error", traceback.format_exc())))
    finally:
        connection.close()


class FakeZeroGPU:
    """``spaces``-like object: ``FakeZeroGPU().GPU(duration=f)(generator_function)``."""

    def __init__(self):
        self.bookings: List[float] = []
        self.calls = 0

    def GPU(self, duration: Callable[..., float]):  # noqa: N802 (spaces' name)
        def decorate(stream: Callable) -> Callable:
            def handler(*args: Any, **kwargs: Any):
                self.bookings.append(float(duration(*args, **kwargs)))
                self.calls += 1
                context = multiprocessing.get_context("fork")
                receiver, sender = context.Pipe(duplex=False)
                payload = pickle.dumps((args, kwargs))  # what cannot be pickled fails here, as on ZeroGPU
                process = context.Process(target=_worker, args=(stream, payload, sender), daemon=True)
                process.start()
                sender.close()
                try:
                    while True:
                        kind, value = pickle.loads(receiver.recv_bytes())
                        if kind == "end":
                            return
                        if kind == "error":
                            raise RuntimeError(f"ZeroGPU worker error\n{value}")
                        yield value
                finally:
                    receiver.close()
                    process.join(timeout=30)
                    if process.is_alive():  # a viewer left: ZeroGPU stops the worker's task
                        process.terminate()
            return handler
        return decorate
