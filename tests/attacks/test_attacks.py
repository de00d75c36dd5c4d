"""ALMA prox and DAG on a linear segmenter whose minimal perturbation is known exactly,
plus the shared machinery every attack uses (masks, APSR, records, stop, registry)."""
import inspect
import math

import pytest
import torch
from linear_segmenter import make_problem, optimal_linf, targeted_pixel_budgets, untargeted_pixel_budgets

from explorer.attacks import ATTACKS, STOP, PixelState, alma_prox, dag, get_attack
from explorer.attacks.core import drop_largest
from explorer.errors import InputError
from explorer.metrics import apsr as metric_apsr

K = 4  # classes of the equidistant linear segmenter


def ignore_some(labels, counts, seed=0):
    """Set ``counts[i]`` random pixels of image i to 255 (ignored)."""
    g = torch.Generator().manual_seed(seed)
    labels = labels.clone()
    for i, c in enumerate(counts):
        flat = labels[i].view(-1)
        flat[torch.randperm(flat.numel(), generator=g)[:c]] = 255
    return labels


def third_best_targets(model, images):
    with torch.no_grad():
        return model(images).topk(3, dim=1).indices[:, 2]


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("targeted", [False, True])
def test_alma_prox_within_125_percent_of_optimum(batch, targeted):
    model, images, labels = make_problem(seed=batch, batch=batch, size=12)
    if targeted:
        labels = third_best_targets(model, images)
    labels = ignore_some(labels, [0, 9, 30][:batch])  # different |M| per image
    budgets = (targeted_pixel_budgets if targeted else untargeted_pixel_budgets)(model, images, labels)
    optimum = optimal_linf(budgets, labels, K)
    assert torch.isfinite(optimum).all()
    result = alma_prox(model, images, labels, targeted=targeted)
    assert result.success.all()
    assert (result.apsr >= 0.99).all()
    # no attack can beat the optimum; ALMA prox gets within 25 % of it
    assert (result.linf >= optimum * (1 - 1e-4)).all(), (result.linf, optimum)
    assert (result.linf <= 1.25 * optimum).all(), (result.linf / optimum)
    # the reported APSR is the returned images' APSR, computed independently
    with torch.no_grad():
        pred = model(result.adv_images).argmax(1)
    assert torch.allclose(metric_apsr(pred, labels, K, targeted=targeted), result.apsr)
    assert (result.num_forwards == 500).all() and (result.num_backwards == 500).all()


def test_alma_prox_lower_threshold_drops_exact_counts_in_a_batch():
    """ν = 0.9 leaves 10 % of pixels to adaptive masking, with different |M| per image."""
    model, images, labels = make_problem(seed=7, batch=3, size=12)
    labels = ignore_some(labels, [0, 17, 44], seed=1)
    optimum = optimal_linf(untargeted_pixel_budgets(model, images, labels), labels, K, adv_threshold=0.9)
    kept_fraction = []
    result = alma_prox(model, images, labels, adv_threshold=0.9,
                       callback=lambda r: kept_fraction.append(r.extras["kept"]))
    assert result.success.all()
    assert (result.linf >= optimum * (1 - 1e-4)).all()
    assert (result.linf <= 1.25 * optimum).all(), result.linf / optimum
    # at the last iteration exactly |M| - ceil(0.9 |M|) pixels are dropped in each image
    counts = (labels < K).flatten(1).sum(1)
    expected_kept = torch.tensor([math.ceil(0.9 * c - 1e-9) / c for c in counts.tolist()])
    assert torch.allclose(kept_fraction[-1], expected_kept)
    assert torch.allclose(kept_fraction[0], torch.ones(3))


def test_drop_largest_exact_count_with_ties_and_zero():
    constraints = torch.tensor([[[1.0, 1.0, 1.0, 0.5]], [[3.0, 2.0, 1.0, 0.0]]])
    masks = torch.tensor([[[True, True, True, True]], [[False, True, True, True]]])
    kept = drop_largest(constraints, masks, [2, 0])
    assert kept[0].sum() == 2 and kept[0, 0, 3]          # two of the three tied 1.0 dropped
    assert torch.equal(kept[1], masks[1])                # nothing dropped
    kept = drop_largest(constraints, masks, [0, 1])
    assert torch.equal(kept[1], torch.tensor([[False, False, True, True]]))  # 3.0 is unlabelled


