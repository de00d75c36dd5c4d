"""Our fixed-budget attacks next to their authors' code: same model, images, radius, step and iterations.

The CosPGD authors publish their attack's operators as a package (``cospgd`` on PyPI:
``Attack.init_linf``, ``step_inf``, ``segpgd_scale``, ``cospgd_scale``) and drive them with a
plain loop in their segmentation example.  :func:`authors_loop` is that loop, written here
around the installed package: the loss, its scaling, the step and the projection are the
package's own code, so a change of ours that weakens PGD-CE, SegPGD or CosPGD shows up as a
gap in :func:`compare_with_authors`.

SEA (nmndeep/Robust-Segmentation) and TsallisPGD (aam-at/tsallis_pgd) are not published as
installable packages, so they are not run here; ``docs/attacks.md`` lists every difference
between their code and ours, read line by line.

Both sides are scored by the same code (:func:`score`): pixel accuracy pooled over every
labelled pixel, the mean of the per-image accuracies (the SEA authors' number), and mIoU of
the pooled confusion matrix.  Lower is a stronger attack.
"""
from __future__ import annotations

import time
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from explorer.attacks import ATTACKS
from explorer.errors import InputError
from explorer.metrics import confusion_matrix, labelled_mask, mean_iou, pixel_accuracy

COSPGD_INSTALL = "pip install --no-deps cospgd==0.1.3"
#: our attack -> the authors' per-pixel CE scaling it corresponds to in the cospgd package
AUTHORS_SCALING = {"pgd": "ce", "segpgd": "segpgd", "cospgd": "cospgd"}
#: attacks whose authors' code is not installable, and where the differences are listed instead
NOT_RUN = {"tsallis_pgd": "aam-at/tsallis_pgd is not on PyPI", "sea": "nmndeep/Robust-Segmentation is not on PyPI"}


def import_cospgd():
    """The ``cospgd`` package's ``Attack`` operators (InputError with the install line when missing)."""
    try:
        from cospgd import Attack
    except ImportError as error:
        raise InputError(f"the comparison with the authors' code needs cospgd: {COSPGD_INSTALL} ({error})") from None
    return Attack


def authors_loop(model, images: Tensor, labels: Tensor, *, scaling: str, eps: float, num_steps: int,
                 alpha: float, random_start: bool = True) -> Tensor:
    """The CosPGD authors' untargeted ℓ∞ loop on their package's operators; returns the last iterate.

    Per iteration ``t = 0 .. T-1``: per-pixel CE (ignored pixels contribute 0), scaled by
    ``segpgd_scale`` (λ_t = t / 2T) or ``cospgd_scale`` (detached cosine to the one-hot label)
    or not at all, averaged, one backward, then ``step_inf``: ``x' = clip(x + clip(x_t + α
    sign(∇) - x, -ε, ε), 0, 1)``.  Labels ≥ K (ignored) are mapped to K, which CE ignores
    and ``cospgd_scale`` clamps to K - 1 (its own convention)."""
    attack = import_cospgd()
    num_classes = model.num_classes
    labels = labels.clamp_max(num_classes)
    adv = attack.init_linf(images, eps) if random_start else images.clone()
    for t in range(num_steps):
        adv = adv.detach().requires_grad_(True)
        logits = model(adv)
        pixel_ce = F.cross_entropy(logits, labels, ignore_index=num_classes, reduction="none")
        if scaling == "segpgd":
            loss = attack.segpgd_scale(predictions=logits, labels=labels, loss=pixel_ce, iteration=t,
                                       iterations=num_steps)
        elif scaling == "cospgd":
            loss = attack.cospgd_scale(predictions=logits, labels=labels, loss=pixel_ce,
                                       num_classes=num_classes).mean()
        else:
            loss = pixel_ce.mean()
        (grad,) = torch.autograd.grad(loss, adv)
        adv = attack.step_inf(perturbed_image=adv, epsilon=eps, data_grad=grad, orig_image=images, alpha=alpha,
                              targeted=False)
    return adv.detach()


def score(model, adv: Tensor, labels: Tensor) -> Dict[str, float]:
    """Pooled pixel accuracy, mean per-image accuracy and mIoU of ``model`` on ``adv``."""
    num_classes = model.num_classes
    with torch.no_grad():
        prediction = model(adv).argmax(1)
    labelled = labelled_mask(labels, num_classes)
    correct = ((prediction == labels) & labelled).sum()
    return {"accuracy": float(correct / labelled.sum().clamp_min(1)),
            "mean_image_accuracy": float(pixel_accuracy(prediction, labels, num_classes).mean()),
            "miou": float(mean_iou(confusion_matrix(prediction, labels, num_classes)))}


def compare_with_authors(model, images: Tensor, labels: Tensor, *, attacks: Sequence[str], eps_255: Sequence[float],
                         num_steps: int, step_ratio: float, random_start: bool = True,
                         seed: int = 0) -> List[Dict[str, object]]:
    """One row per (attack, ε): ours and the authors' loop from the same seed, same α = step_ratio · ε.

    Ours returns its highest-APSR iterate (every iterate counts), the authors' loop its last
    iterate; both draw their random start from torch's generator seeded with ``seed``."""
    import_cospgd()
    rows = []
    for name in attacks:
        for eps in eps_255:
            radius = eps / 255
            torch.manual_seed(seed)
            start = time.perf_counter()
            ours = ATTACKS[name](model, images, labels, eps=radius, num_steps=num_steps, step_ratio=step_ratio,
                                 random_init=random_start).adv_images
            ours_s = time.perf_counter() - start
            torch.manual_seed(seed)
            start = time.perf_counter()
            theirs = authors_loop(model, images, labels, scaling=AUTHORS_SCALING[name], eps=radius,
                                  num_steps=num_steps, alpha=step_ratio * radius, random_start=random_start)
            theirs_s = time.perf_counter() - start
            ours_score, theirs_score = score(model, ours, labels), score(model, theirs, labels)
            row = {"attack": name, "eps_255": eps, "ours_s": ours_s, "authors_s": theirs_s}
            for key in ours_score:
                row[f"ours_{key}"], row[f"authors_{key}"] = ours_score[key], theirs_score[key]
            row["accuracy_gap"] = ours_score["accuracy"] - theirs_score["accuracy"]
            rows.append(row)
    return rows


COLUMNS = (("attack", "attack", ""), ("ε×255", "eps_255", "g"),
           ("accuracy ours", "ours_accuracy", ".4f"), ("accuracy authors'", "authors_accuracy", ".4f"),
           ("ours − authors'", "accuracy_gap", "+.4f"),
           ("per-image acc. ours", "ours_mean_image_accuracy", ".4f"),
           ("per-image acc. authors'", "authors_mean_image_accuracy", ".4f"),
           ("mIoU ours", "ours_miou", ".4f"), ("mIoU authors'", "authors_miou", ".4f"),
           ("s ours", "ours_s", ".1f"), ("s authors'", "authors_s", ".1f"))
