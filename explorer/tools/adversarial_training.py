"""Adversarial training's inner attack: the perturbed half of each training batch.

Adversarial training (Madry et al., ICLR 2018) replaces ``min_θ E L(f_θ(x), y)`` by
``min_θ E max_{||δ||∞ ≤ ε} L(f_θ(x + δ), y)``: at every step an attack approximates the inner
maximum and the network is updated on the attacked images.  [Gu2022] proposes SegPGD as the
inner attack for segmentation (its re-weighting of correct and wrong pixels finds stronger
examples than PGD in the same few iterations, so the same training cost buys more
robustness); following the DDC-AT set-up it builds on, each batch is half clean, half
adversarial, so the network keeps its clean accuracy.

The inner attack *is* the explorer's own attack (:func:`explorer.attacks.segpgd` or
:func:`explorer.attacks.pgd`, untargeted, random start, on the ground truth), run on the
network in eval mode (batch-norm statistics are not updated by attack iterations) — not a
second implementation.  Its ε is in pixel units of images in [0, 1], the unit of every
budget in the explorer.

Defaults (:data:`SEGPGD_AT`): ε = 8/255, step α = 2/255, 5 iterations, half of each batch —
the settings of [Gu2022]'s Cityscapes adversarial training as we read them (3 iterations are
used there for VOC).  A CPU budget may call for fewer iterations or a smaller ε (PIR-AT in
[Croce2024] trains at ε = 4/255); the model card records what was used.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import torch.nn.functional as F
from torch import Tensor, nn

from explorer.attacks import pgd, segpgd

#: inner attacks by name: the explorer's fixed-budget attacks with a CE-family objective
INNER_ATTACKS = {"segpgd": segpgd, "pgd": pgd}


@dataclass(frozen=True)
class AdversarialRecipe:
    """How each training batch is attacked.  ``eps_255`` and ``step_255`` are in 1/255 units
    (ε = ``eps_255 / 255`` in pixel units); ``fraction`` of each batch is attacked.

    ``trades_beta`` = 0: the attacked images replace their clean versions in the batch's
    cross-entropy (Madry-style AT, [Gu2022]'s SegPGD-AT).  ``trades_beta`` = β > 0: the batch
    keeps every clean image and its cross-entropy, and each attacked image adds β times the
    per-pixel KL divergence of its prediction from its clean one (:func:`trades_loss`)."""

    attack: str = "segpgd"
    eps_255: float = 8.0
    steps: int = 5
    step_255: float = 2.0
    fraction: float = 0.5
    trades_beta: float = 0.0

    def __post_init__(self) -> None:
        if self.attack not in INNER_ATTACKS:
            raise ValueError(f"inner attack must be one of {sorted(INNER_ATTACKS)}, got {self.attack!r}")
        if not 0 < self.eps_255 <= 64:
            raise ValueError(f"ε must be in (0, 64] /255, got {self.eps_255}")
        if not 0 < self.step_255 <= self.eps_255 * 2:
            raise ValueError(f"the step size must be in (0, 2ε], got {self.step_255}/255 for ε = {self.eps_255}/255")
        if not 1 <= self.steps <= 100:
            raise ValueError(f"the inner attack needs 1 to 100 iterations, got {self.steps}")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"the attacked fraction of a batch must be in (0, 1], got {self.fraction}")
        if not 0 <= self.trades_beta <= 100:
            raise ValueError(f"the TRADES weight β must be in [0, 100] (0: plain adversarial training), "
                             f"got {self.trades_beta}")

    @property
    def eps(self) -> float:
        return self.eps_255 / 255

    def attacked(self, batch_size: int) -> int:
        """How many images of a batch of ``batch_size`` are attacked (at least one)."""
        return max(1, round(self.fraction * batch_size))

    def describe(self) -> str:
        """One line for model cards and the app's menu: "SegPGD-AT, ε = 8/255 (5 × 2/255, half of each batch)"."""
        name = "SegPGD" if self.attack == "segpgd" else "PGD"
        share = "half of" if self.fraction == 0.5 else f"{self.fraction:.0%} of"
        method = f"-TRADES (β = {self.trades_beta:g})" if self.trades_beta else "-AT"
        return (f"{name}{method}, ε = {self.eps_255:g}/255 ({self.steps} × {self.step_255:g}/255, "
                f"{share} each batch)")

    def as_dict(self) -> Dict[str, object]:
        """The recipe for cards and checkpoints (``trades_beta`` only when used, so that the
        records of plain adversarial training read as they always have)."""
        fields = asdict(self)
        if not self.trades_beta:
            del fields["trades_beta"]
        return fields


#: [Gu2022]'s adversarial training settings (see the module docstring)
SEGPGD_AT = AdversarialRecipe()


class NormalizedNetwork(nn.Module):
    """``net(normalize(x))``: a training network seen as the explorer's models are, images in [0, 1]."""

    def __init__(self, net: nn.Module, normalize) -> None:
        super().__init__()
        self.net, self.normalize = net, normalize

    def forward(self, images: Tensor) -> Tensor:
        return self.net(self.normalize(images))


def adversarial_examples(net: nn.Module, normalize, images: Tensor, labels: Tensor,
                         recipe: AdversarialRecipe) -> Tuple[Tensor, float]:
    """The inner maximisation: ``recipe.attack`` on ``images`` (in [0, 1]) against their ground
    truth ``labels`` (255 = ignored), within ``||δ||∞ ≤ ε`` and the [0, 1] box.

    The network is put in eval mode for the attack and back in its previous mode after; the
    attack's random start draws from torch's global generator (seeded and checkpointed by the
    trainer, so a run stays reproducible).  The attack differentiates with respect to δ only
    (``torch.autograd.grad``), so no gradient is left on the weights.  Returns the attacked images (detached) and the
    attack's pixel success rate (the share of labelled pixels it flipped, for the progress bar).
    """
    was_training = net.training
    net.eval()
    try:
        result = INNER_ATTACKS[recipe.attack](
            NormalizedNetwork(net, normalize), images, labels, eps=recipe.eps, num_steps=recipe.steps,
            step_ratio=recipe.step_255 / recipe.eps_255, random_init=True)
    finally:
        net.train(was_training)
    return result.adv_images.detach(), float(result.apsr.mean())


def trades_loss(clean_logits: Tensor, adversarial_logits: Tensor, labels: Tensor, beta: float,
                weight: Optional[Tensor] = None) -> Tensor:
    """TRADES for segmentation ([Zhang2019], eq. 5, per pixel)::

        CE(f(x), y) + beta * mean over labelled pixels of KL(p(x) || p(x'))

    ``clean_logits`` (B, K, H, W) are the whole batch's clean logits and ``labels`` their truth
    (255 = ignored); ``adversarial_logits`` (A, K, H, W) are those of the first A images
    attacked.  The cross-entropy (with the class weights ``weight`` of clean training) keeps the clean
    accuracy in the objective explicitly; the KL term, through both predictions as in
    [Zhang2019], pulls the attacked prediction towards the clean one.  With ``beta = 0`` it is
    the clean cross-entropy.
    """
    ce = F.cross_entropy(clean_logits, labels, weight=weight, ignore_index=255)
    attacked = adversarial_logits.shape[0]
    kl = F.kl_div(adversarial_logits.log_softmax(1), clean_logits[:attacked].log_softmax(1), log_target=True,
                  reduction="none").sum(1)
    labelled = labels[:attacked] != 255
    return ce + beta * (kl * labelled).sum() / labelled.sum().clamp_min(1)
