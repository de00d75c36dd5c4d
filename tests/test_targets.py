"""Tests of explorer.targets: majority target, smoothing, resizing and validation."""

import numpy as np
import pytest
import torch

from explorer.errors import InputError
from explorer.targets import (
    IGNORE_INDEX,
    background_target,
    custom_target,
    majority_label_target,
    resize_label_map,
    untargeted_labels,
)

I = 255  # noqa: E741  (the ignored label: a one-letter name keeps the maps below aligned)

M1 = [[0, 0, 1, 1],
      [0, 2, 2, 1],
      [I, I, 2, 1]]
M2 = [[0, 1, 1, 1],
      [0, 2, 2, 2],
      [I, I, I, 1]]
M3 = [[1, 2, 1, 2],
      [0, 0, 2, 1],
      [7, 2, 2, I]]  # 7 >= K = 3: counts as ignored
# Votes (M1, M2, M3) -> majority:
#   (0,0) 0 0 1 -> 0      (0,1) 0 1 2 -> tie, lowest = 0   (0,2) 1 1 1 -> 1   (0,3) 1 1 2 -> 1
#   (1,0) 0 0 0 -> 0      (1,1) 2 2 0 -> 2                 (1,2) 2 2 2 -> 2   (1,3) 1 2 1 -> 1
#   (2,0) I I 7 -> I      (2,1) I I 2 -> I (mostly ignored) (2,2) 2 I 2 -> 2   (2,3) 1 1 I -> 1
EXPECTED = [[0, 0, 1, 1],
            [0, 2, 2, 1],
            [I, I, 2, 1]]


def boundaries(m: torch.Tensor) -> int:
    """Number of 4-neighbour pixel pairs with different labels."""
    return int((m[1:] != m[:-1]).sum() + (m[:, 1:] != m[:, :-1]).sum())


def test_majority_by_hand():
    maps = [torch.tensor(M1), torch.tensor(M2), torch.tensor(M3)]
    out = majority_label_target(maps, num_classes=3, smoothing=0)
    assert out.dtype == torch.int64
    assert out.tolist() == EXPECTED
    # same result from a stacked tensor, numpy arrays, float maps with integral values
    assert majority_label_target(torch.stack(maps), 3, smoothing=0).tolist() == EXPECTED
    np_maps = [np.array(m, dtype=np.uint8) for m in (M1, M2, M3)]
    assert majority_label_target(np_maps, 3, smoothing=0).tolist() == EXPECTED
    assert majority_label_target([m.double() for m in maps], 3, smoothing=0).tolist() == EXPECTED


def test_majority_ties_and_ignore_index():
    # a tie between a class and the ignore label goes to the class
    assert majority_label_target([[[1]], [[I]]], 3, smoothing=0).tolist() == [[1]]
    # 2 of 3 ignored -> ignored, written as the chosen ignore_index
    out = majority_label_target([[[1]], [[I]], [[9]]], 3, smoothing=0, ignore_index=-1)
    assert out.tolist() == [[-1]]
    with pytest.raises(InputError, match="ignore_index"):
        majority_label_target([[[1]]], 3, ignore_index=2)
    with pytest.raises(InputError, match="empty"):
        majority_label_target([], 3)


def test_majority_resizes_other_sizes_and_output_size():
    maps = [torch.tensor(M1), torch.tensor(M2), torch.tensor(M3)]
    # M3 given at twice the size is resized back (nearest) to 3x4 before voting
    big = resize_label_map(torch.tensor(M3), (6, 8))
    assert majority_label_target([maps[0], maps[1], big], 3, smoothing=0).tolist() == EXPECTED
    # size= resizes the result with nearest neighbour: 2x2 blocks, same set of values
    out = majority_label_target(maps, 3, size=(6, 8), smoothing=0)
    assert out.shape == (6, 8)
    assert set(out.unique().tolist()) == {0, 1, 2, I}
    assert torch.equal(out, torch.tensor(EXPECTED).repeat_interleave(2, 0).repeat_interleave(2, 1))