def test_drop_largest_takes_its_counts_as_a_device_tensor_with_the_same_result():
    generator = torch.Generator().manual_seed(3)
    constraints = torch.randint(-3, 4, (4, 6, 7), generator=generator).float()  # many ties
    masks = torch.rand(4, 6, 7, generator=generator) > 0.2
    for counts in ([0, 0, 0, 0], [5, 0, 2, 9], [1, 1, 1, 1]):
        expected = drop_largest(constraints, masks, counts)
        got = drop_largest(constraints, masks, torch.tensor(counts), k_max=max(counts))
        assert torch.equal(got, expected)
        assert [int(n) for n in (masks & ~got).flatten(1).sum(1)] == counts
    with pytest.raises(ValueError, match="k_max"):
        drop_largest(constraints, masks, torch.tensor([1, 0, 0, 0]))


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("step_size", [0.003, 0.001])
def test_dag_succeeds_and_never_beats_the_optimum(targeted, step_size):
    model, images, labels = make_problem(seed=11, batch=3, size=12)
    if targeted:
        labels = third_best_targets(model, images)
    labels = ignore_some(labels, [3, 0, 20])
    budgets = (targeted_pixel_budgets if targeted else untargeted_pixel_budgets)(model, images, labels)
    optimum = optimal_linf(budgets, labels, K)
    result = dag(model, images, labels, targeted=targeted, step_size=step_size)
    assert result.success.all()
    assert (result.linf >= optimum * (1 - 1e-4)).all()
    # it stops at the first success: one forward per step taken plus the final check
    assert (result.num_forwards == result.num_backwards + 1).all()
    assert (result.num_forwards < 500).all()
    # DAG moves at most η per step in ℓ∞
    assert (result.linf <= step_size * result.num_backwards + 1e-6).all()


def test_ignored_pixels_never_change_apsr():
    model, images, labels = make_problem(seed=5, batch=2, size=12)
    labels = ignore_some(labels, [25, 40])
    other = labels.clone()
    other[other == 255] = 200  # another ignored value (>= K)
    a = alma_prox(model, images, labels, num_steps=60)
    b = alma_prox(model, images, other, num_steps=60)
    assert torch.equal(a.adv_images, b.adv_images) and torch.equal(a.apsr, b.apsr)
    # a model that is wrong everywhere on ignored pixels only: APSR of the clean image is still 0
    ignored = labels >= K

    class WrongOnIgnored(torch.nn.Module):
        def forward(self, x):
            z = model(x)
            shifted = torch.roll(z, 1, dims=1)
            return torch.where(ignored.unsqueeze(1), shifted, z)

    result = dag(WrongOnIgnored(), images, labels, num_steps=1)
    assert torch.equal(result.apsr, torch.zeros(2))


def test_callback_records_and_stop_request():
    model, images, labels = make_problem(seed=2, batch=2, size=12)
    labels = ignore_some(labels, [0, 10])
    seen = []

    def stop_at_five(record):
        seen.append(record)
        return STOP if record.iteration == 5 else None

    stop_at_five.calls = 0
    result = alma_prox(model, images, labels, callback=stop_at_five, record_maps=True)
    assert result.stopped and result.iterations == 6 and len(seen) == 6
    assert (result.num_forwards == 6).all()
    assert result.adv_images.shape == images.shape
    assert ((result.adv_images >= 0) & (result.adv_images <= 1)).all()
    assert torch.allclose(result.linf, (result.adv_images - images).flatten(1).abs().amax(1))
    last = seen[-1]
    assert set(last.extras) == {"mu", "rho", "w", "kept"}
    assert last.constraint_mask.shape == labels.shape and last.prediction.shape == labels.shape
    # ignored pixels are marked ignored, the others satisfied iff the prediction is adversarial
    assert torch.equal(last.constraint_mask == PixelState.IGNORED, labels >= K)
    labelled = labels < K
    fooled = (last.prediction != labels) & labelled
    assert torch.equal(last.constraint_mask == PixelState.SATISFIED, fooled)
    assert torch.allclose(last.apsr, metric_apsr(last.prediction, labels, K))
    # the recorded iterate is the one the prediction and the norm describe
    assert torch.equal(model(last.adv_images).argmax(1), last.prediction)
    assert torch.allclose(last.linf, (last.adv_images - images).flatten(1).abs().amax(1))
    # the trace keeps scalars only
    assert len(result.trace) == 6 and result.trace[-1].constraint_mask is None


