"""A tiny linear segmenter whose minimal ℓ∞ adversarial perturbation is known exactly.

The model is a 1x1 convolution: every pixel's logits ``z = W x_p + b`` depend on that
pixel's three colour values only, so pixels can be attacked independently.

* Untargeted, pixel p with label y is fooled at budget ε iff some class j can overtake
  y: ``max_{||d||_inf <= ε} (W_j - W_y) d >= z_y - z_j``, i.e.
  ``ε_p = min_j (z_y - z_j) / ||W_y - W_j||_1`` (box constraints inactive: the images
  stay in [0.3, 0.7] and every ε_p used is < 0.3).
* Targeted, pixel p with target t needs ``z_t >= z_j`` for all j at once: a small
  linear programme, ``min ε s.t. |d_c| <= ε, (W_j - W_t)(x + d) + b_j - b_t <= 0``,
  solved with scipy's HiGHS.

Because pixels are independent, the minimal perturbation with APSR >= ν is the
``ceil(ν |M|)``-th smallest ``ε_p`` over the labelled pixels.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import linprog
from torch import nn


class LinearSegmenter(nn.Module):
    """1x1-convolution segmenter: logits (N, K, H, W) = W x + b per pixel."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.conv = nn.Conv2d(3, weight.shape[0], kernel_size=1)
        with torch.no_grad():
            self.conv.weight.copy_(weight.view(-1, 3, 1, 1))
            self.conv.bias.copy_(bias)

    def forward(self, x):
        return self.conv(x)


#: Class weights whose pairwise ℓ1 distances are all equal (4): the class that overtakes
#: the label first in logit space is then also the nearest in ℓ∞ input space.
EQUIDISTANT_WEIGHTS = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])


def make_problem(seed: int = 0, batch: int = 1, size: int = 12, equidistant: bool = True):
    """A linear model and images whose clean predictions have small, varied margins.

    With ``equidistant`` the K = 4 class weights are :data:`EQUIDISTANT_WEIGHTS` with
    random channel signs and class order; otherwise K = 5 Gaussian weights, for which
    the runner-up class in logit space is often not the nearest one in input space
    (any attack descending the difference of logits then overshoots the optimum).
    """
    g = torch.Generator().manual_seed(seed)
    if equidistant:
        signs = torch.randint(0, 2, (3,), generator=g) * 2 - 1
        order = torch.randperm(4, generator=g)
        weight = (EQUIDISTANT_WEIGHTS * signs)[order]
    else:
        weight = torch.randn(5, 3, generator=g)
    num_classes = weight.shape[0]
    # biases put the decision boundaries near the middle of the colour cube
    bias = -(weight @ torch.full((3,), 0.5)) + 0.05 * torch.randn(num_classes, generator=g)
    model = LinearSegmenter(weight, bias).eval()
    images = 0.4 + 0.2 * torch.rand(batch, 3, size, size, generator=g)
    with torch.no_grad():
        labels = model(images).argmax(1)
    return model, images, labels


def untargeted_pixel_budgets(model: LinearSegmenter, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ε_p per pixel (N, H, W) for the untargeted attack (0 where already misclassified)."""
    weight = model.conv.weight.detach().view(-1, 3).double()
    with torch.no_grad():
        z = model(images).double()
    k = z.shape[1]
    y = labels.clamp(max=k - 1)
    z_y = z.gather(1, y.unsqueeze(1))
    w_y = weight[y].permute(0, 3, 1, 2)  # (N, 3, H, W)
    dist = (w_y.unsqueeze(1) - weight.view(1, k, 3, 1, 1)).abs().sum(2)  # (N, K, H, W)
    ratio = (z_y - z).clamp(min=0) / dist
    ratio = ratio.scatter(1, y.unsqueeze(1), float("inf"))
    return ratio.amin(1)


def targeted_pixel_budgets(model: LinearSegmenter, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """ε_p per pixel (N, H, W) for a targeted attack, by linear programming (inf if infeasible)."""
    weight = model.conv.weight.detach().view(-1, 3).double().numpy()
    bias = model.conv.bias.detach().double().numpy()
    n, _, h, w = images.shape
    out = np.full((n, h, w), np.inf)
    x_all = images.double().numpy()
    k = weight.shape[0]
    for b in range(n):
        for i in range(h):
            for j in range(w):
                t = int(targets[b, i, j])
                if t >= k:
                    continue
                x = x_all[b, :, i, j]
                a_ub, b_ub = [], []
                for c in range(k):
                    if c == t:
                        continue
                    # (W_c - W_t) d <= -( (W_c - W_t) x + b_c - b_t )
                    a_ub.append(list(weight[c] - weight[t]) + [0.0])
                    b_ub.append(-((weight[c] - weight[t]) @ x + bias[c] - bias[t]))
                for c in range(3):
                    row = [0.0, 0.0, 0.0, -1.0]
                    row[c] = 1.0
                    a_ub.append(row)
                    b_ub.append(0.0)
                    row = [0.0, 0.0, 0.0, -1.0]
                    row[c] = -1.0
                    a_ub.append(row)
                    b_ub.append(0.0)
                bounds = [(-x[c], 1 - x[c]) for c in range(3)] + [(0, None)]
                res = linprog(c=[0, 0, 0, 1], A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
                if res.status == 0:
                    out[b, i, j] = res.x[3]
    return torch.from_numpy(out)


def optimal_linf(pixel_budgets: torch.Tensor, labels: torch.Tensor, num_classes: int,
                 adv_threshold: float = 0.99) -> torch.Tensor:
    """Minimal ℓ∞ norm reaching APSR >= ν per image: the ceil(ν|M|)-th smallest ε_p."""
    out = []
    for budgets, lab in zip(pixel_budgets, labels):
        values = budgets[lab < num_classes].flatten().sort().values
        needed = math.ceil(adv_threshold * len(values) - 1e-9)
        out.append(values[needed - 1])
    return torch.stack(out).float()
