"""Tests of explorer.metrics on small hand-made maps whose values are worked out below."""

import itertools
import math

import numpy as np
import pytest
import torch

from explorer.errors import InputError
from explorer.metrics import (
    apsr,
    confusion_matrix,
    default_thresholds,
    failure_rate_curve,
    greedy_worst_case_miou,
    iou_per_class,
    l2_norm,
    labelled_mask,
    linf_norm,
    mean_iou,
    norm_summary,
    pixel_accuracy,
    pixel_success,
)

I = 255  # noqa: E741  (the ignored label: a one-letter name keeps the maps below aligned)

# One 3x4 image, K = 3, two ignored pixels -> 10 labelled pixels.
LABELS = torch.tensor(
    [[[0, 0, 1, 1],
      [0, 2, 2, I],
      [I, 2, 1, 1]]]
)
PRED = torch.tensor(
    [[[0, 1, 1, 1],
      [0, 2, 0, 2],
      [1, 2, 1, 0]]]
)
# Labelled pixels, label -> pred:
#   (0,0) 0->0 ok   (0,1) 0->1 WRONG  (0,2) 1->1 ok   (0,3) 1->1 ok
#   (1,0) 0->0 ok   (1,1) 2->2 ok     (1,2) 2->0 WRONG
#   (2,1) 2->2 ok   (2,2) 1->1 ok     (2,3) 1->0 WRONG
# 7 correct, 3 wrong: accuracy 7/10, untargeted APSR 3/10.
#
# Confusion (rows = truth, cols = prediction):
#   truth 0: (0,0)->0 (0,1)->1 (1,0)->0           -> [2, 1, 0]
#   truth 1: (0,2)->1 (0,3)->1 (2,2)->1 (2,3)->0  -> [1, 3, 0]
#   truth 2: (1,1)->2 (1,2)->0 (2,1)->2           -> [1, 0, 2]
CONFUSION = [[2, 1, 0], [1, 3, 0], [1, 0, 2]]
# IoU = TP / (row sum + col sum - TP):
#   class 0: 2 / (3 + 4 - 2) = 2/5;  class 1: 3 / (4 + 4 - 3) = 3/5;  class 2: 2 / (3 + 2 - 2) = 2/3
# mIoU = (2/5 + 3/5 + 2/3) / 3 = 5/9


def test_labelled_mask_and_pixel_success():
    mask = labelled_mask(LABELS, 3)
    assert mask.dtype == torch.bool
    assert mask.sum().item() == 10
    assert not mask[0, 1, 3] and not mask[0, 2, 0]
    fooled = pixel_success(PRED, LABELS, 3)
    expected = torch.zeros(1, 3, 4, dtype=torch.bool)
    expected[0, 0, 1] = expected[0, 1, 2] = expected[0, 2, 3] = True
    # (1,3) and (2,0) differ from 255 but are ignored, so they are not "fooled".
    assert torch.equal(fooled, expected)


def test_apsr_and_accuracy_untargeted():
    assert apsr(PRED, LABELS, 3).tolist() == pytest.approx([0.3])
    assert pixel_accuracy(PRED, LABELS, 3).tolist() == pytest.approx([0.7])
    # numpy label maps are accepted too
    assert apsr(PRED.numpy(), LABELS.numpy(), 3).tolist() == pytest.approx([0.3])


def test_apsr_targeted_differs_from_untargeted():
    target = torch.tensor(
        [[[1, 1, 1, 1],
          [1, 1, 1, I],
          [I, I, 1, 1]]]
    )
    # 9 labelled target pixels; predictions there: 0 1 1 1 / 0 2 0 / 1 0
    # -> 4 equal the target: targeted APSR 4/9, untargeted APSR w.r.t. this map 5/9.
    assert apsr(PRED, target, 3, targeted=True).item() == pytest.approx(4 / 9)
    assert apsr(PRED, target, 3, targeted=False).item() == pytest.approx(5 / 9)
    assert pixel_success(PRED, target, 3, targeted=True).sum().item() == 4


