"""Driving the app's handlers (explorer.ui) without a browser: the shipped model names, a
fake Gradio request, the Run button's code path, and a model that runs out of memory."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import torch

from explorer import ui
from explorer.attacks import ATTACKS

STREET, OBJECTS = "street-fpn-mobilenet", "objects-fpn-mobilenet"


def request(session: str = "s"):
    """What Gradio hands a handler: only the session hash is read."""
    return SimpleNamespace(session_hash=session)


def widget_defaults():
    """The attack-parameter widgets at their defaults, in the order the handlers take them."""
    return [ATTACKS[a].param(n).default for a, n in ui.PARAM_KEYS]


def run_event(upload=None, sample=None, steps=2, seed=0, session="s", attack="alma_prox", model=STREET,
              target="untargeted", target_upload=None, nu=0.99):
    """All updates of the app's Run handler (the code path of the Run button)."""
    return list(ui.run_attack(model, sample, upload, attack, target, target_upload, steps, seed, nu,
                              *widget_defaults(), request=request(session)))


class RunsOutOfMemory(torch.nn.Module):
    """A model that fails with the given error from its ``after``-th call on."""

    def __init__(self, model, error, after):
        super().__init__()
        self.model, self.error, self.after, self.calls = model, error, after, 0

    @property
    def dataset(self):
        return self.model.dataset

    def forward(self, x):
        self.calls += 1
        if self.calls > self.after:
            raise self.error
        return self.model(x)


def run_out_of_memory_in_the_app(monkeypatch):
    """Make the app's runs use a model that runs out of CUDA memory after 3 forwards;
    returns the real ``build_scene`` to put back."""
    real = ui.build_scene

    def failing_scene(*args, **kwargs):
        scene = real(*args, **kwargs)
        error = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return dataclasses.replace(scene, model=RunsOutOfMemory(scene.model, error, after=3))

    monkeypatch.setattr(ui, "build_scene", failing_scene)
    return real