def test_maps_not_recorded_unless_asked():
    model, images, labels = make_problem(seed=2, batch=1, size=8)
    records = []
    dag(model, images, labels, num_steps=3, callback=records.append)
    assert records and all(r.constraint_mask is None and r.prediction is None and r.adv_images is None
                           for r in records)


def test_same_inputs_same_result():
    model, images, labels = make_problem(seed=4, batch=2, size=10)
    a = alma_prox(model, images, labels, num_steps=80)
    b = alma_prox(model, images, labels, num_steps=80)
    assert torch.equal(a.adv_images, b.adv_images) and torch.equal(a.linf, b.linf)


def test_registry_schema_matches_functions_and_validates():
    assert {"alma_prox", "dag"} <= set(ATTACKS)
    for name, spec in ATTACKS.items():
        signature = inspect.signature(spec.function)
        for p in spec.params:
            assert signature.parameters[p.name].default == p.default
            assert p.help
        assert "num_steps" in spec.defaults()
    assert get_attack("dag").presets["DAG η = 0.001"] == {"step_size": 0.001}
    assert "lr_init" in str(get_attack("alma_prox"))
    model, images, labels = make_problem(seed=0, batch=1, size=8)
    with pytest.raises(InputError, match="num_steps"):
        alma_prox(model, images, labels, num_steps=0)
    with pytest.raises(InputError, match="penalty_grad"):
        alma_prox(model, images, labels, penalty_grad="wrong")
    with pytest.raises(InputError, match="no parameter"):
        dag(model, images, labels, learning_rate=0.1)
    with pytest.raises(InputError, match="unknown attack"):
        get_attack("nope")


def test_bad_inputs_raise_input_error():
    model, images, labels = make_problem(seed=0, batch=1, size=8)
    with pytest.raises(InputError, match="no labelled pixel"):
        alma_prox(model, images, torch.full_like(labels, 255), num_steps=2)
    with pytest.raises(InputError, match="shape"):
        alma_prox(model, images, labels[:, :4], num_steps=2)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        alma_prox(model, images * 3, labels, num_steps=2)
    bad = images.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        dag(model, bad, labels, num_steps=2)
    with pytest.raises(InputError, match="adv_threshold"):
        dag(model, images, labels, adv_threshold=1.5)
    with pytest.raises(InputError, match="logits"):
        dag(lambda x: model(x)[..., :4], images, labels, num_steps=2)


#: what ``result.params`` holds for each attack: its hyper-parameters, in this order
#: (the schema's order, as before the registry recorded them itself)
RECORDED_PARAMS = {
    "alma_prox": ["num_steps", "lr_init", "lr_final", "mu_init", "rho_init", "rho_growth", "check_steps",
                  "improvement_ratio", "alpha", "scale_rate", "scale_min", "logit_tolerance", "constraint_masking",
                  "mask_decay", "penalty_grad", "prox_tolerance", "prox_solver"],
    "dag": ["num_steps", "step_size"],
    "fmn": ["num_steps", "alpha_init", "gamma_init", "gamma_final"],
    "pdpgd": ["num_steps", "primal_lr", "dual_lr", "dual_ratio", "dual_ema", "prox_solver"],
    "ifgsm_bisection": ["search_steps", "eps_max", "num_steps"],
    "mifgsm_bisection": ["search_steps", "eps_max", "num_steps", "momentum"],
    "pgd_bisection": ["search_steps", "eps_max", "num_steps", "restarts", "loss", "step_ratio"],
    "pgd": ["eps", "num_steps", "step_ratio", "loss", "random_init", "restarts", "momentum"],
    "segpgd": ["eps", "num_steps", "step_ratio", "random_init"],
    "cospgd": ["eps", "num_steps", "step_ratio", "random_init"],
    "apgd": ["eps", "num_steps", "loss", "random_init", "radius_reduction", "track", "stage_start"],
    "tsallis_pgd": ["eps", "num_steps", "random_init", "track"],
    "sea": ["eps", "num_steps", "random_init", "members", "track"],
}
#: one call per attack with values other than the defaults (given as the caller would: an int
#: for a float parameter is recorded converted, as the attack received it)
NON_DEFAULT = {
    "alma_prox": {"num_steps": 3, "prox_solver": "histogram", "alpha": 0.5},
    "dag": {"num_steps": 2, "step_size": 0.01},
    "fmn": {"num_steps": 2, "gamma_final": 0.01},
    "pdpgd": {"num_steps": 2, "dual_lr": 1},
    "ifgsm_bisection": {"search_steps": 2, "num_steps": 2, "eps_max": 0.5},
    "mifgsm_bisection": {"search_steps": 2, "num_steps": 2, "momentum": 0.5},
    "pgd_bisection": {"search_steps": 2, "num_steps": 2, "loss": "dlr", "restarts": 2},
    "pgd": {"num_steps": 2, "eps": 0.01, "random_init": False},
    "segpgd": {"num_steps": 2, "step_ratio": 0.5},
    "cospgd": {"num_steps": 2, "eps": 1},
    "apgd": {"num_steps": 3, "radius_reduction": True, "loss": "js", "track": "objective", "stage_start": "last"},
    "tsallis_pgd": {"num_steps": 3, "random_init": False, "track": "objective"},
    "sea": {"num_steps": 2, "eps": 0.02, "members": "arxiv2023", "track": "objective"},
}


