"""Model files and names nobody should trust (issue 8): names that try to leave their folder,
weight files that would run code when unpickled, and models that cannot load (offline
without a cache, damaged weights) while the shipped ones keep working."""
from __future__ import annotations

import pytest
import torch
from app_events import STREET

from explorer import ui
from explorer.data.samples import load_sample
from explorer.errors import InputError
from explorer.models import get_model_entry, load_model, refresh_shipped
from explorer.models.registry import weights_dir

torch.set_num_threads(1)
pytestmark = pytest.mark.usefixtures("session_files")


@pytest.mark.parametrize("name", ["../../etc", "../weights/street-fpn-mobilenet", "/etc/passwd", "a/../b",
                                  "street-fpn-mobilenet/../../x"])
def test_model_and_sample_names_cannot_escape_their_folders(name):
    with pytest.raises(InputError):
        load_model(name)
    with pytest.raises(InputError):
        load_sample(name)
    *views, status = ui.preview(name, "street-000", None, "untargeted", None)
    assert views[:4] == [None] * 4 and status.startswith("⚠️")
    *views, status = ui.preview(STREET, name, None, "untargeted", None)
    assert views[:4] == [None] * 4 and status.startswith("⚠️")


class _Trap:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_weight_files_are_never_unpickled(tmp_path):
    marker = tmp_path / "code-ran"
    trap = tmp_path / "weights.pth"
    torch.save({"conv.weight": _Trap(str(marker))}, trap)
    with pytest.raises(InputError, match="never unpickled"):
        get_model_entry("tv-lraspp-mobilenet-v3-voc").load(str(trap))
    transformers = pytest.importorskip("transformers")
    folder = tmp_path / "segformer"
    transformers.SegformerConfig(num_labels=19, hidden_sizes=[8, 16, 24, 32], num_attention_heads=[1, 1, 2, 2],
                                 depths=[1, 1, 1, 1], decoder_hidden_size=16).save_pretrained(str(folder))
    torch.save({"x": _Trap(str(marker))}, folder / "pytorch_model.bin")
    with pytest.raises(InputError, match="never unpickled"):
        get_model_entry("hf-segformer-b0-cityscapes").load(str(folder))
    assert not marker.exists()


def test_a_model_that_cannot_load_is_reported_and_the_shipped_ones_keep_working(tmp_path, monkeypatch):
    # offline hub, empty cache
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    *views, status = ui.preview("smp-segformer-b0-cityscapes", "street-000", None, "untargeted", None)
    assert views[:4] == [None] * 4 and "network" in status and STREET in status
    # corrupt weights next to the shipped models
    folder = tmp_path / "weights"
    folder.mkdir()
    for shipped in weights_dir().iterdir():
        if (shipped / "card.json").is_file():
            (folder / shipped.name).symlink_to(shipped, target_is_directory=True)
    broken = folder / "street-broken"
    broken.mkdir()
    for name in ("card.json", "config.json"):
        (broken / name).write_bytes((weights_dir() / STREET / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(folder))
    try:
        assert "street-broken" in refresh_shipped()
        with pytest.raises(InputError, match="model.safetensors.*still work"):
            load_model("street-broken", device="cpu")
        *views, status = ui.preview("street-broken", "street-000", None, "untargeted", None)
        assert views[:4] == [None] * 4 and "cannot be loaded" in status
        image, *_, status = ui.preview(STREET, "street-000", None, "untargeted", None)
        assert image is not None and "Press" in status
    finally:
        monkeypatch.delenv("EXPLORER_WEIGHTS_DIR")
        refresh_shipped()