def test_apsr_per_image_and_logits():
    labels = torch.cat([LABELS, torch.zeros_like(LABELS)])  # image 1: all class 0
    # image 1: PRED is 0 at (0,0), (1,0), (1,2), (2,3) only -> 8 of 12 pixels fooled
    pred = torch.cat([PRED, PRED])
    assert apsr(pred, labels, 3).tolist() == pytest.approx([0.3, 2 / 3])
    logits = torch.nn.functional.one_hot(pred, 3).permute(0, 3, 1, 2).float()
    assert apsr(logits, labels, 3).tolist() == pytest.approx([0.3, 2 / 3])


def test_confusion_iou_miou():
    conf = confusion_matrix(PRED, LABELS, 3)
    assert conf.dtype == torch.int64
    assert conf.tolist() == CONFUSION
    iou = iou_per_class(conf)
    assert iou.dtype == torch.float64
    assert iou.tolist() == pytest.approx([2 / 5, 3 / 5, 2 / 3])
    assert mean_iou(conf) == pytest.approx(5 / 9)


def test_absent_class_is_nan_and_left_out_of_the_mean():
    # With K = 4, class 3 appears neither in the labels nor in the predictions.
    conf = confusion_matrix(PRED, LABELS, 4)
    iou = iou_per_class(conf)
    assert iou[:3].tolist() == pytest.approx([2 / 5, 3 / 5, 2 / 3])
    assert math.isnan(iou[3].item())
    assert mean_iou(conf) == pytest.approx(5 / 9)
    # All-zero matrix: every class absent -> NaN mIoU
    assert math.isnan(mean_iou(torch.zeros(2, 2, dtype=torch.long)))


def test_per_image_vs_dataset_miou():
    labels = torch.tensor([[[0, 0], [0, 0]], [[1, 1], [1, 1]]])
    pred = torch.tensor([[[0, 0], [0, 0]], [[0, 1], [1, 1]]])
    # Image A: conf [[4,0],[0,0]] -> IoU [1, NaN] -> mIoU 1
    # Image B: conf [[0,0],[1,3]] -> IoU0 = 0/(0+1+0) = 0 (predicted, not present),
    #          IoU1 = 3/(4+3-3) = 3/4 -> mIoU 3/8
    per = confusion_matrix(pred, labels, 2, per_image=True)
    assert per.shape == (2, 2, 2)
    assert per.tolist() == [[[4, 0], [0, 0]], [[0, 0], [1, 3]]]
    per_iou = iou_per_class(per)
    assert per_iou.shape == (2, 2)
    assert per_iou[0, 0].item() == 1.0 and math.isnan(per_iou[0, 1].item())
    assert per_iou[1].tolist() == pytest.approx([0.0, 0.75])
    assert mean_iou(per).tolist() == pytest.approx([1.0, 0.375])
    # Dataset: conf [[4,0],[1,3]] -> IoU0 = 4/(4+5-4) = 4/5, IoU1 = 3/(4+3-3) = 3/4
    # -> mIoU 0.775, not the mean of per-image mIoUs (0.6875).
    total = confusion_matrix(pred, labels, 2)
    assert torch.equal(total, per.sum(0))
    assert mean_iou(total) == pytest.approx(0.775)


def test_norms():
    delta = torch.zeros(2, 3, 2, 2)
    delta[0, 0, 0, 0], delta[0, 2, 1, 1] = 3.0, -4.0
    delta[1, 1, 0, 1] = -0.5
    assert linf_norm(delta).tolist() == pytest.approx([4.0, 0.5])
    assert l2_norm(delta).tolist() == pytest.approx([5.0, 0.5])


def test_failure_rate_curve_values():
    norms = [0.001, 0.003, 0.5]
    success = [True, True, False]  # the third is never fooled, whatever its norm
    eps, fail = failure_rate_curve(norms, success, thresholds=[0.0, 0.001, 0.002, 0.003, 1.0])
    assert eps.dtype == np.float64 and fail.dtype == np.float64
    # fooled at eps: 0, 1 (norm <= eps inclusive), 1, 2, 2 of 3 images
    assert fail.tolist() == pytest.approx([1.0, 2 / 3, 2 / 3, 1 / 3, 1 / 3])
    # torch inputs work too
    _, fail_t = failure_rate_curve(torch.tensor(norms), torch.tensor(success), [0.002])
    assert fail_t.tolist() == pytest.approx([2 / 3])