def _layout_maps(n_maps: int = 3, size: int = 64) -> list[torch.Tensor]:
    """Street-like layout with per-map noise and one salt pixel shared by every map."""
    base = torch.zeros(size, size, dtype=torch.long)  # class 0: sky, top half
    base[size // 2:, : size // 2] = 1  # road, bottom left
    base[size // 2:, size // 2:] = 2  # building, bottom right
    base[-6:, 16:48] = I  # ego-vehicle bonnet, unlabelled
    base[15, 20] = 2  # isolated salt pixel in the sky
    base[45, 10] = 0  # and one in the road
    gen = torch.Generator().manual_seed(0)
    maps = []
    for _ in range(n_maps):
        m = base.clone()
        noise = torch.rand(size, size, generator=gen) < 0.05
        m[noise] = torch.randint(0, 3, (int(noise.sum()),), generator=gen)
        maps.append(m)
    return maps


def test_smoothing_removes_salt_and_keeps_layout():
    maps = _layout_maps()
    raw = majority_label_target(maps, 3, smoothing=0)
    assert raw[15, 20] == 2 and raw[45, 10] == 0  # salt survives the plain vote
    smooth = majority_label_target(maps, 3, smoothing=0.04)  # sigma = 2.56 px
    assert smooth.shape == (64, 64)
    assert smooth[15, 20] == 0 and smooth[45, 10] == 1  # salt removed
    assert (smooth == raw).float().mean().item() > 0.95
    assert boundaries(smooth) <= boundaries(raw)
    assert (smooth[-4:, 20:44] == I).all()  # bonnet stays ignored
    assert smooth[5, 5] == 0 and smooth[50, 5] == 1 and smooth[50, 60] == 2
    # deterministic
    assert torch.equal(smooth, majority_label_target(maps, 3, smoothing=0.04))


def test_resize_label_map_nearest():
    m = torch.tensor([[0, 1], [2, I]])
    up = resize_label_map(m, (4, 4))
    assert up.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, I, I], [2, 2, I, I]]
    assert up.dtype == m.dtype
    # down-sampling takes the pixel under each output centre: rows/cols 1 and 3
    src = torch.arange(16).view(1, 4, 4)
    assert resize_label_map(src, (2, 2)).tolist() == [[[5, 7], [13, 15]]]
    assert set(resize_label_map(src, (7, 3)).unique().tolist()) <= set(range(16))
    with pytest.raises(InputError, match="size"):
        resize_label_map(m, (0, 3))
    with pytest.raises(InputError, match=r"\(H, W\)"):
        resize_label_map(torch.zeros(1, 1, 2, 2), (2, 2))


def test_custom_target():
    out = custom_target(np.array([[0, 5, -1], [2, 1, 255]]), num_classes=3)
    assert out.dtype == torch.int64
    assert out.tolist() == [[0, I, I], [2, 1, I]]
    # float with whole values is accepted; batch rank kept; resize
    out = custom_target(torch.tensor([[[0.0, 2.0], [1.0, 4.0]]]), 3, size=(4, 4))
    assert out.shape == (1, 4, 4)
    assert out[0, 3, 3] == I and out[0, 0, 0] == 0
    with pytest.raises(InputError, match="integer"):
        custom_target(np.array([[0.5, 1.0]]), 3)
    with pytest.raises(InputError, match="no labelled pixel"):
        custom_target(np.array([[3, 255], [-2, 7]]), 3)
    with pytest.raises(InputError, match="map 1 of the batch"):
        custom_target(torch.tensor([[[0]], [[9]]]), 3)
    with pytest.raises(InputError, match="shape"):
        custom_target(torch.zeros(1, 1, 2, 2, dtype=torch.long), 3)


def test_background_target():
    labels = torch.tensor([[[0, I], [1, 2]]])
    assert background_target(labels, num_classes=3).tolist() == [[[0, I], [0, 0]]]
    assert background_target(labels, keep_ignored=False, num_classes=3).tolist() == [[[0, 0], [0, 0]]]
    assert background_target(labels, background_class=2).tolist() == [[[2, 2], [2, 2]]]
    t = background_target((2, 3, 4), background_class=1)
    assert t.shape == (2, 3, 4) and t.dtype == torch.int64 and (t == 1).all()
    with pytest.raises(InputError, match="background_class"):
        background_target(labels, background_class=3, num_classes=3)


def test_untargeted_labels():
    labels = torch.tensor([[[0, 2], [1, I]]])
    assert torch.equal(untargeted_labels(labels=labels), labels)
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 2, 0, 0] = logits[0, 1, 0, 1] = logits[0, 0, 1, 0] = logits[0, 1, 1, 1] = 1.0
    out = untargeted_labels(clean_logits=logits)
    assert out.dtype == torch.int64 and out.tolist() == [[[2, 1], [0, 1]]]
    # the ground truth wins when both are given
    assert torch.equal(untargeted_labels(labels, logits), labels)
    with pytest.raises(InputError, match="both are None"):
        untargeted_labels()
    assert IGNORE_INDEX == 255
