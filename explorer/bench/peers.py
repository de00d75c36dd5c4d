"""Our fixed-budget attacks next to their authors' code: same model, images, radius and iterations.

* **PGD-CE, SegPGD, CosPGD** — the CosPGD authors publish their attack's operators as a
  package (``cospgd`` on PyPI: ``Attack.init_linf``, ``step_inf``, ``segpgd_scale``,
  ``cospgd_scale``) and drive them with a plain loop in their segmentation example.
  :func:`cospgd_authors_loop` is that loop around the installed package: the loss scaling,
  the step and the projection are the package's own code.
* **TsallisPGD** — the authors' attack package (``segmentation_attacks`` in the repository
  aam-at/tsallis_pgd, not on PyPI) with their harness's settings for the adaptive Tsallis
  loss (:func:`tsallis_authors_attack`): APGD, three radius stages 2ε, 1.5ε, ε over
  ``int(0.3 n)``, ``int(0.3 n)`` and the rest of ``n`` iterations, q from −2 to 1 per stage,
  step-size control on CE, best iterate returned, random start from their own generator.

* **SEA** — the authors' ECCV-2024 code (repository nmndeep/Robust-Segmentation, a research
  repository, not a package): ``apgd_largereps`` from its ``semseg/attacker.py`` (which needs
  AutoAttack's ``autoattack.other_utils``), called as its ``tools/infer.py`` calls it — random
  start, CE tracking, early stop, one restart — once per member of their standard ensemble
  (class-balanced masked CE, masked CE, JS), then per image the member of lowest pixel accuracy
  (their ``worse_case_eval``) (:func:`sea_authors_attack`), next to our ``sea`` with the same
  members.  Each member is also a row of its own (``sea/<loss>``: the member's result on both
  sides).  The class weights of the balanced member are the same on both
  sides: the authors ship constant tables for VOC and ADE20K only, so both use ours
  (:func:`explorer.attacks.losses.class_balance_weights` of the attacked batch).

Both sides are scored by the same code (:func:`score`): pixel accuracy pooled over every
labelled pixel, the mean of the per-image accuracies (the SEA authors' number), and mIoU of
the pooled confusion matrix.  Lower is a stronger attack.
"""
from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from explorer.attacks import ATTACKS
from explorer.attacks.core import keep_better
from explorer.attacks.losses import class_balance_weights
from explorer.attacks.sea import SEA_MEMBERS
from explorer.bench.tables import prediction_accuracy_and_miou
from explorer.errors import InputError
from explorer.metrics import labelled_mask, pixel_accuracy

COSPGD_INSTALL = "pip install --no-deps cospgd==0.1.3"
TSALLIS_INSTALL = ("git clone https://github.com/aam-at/tsallis_pgd and put its "
                   "packages/segmentation_attacks/src on PYTHONPATH")
SEA_INSTALL = ("git clone https://github.com/nmndeep/Robust-Segmentation and "
               "https://github.com/fra31/auto-attack, and put Robust-Segmentation/semseg and the "
               "auto-attack folder on PYTHONPATH")
#: the label the TsallisPGD package ignores (its harness's ``ignore_index``)
TSALLIS_IGNORE = 255
#: the label SEA's code ignores (``apgd_train`` asserts ``ignore_index == -1``)
SEA_IGNORE = -1
#: our SEA member -> the authors' loss name (their ensemble, ``tools/infer.py``, is our ``members="eccv2024"``,
#: in the same order)
SEA_AUTHORS_LOSSES = {"balanced_masked_ce": "mask-ce-bal", "masked_ce": "mask-ce-avg", "js": "js-avg"}


def import_cospgd():
    """The ``cospgd`` package's ``Attack`` operators (InputError with the install line when missing)."""
    try:
        from cospgd import Attack
    except ImportError as error:
        raise InputError(f"the comparison with the CosPGD authors' code needs cospgd: {COSPGD_INSTALL} "
                         f"({error})") from None
    return Attack