def test_failure_rate_default_grid():
    grid = default_thresholds()
    assert grid.dtype == np.float64 and grid.shape == (401,)
    assert grid[0] == 0.0 and grid[-1] == pytest.approx(1.0)
    assert np.all(np.diff(grid) > 0)
    assert grid[200] == pytest.approx(2 / 255)  # end of the linear part
    assert np.diff(grid[:201]) == pytest.approx(np.full(200, 2 / 255 / 200))
    eps, fail = failure_rate_curve([0.001, 0.003, 0.5], [True, True, False])
    assert np.array_equal(eps, grid)
    assert fail[0] == 1.0 and fail[-1] == pytest.approx(1 / 3)
    assert np.all(np.diff(fail) <= 0)  # non-increasing in eps


def test_norm_summary_counts_failures_as_one():
    s = norm_summary([0.1, 0.2, 0.7], [True, True, False])
    # counted norms [0.1, 0.2, 1.0]
    assert s["median"] == pytest.approx(0.2)
    assert s["mean"] == pytest.approx((0.1 + 0.2 + 1.0) / 3)
    assert s["median_255"] == pytest.approx(0.2 * 255)
    assert s["mean_255"] == pytest.approx(1.3 / 3 * 255)
    assert s["success_rate"] == pytest.approx(2 / 3)
    # even count: median of [0.1, 0.3, 1, 1] = (0.3 + 1) / 2; failed norms may be NaN
    s = norm_summary(torch.tensor([0.3, float("nan"), 0.1, 0.2]), np.array([1, 0, 1, 0], bool))
    assert s["median"] == pytest.approx(0.65)
    assert s["mean"] == pytest.approx(2.4 / 4)


def test_input_errors():
    # no labelled pixel in image 1
    labels = torch.cat([LABELS, torch.full_like(LABELS, I)])
    pred = torch.cat([PRED, PRED])
    with pytest.raises(InputError, match="image 1 has no labelled pixel"):
        apsr(pred, labels, 3)
    with pytest.raises(InputError, match="no labelled pixel"):
        pixel_accuracy(pred, labels, 3)
    # shape mismatch, missing batch dimension
    with pytest.raises(InputError, match="same pixels"):
        apsr(PRED[:, :2], LABELS, 3)
    with pytest.raises(InputError, match=r"\(N, H, W\)"):
        apsr(PRED[0], LABELS[0], 3)
    # predictions out of range
    with pytest.raises(InputError, match=r"\[0, 3\)"):
        confusion_matrix(PRED + 1, LABELS, 3)
    with pytest.raises(InputError, match=r"\[0, 3\)"):
        apsr(PRED - 1, LABELS, 3)
    # float labels, logits with the wrong number of classes
    with pytest.raises(InputError, match="integer"):
        apsr(PRED, LABELS.float(), 3)
    with pytest.raises(InputError, match="channels"):
        apsr(torch.zeros(1, 4, 3, 4), LABELS, 3)
    with pytest.raises(InputError, match="num_classes"):
        apsr(PRED, LABELS, 0)
    # not a square confusion matrix
    with pytest.raises(InputError, match="square"):
        iou_per_class(torch.zeros(2, 3))
    # norms
    with pytest.raises(InputError, match="empty"):
        norm_summary([], [])
    with pytest.raises(InputError, match="one entry per image"):
        failure_rate_curve([0.1, 0.2], [True])
    with pytest.raises(InputError, match="at least 2 dimensions"):
        linf_norm(torch.zeros(3))
    assert issubclass(InputError, ValueError)


def test_apsr_is_undefined_without_a_labelled_pixel():
    with pytest.raises(InputError, match="no labelled pixel"):
        apsr(torch.zeros(1, 4, 4, dtype=torch.long), torch.full((1, 4, 4), 255), 19)


# --------------------------------------------------------------------------- worst-case mIoU over an ensemble

def rows_to_maps(rows):
    """4×4 maps whose rows are constant: ``rows[..., r]`` is the class of row r (4 pixels)."""
    rows = torch.tensor(rows)
    return rows.unsqueeze(-1).expand(*rows.shape, 4).clone()