def recorded(result):
    """``result.params`` as (name, value, type) triples, in order."""
    return [(k, v, type(v)) for k, v in result.params.items()]


def test_every_attack_and_value_is_covered_by_the_params_tables():
    assert set(RECORDED_PARAMS) == set(ATTACKS) == set(NON_DEFAULT)


@pytest.mark.parametrize("name", sorted(RECORDED_PARAMS))
def test_result_params_are_the_call_hyperparameters(name):
    """The registry records every hyper-parameter of the call, defaults included, converted as
    the attack received them; an ensemble's members add their loss."""
    spec = ATTACKS[name]
    model, images, labels = make_problem(seed=0, batch=1, size=8)
    defaults = spec.defaults()
    first_record = lambda record: STOP  # noqa: E731 (one iteration suffices)
    # defaults
    result = spec(model, images, labels, callback=first_record)
    expected = [(k, defaults[k], type(defaults[k])) for k in RECORDED_PARAMS[name]]
    assert recorded(result) == expected
    # non-default values, converted by the schema (1 -> 1.0 for a float parameter)
    values = {**defaults, **{k: spec.param(k).validate(v) for k, v in NON_DEFAULT[name].items()}}
    result = spec(model, images, labels, **NON_DEFAULT[name])
    assert recorded(result) == [(k, values[k], type(values[k])) for k in RECORDED_PARAMS[name]]
    assert result.params is not values
    if name == "sea":
        assert list(result.members) == ["masked_ce", "segpgd", "js", "spherical"]
        for loss, member in result.members.items():
            assert recorded(member) == ([(k, values[k], type(values[k])) for k in RECORDED_PARAMS[name]]
                                        + [("loss", loss, str)])
    else:
        assert result.members is None


def test_params_recorded_per_call_in_concurrent_threads():
    """Recording the hyper-parameters shares no state between calls: concurrent runs each get theirs."""
    from concurrent.futures import ThreadPoolExecutor
    model, images, labels = make_problem(seed=1, batch=1, size=8)
    steps = [1, 2, 3, 4, 5, 6]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda t: dag(model, images, labels, num_steps=t, step_size=0.001 * t), steps))
    assert [r.params for r in results] == [{"num_steps": t, "step_size": 0.001 * t} for t in steps]


def test_shared_hyperparameters_are_the_registry_specs():
    """A hyper-parameter that several attacks take is one :class:`ParamSpec`, defined in the registry."""
    from explorer.attacks import registry
    shared = {"eps": registry.EPS, "random_init": registry.RANDOM_INIT, "prox_solver": registry.PROX_SOLVER_PARAM,
              "search_steps": registry.SEARCH_STEPS, "eps_max": registry.EPS_MAX, "track": registry.APGD_TRACK}
    for spec in ATTACKS.values():
        for p in spec.params:
            if p.name in shared:
                assert p is shared[p.name], (spec.name, p.name)
    assert ATTACKS["pgd"].param("loss") is ATTACKS["apgd"].param("loss") is registry.OBJECTIVE
    for name in ("pgd", "segpgd", "cospgd", "apgd", "tsallis_pgd", "sea"):
        assert ATTACKS[name].param("num_steps") == registry.steps_param(ATTACKS[name].defaults()["num_steps"])