def import_tsallis():
    """The TsallisPGD authors' ``AutoPGDAttack`` and ``SumGradientAggregator`` (InputError when missing)."""
    try:
        from segmentation_attacks.autopgd import AutoPGDAttack
        from segmentation_attacks.gradient_aggregator import SumGradientAggregator
    except ImportError as error:
        raise InputError(f"the comparison with the TsallisPGD authors' code needs their package: {TSALLIS_INSTALL} "
                         f"({error})") from None
    return AutoPGDAttack, SumGradientAggregator


def import_sea():
    """SEA's ``attacker`` module (``semseg/attacker.py``, InputError with where to get it when missing)."""
    try:
        import attacker
        attacker.apgd_largereps  # noqa: B018 -- another module named ``attacker`` is not SEA's
    except (ImportError, AttributeError) as error:
        raise InputError(f"the comparison with the SEA authors' code needs their attacker module: {SEA_INSTALL} "
                         f"({error})") from None
    return attacker


def cospgd_authors_loop(model, images: Tensor, labels: Tensor, *, scaling: str, eps: float, num_steps: int,
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


def tsallis_authors_attack(model, images: Tensor, labels: Tensor, *, eps: float, num_steps: int,
                           random_start: bool = True, seed: int = 0) -> Tensor:
    """TsallisPGD by its authors' package, as their harness configures it
    (``auto_multi_pgd_tsallis_ce_adaptive``: ``auto_multi_pgd_ce`` with the loss
    ``adaptive_tsallis_ce_loss_q_linear``); radii in their 0–255 units, images in [0, 1]."""
    auto_pgd, sum_aggregator = import_tsallis()
    first = int(0.3 * num_steps)
    eps_255 = eps * 255
    attack = auto_pgd(
        model, ord="Linf", iterations=[first, first, num_steps - 2 * first],
        epsilon=[2.0 * eps_255, 1.5 * eps_255, eps_255],
        loss={"type": "adaptive_tsallis_ce",
              "params": {"variant": "q_linear", "q_start": -2.0, "q_end": 1.0, "end_fraction": 0.0}},
        objective="ce", gradient_aggregator=sum_aggregator(), ignore_index=TSALLIS_IGNORE,
        random_start=random_start, return_best=True, max_pixel_value=255.0, clip_min=0.0, clip_max=255.0,
        seed=seed, verbose=False)
    ignored = ~labelled_mask(labels, model.num_classes)
    return attack.perturb(images, labels.masked_fill(ignored, TSALLIS_IGNORE)).detach()


def sea_member_authors(model, images: Tensor, labels: Tensor, *, loss: str, eps: float, num_steps: int,
                       random_start: bool = True) -> Tensor:
    """One SEA member by the authors' ``apgd_largereps`` (radius stages 2ε, 1.5ε, ε over
    ``int(0.3 n)``, ``int(0.3 n)`` and the rest), with ``tools/infer.py``'s settings; ``loss``
    is one of our member names (:data:`SEA_AUTHORS_LOSSES`).  Returns the best iterate of the
    last stage (lowest pixel accuracy).  Their progress lines go to a discarded buffer."""
    attacker = import_sea()
    ignored = ~labelled_mask(labels, model.num_classes)
    weights = class_balance_weights(labels, mask=~ignored, num_classes=model.num_classes)
    with contextlib.redirect_stdout(io.StringIO()):
        adv, _, _ = attacker.apgd_largereps(
            model, images, labels.long().masked_fill(ignored, SEA_IGNORE), weights, norm="Linf", eps=eps,
            n_iter=num_steps, n_restarts=1, use_rs=random_start, loss=SEA_AUTHORS_LOSSES[loss],
            track_loss="ce-avg", log_path=None, num_classes=model.num_classes, early_stop=True)
    return adv.detach()


def sea_authors_attack(model, images: Tensor, labels: Tensor, *, eps: float, num_steps: int,
                       random_start: bool = True) -> Dict[str, Tensor]:
    """SEA by its authors' code: their three members (:func:`sea_member_authors`, in their
    order), then per image the member result of lowest pixel accuracy (ties: the earlier).
    Returns ``{"sea": ensemble, "sea/<loss>": member, ...}``."""
    rows: Dict[str, Tensor] = {}
    best, best_error = None, None
    for loss in SEA_MEMBERS["eccv2024"]:
        adv = rows[f"sea/{loss}"] = sea_member_authors(model, images, labels, loss=loss, eps=eps,
                                                       num_steps=num_steps, random_start=random_start)
        with torch.no_grad():
            error = -pixel_accuracy(model(adv).argmax(1), labels, model.num_classes)
        if best is None:
            best, best_error = adv, error
        else:
            best, best_error, _ = keep_better(best, best_error, adv, error)
    return {"sea": best, **rows}


@dataclass(frozen=True)
class Peer:
    """One of our attacks and its authors' code, run with the same radius and iterations.

    ``authors(model, images, labels, eps, num_steps, step_ratio, random_start, seed)`` returns
    the authors' adversarial images, or for an ensemble a dict of rows (``{"sea": ensemble,
    "sea/<loss>": member}``, the names of our result's members); ``ours_params`` are fixed
    parameters of our side (SEA: the authors' members)."""

    attack: str
    default_steps: int
    check: Callable[[], object]
    authors: Callable[..., Tensor | Dict[str, Tensor]]
    source: str
    ours_params: Mapping[str, object] = field(default_factory=dict)


def _cospgd_peer(attack: str, scaling: str) -> Peer:
    def authors(model, images, labels, eps, num_steps, step_ratio, random_start, seed):
        torch.manual_seed(seed)
        return cospgd_authors_loop(model, images, labels, scaling=scaling, eps=eps, num_steps=num_steps,
                                   alpha=step_ratio * eps, random_start=random_start)
    return Peer(attack, 20, import_cospgd, authors, "cospgd")


def _tsallis_authors(model, images, labels, eps, num_steps, step_ratio, random_start, seed):
    return tsallis_authors_attack(model, images, labels, eps=eps, num_steps=num_steps, random_start=random_start,
                                  seed=seed)


def _sea_authors(model, images, labels, eps, num_steps, step_ratio, random_start, seed):
    torch.manual_seed(seed)
    return sea_authors_attack(model, images, labels, eps=eps, num_steps=num_steps, random_start=random_start)


#: our attack -> its peer; the PGD family at the papers' 20 steps, TsallisPGD at its harness's 300,
#: SEA with the authors' three members on both sides, 300 iterations each (one row per member too)
PEERS: Dict[str, Peer] = {
    "pgd": _cospgd_peer("pgd", "ce"),
    "segpgd": _cospgd_peer("segpgd", "segpgd"),
    "cospgd": _cospgd_peer("cospgd", "cospgd"),
    "tsallis_pgd": Peer("tsallis_pgd", 300, import_tsallis, _tsallis_authors, "segmentation_attacks"),
    "sea": Peer("sea", 300, import_sea, _sea_authors, "Robust-Segmentation", ours_params={"members": "eccv2024"}),
}


def score(model, adv: Tensor, labels: Tensor) -> Dict[str, float]:
    """Pooled pixel accuracy, mean per-image accuracy and mIoU of ``model`` on ``adv``."""
    num_classes = model.num_classes
    with torch.no_grad():
        prediction = model(adv).argmax(1)
    return {**prediction_accuracy_and_miou(prediction, labels, num_classes),
            "mean_image_accuracy": float(pixel_accuracy(prediction, labels, num_classes).mean())}


def ours_params(peer: Peer, num_steps: int, step_ratio: float) -> Dict[str, object]:
    """Our side's parameters for ``peer`` (before the radius): iterations, α where the attack
    has one, and the peer's fixed choices (SEA's members)."""
    params = {"num_steps": num_steps, **peer.ours_params}
    if "step_ratio" in ATTACKS[peer.attack].defaults():
        params["step_ratio"] = step_ratio
    return params


def _ours(peer: Peer, model, images, labels, eps, num_steps, step_ratio, random_start, seed) -> Dict[str, Tensor]:
    """Our adversarial images by row: the attack's result, then each ensemble member's."""
    params = {**ours_params(peer, num_steps, step_ratio), "eps": eps, "random_init": random_start}
    torch.manual_seed(seed)
    result = ATTACKS[peer.attack](model, images, labels, **params)
    members = result.members or {}
    return {peer.attack: result.adv_images, **{f"{peer.attack}/{loss}": r.adv_images for loss, r in members.items()}}


def compare_with_authors(model, images: Tensor, labels: Tensor, *, attacks: Sequence[str], eps_255: Sequence[float],
                         num_steps: int | None = None, step_ratio: float = 0.25, random_start: bool = True,
                         seed: int = 0) -> List[Dict[str, object]]:
    """One row per (attack, ε): ours and the authors' code from the same seed and iterations
    (``num_steps``, else each peer's default), the PGD family with the same α = step_ratio · ε;
    for SEA one more row per member (``sea/<loss>``), its times left empty (the ensemble's
    row times the whole ensemble).

    Ours returns its highest-APSR iterate (every iterate counts).  The CosPGD loop returns its
    last iterate and draws its random start from torch's generator, seeded like ours (the
    same draw); TsallisPGD returns its best iterate and draws from its own generator; SEA's
    members return the best iterate of their last stage and draw from torch's generator
    (``rand_like``, ours ``uniform_``: the same seed, different draws)."""
    for name in attacks:
        PEERS[name].check()
    rows = []
    for name in attacks:
        peer = PEERS[name]
        steps = num_steps or peer.default_steps
        for eps in eps_255:
            radius = eps / 255
            start = time.perf_counter()
            ours = _ours(peer, model, images, labels, radius, steps, step_ratio, random_start, seed)
            ours_s = time.perf_counter() - start
            start = time.perf_counter()
            theirs = peer.authors(model, images, labels, radius, steps, step_ratio, random_start, seed)
            theirs_s = time.perf_counter() - start
            if isinstance(theirs, Tensor):
                theirs = {name: theirs}
            if set(theirs) != set(ours):
                raise RuntimeError(f"{name}: our rows {sorted(ours)} and the authors' {sorted(theirs)} differ")
            for row_name, adv in ours.items():
                timed = row_name == name
                rows.append(_row(model, images, labels, row_name, eps, steps, adv, theirs[row_name],
                                 ours_s if timed else None, theirs_s if timed else None))
    return rows


def _row(model, images, labels, attack, eps, steps, ours: Tensor, theirs: Tensor, ours_s, theirs_s) -> Dict:
    ours_score, theirs_score = score(model, ours, labels), score(model, theirs, labels)
    row = {"attack": attack, "eps_255": eps, "steps": steps, "ours_s": ours_s, "authors_s": theirs_s,
           "authors_linf_255": float((theirs - images).abs().amax()) * 255}
    for key in ours_score:
        row[f"ours_{key}"], row[f"authors_{key}"] = ours_score[key], theirs_score[key]
    row["accuracy_gap"] = ours_score["accuracy"] - theirs_score["accuracy"]
    return row


COLUMNS = (("attack", "attack", ""), ("ε×255", "eps_255", "g"), ("iterations", "steps", "d"),
           ("accuracy ours", "ours_accuracy", ".4f"), ("accuracy authors'", "authors_accuracy", ".4f"),
           ("ours − authors'", "accuracy_gap", "+.4f"),
           ("per-image acc. ours", "ours_mean_image_accuracy", ".4f"),
           ("per-image acc. authors'", "authors_mean_image_accuracy", ".4f"),
           ("mIoU ours", "ours_miou", ".4f"), ("mIoU authors'", "authors_miou", ".4f"),
           ("s ours", "ours_s", ".1f"), ("s authors'", "authors_s", ".1f"))