def brute_force_worst_case(confusions):
    """The exact worst case: the lowest dataset mIoU over all A^N member assignments."""
    a, n = confusions.shape[:2]
    return min((mean_iou(sum(confusions[choice[i], i] for i in range(n))), choice)
               for choice in itertools.product(range(a), repeat=n))


# Three 4×4 images, K = 2, two members; every row of a map is one class (4 pixels).
#   image 0: labels rows 0 0 0 1   member 0: 1 1 0 1 -> [[4, 8], [0, 4]]   member 1: 1 0 0 0 -> [[8, 4], [4, 0]]
#   image 1: labels rows 1 1 0 0   member 0: 0 1 1 1 -> [[0, 8], [4, 4]]   member 1: 1 1 1 0 -> [[4, 4], [0, 8]]
#   image 2: labels rows 1 0 0 0   member 0: 1 1 0 0 -> [[8, 4], [0, 4]]   member 1: 1 1 1 1 -> [[0, 12], [0, 4]]
WORST_LABELS = rows_to_maps([[0, 0, 0, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
WORST_PREDICTIONS = rows_to_maps([[[1, 1, 0, 1], [0, 1, 1, 1], [1, 1, 0, 0]],
                                  [[1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]])
# Greedy: image 0 alone gives mIoU 1/3 (member 0) or 1/4 (member 1) -> member 1 (strictly);
#   image 1 then: member 0 gives [[8, 12], [8, 4]] -> (8/28 + 4/24) / 2 = 19/84, member 1 gives 0.45 -> member 0;
#   image 2 then: member 0 gives [[16, 16], [8, 8]] -> 0.325, member 1 [[8, 24], [8, 8]] -> (8/40 + 8/40) / 2 = 0.2.
#   Greedy: (1, 0, 1), mIoU 1/5.
# Best: (0, 0, 1) -> [[4, 28], [4, 12]] -> (4/36 + 12/44) / 2 = 19/99 < 1/5; one move of image 0 finds it.


def test_worst_case_miou_local_search_finds_the_optimum_greedy_misses():
    confusions = torch.stack([confusion_matrix(p, WORST_LABELS, 2, per_image=True) for p in WORST_PREDICTIONS])
    assert confusions[1, 2].tolist() == [[0, 12], [0, 4]]
    greedy_choice, greedy = greedy_worst_case_miou(confusions, local_search=False)
    assert greedy_choice.tolist() == [1, 0, 1] and greedy == pytest.approx(1 / 5)
    choice, miou = greedy_worst_case_miou(confusions)
    optimum, best_choice = brute_force_worst_case(confusions)
    assert optimum == pytest.approx(19 / 99) and best_choice == (0, 0, 1)
    assert choice.tolist() == [0, 0, 1] and miou == pytest.approx(19 / 99)
    assert miou == pytest.approx(mean_iou(sum(confusions[c, i] for i, c in enumerate(choice.tolist()))))


def test_worst_case_miou_local_search_is_never_above_greedy_and_is_a_local_optimum():
    generator = torch.Generator().manual_seed(0)
    improved = 0
    for trial in range(40):
        a, n, k = 2 + trial % 2, 2 + trial % 3, 3
        labels = torch.randint(0, k, (n, 4, 4), generator=generator)
        labels[0, 0, 0] = 255  # an ignored pixel
        noise = torch.randint(0, k, (a, n, 4, 4), generator=generator)
        keep = torch.rand(a, n, 4, 4, generator=generator) < 0.5
        predictions = torch.where(keep, labels.clamp(max=k - 1).expand(a, n, 4, 4), noise)
        confusions = torch.stack([confusion_matrix(p, labels, k, per_image=True) for p in predictions])
        _, greedy = greedy_worst_case_miou(confusions, local_search=False)
        choice, miou = greedy_worst_case_miou(confusions)
        optimum, _ = brute_force_worst_case(confusions)
        assert optimum - 1e-12 <= miou <= greedy + 1e-12, trial
        improved += miou < greedy - 1e-12
        # no single image can move to another member and lower the mIoU
        for i in range(n):
            for m in range(a):
                moved = choice.clone()
                moved[i] = m
                assert mean_iou(sum(confusions[moved[j], j] for j in range(n))) >= miou - 1e-12
    assert improved > 0  # the search does something on these cases
