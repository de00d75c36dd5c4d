"""Every registered attack against hostile callers and broken models.

Four promises, each checked for every attack of :data:`explorer.attacks.ATTACKS`:

1. records are snapshots: the trace holds, iteration by iteration, exactly what the
   callback saw at that iteration, and a callback that modifies its record cannot change it;
2. SEA's trace is the ensemble's (attack ``"sea"``, iterations 0 .. AT-1 for its A members,
   member index in the extras), the same with and without ``record_maps``;
3. a broken model (NaN or infinite logits, an output cut from autograd, a class count
   that changes) is refused with an :class:`InputError` naming it, never attacked;
4. arguments are validated before the model runs, with one line a person can act on.

Everything runs on the CPU with the linear segmenter of ``linear_segmenter.py`` and a
handful of iterations.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from linear_segmenter import make_problem

from explorer.attacks import ATTACKS, STOP, AttackRun, IterationRecord
from explorer.attacks.registry import ADV_THRESHOLD, COMMON_KEYWORDS, ParamSpec
from explorer.attacks.sea import SEA_LOSSES
from explorer.errors import InputError

NAMES = list(ATTACKS)
#: a few iterations of each attack (seconds in all)
FAST = {
    "alma_prox": dict(num_steps=8), "dag": dict(num_steps=8, step_size=0.01), "fmn": dict(num_steps=8),
    "pdpgd": dict(num_steps=8),
    "ifgsm_bisection": dict(search_steps=3, num_steps=3), "mifgsm_bisection": dict(search_steps=3, num_steps=3),
    "pgd_bisection": dict(search_steps=3, num_steps=2, restarts=2),
    "pgd": dict(num_steps=4, restarts=2), "segpgd": dict(num_steps=6), "cospgd": dict(num_steps=6),
    "apgd": dict(num_steps=8), "tsallis_pgd": dict(num_steps=8), "sea": dict(num_steps=4),
}
SEA_STEPS = FAST["sea"]["num_steps"]
TENSOR_FIELDS = ("apsr", "linf", "best_linf", "best_apsr", "success", "loss", "step_size")
MAP_FIELDS = ("constraint_mask", "prediction", "adv_images")


def test_every_registered_attack_has_a_budget_here():
    assert set(FAST) == set(ATTACKS)


def problem(seed: int = 3):
    """Two 8×8 images, the second with some ignored pixels; fixed-budget ε large enough that
    success flips during the few iterations (so a record showing the final value is caught)."""
    model, images, labels = make_problem(seed=seed, batch=2, size=8)
    labels = labels.clone()
    labels[1].view(-1)[:7] = 255
    return model, images, labels


def run_attack(name, model, images, labels, seed=0, **kwargs):
    torch.manual_seed(seed)
    return ATTACKS[name](model, images, labels, **{**FAST[name], **kwargs})


def snapshot(record: IterationRecord) -> IterationRecord:
    """A deep copy of the record as it is now (tensors cloned)."""
    return copy.deepcopy(record)


def assert_same_record(stored: IterationRecord, seen: IterationRecord, where: str):
    assert stored is not seen
    assert (stored.attack, stored.iteration, stored.num_steps) == (seen.attack, seen.iteration, seen.num_steps), where
    for name in TENSOR_FIELDS:
        a, b = getattr(stored, name), getattr(seen, name)
        assert a.dtype == b.dtype and torch.equal(a, b), (where, name, a, b)
    assert set(stored.extras) == set(seen.extras), where
    for key in seen.extras:
        assert torch.equal(stored.extras[key], seen.extras[key]), (where, key)
    for name in MAP_FIELDS:  # the trace keeps scalars only
        assert getattr(stored, name) is None, (where, name)


# ----------------------------------------------------------------------------- 1. records are snapshots

#: settings under which every attack's success flips during its few iterations (ν = 0.5), so a
#: stored record that aliases the running state (and shows the final value) is caught
FLIPPING = {"alma_prox": dict(lr_init=0.01, lr_final=0.001), "pdpgd": dict(primal_lr=0.5),
            "pgd": dict(eps=0.05, step_ratio=0.25), "ifgsm_bisection": dict(eps_max=0.04),
            "mifgsm_bisection": dict(eps_max=0.04), "pgd_bisection": dict(eps_max=0.04, step_ratio=0.5)}


def flipping(name):
    return dict(adv_threshold=0.5, **(FLIPPING.get(name) or ({"eps": 0.05} if ATTACKS[name].kind == "fixed-budget"
                                                             else {})))


@pytest.mark.parametrize("record_maps", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_the_trace_holds_what_the_callback_saw_at_each_iteration(name, record_maps):
    model, images, labels = problem()
    seen = []
    result = run_attack(name, model, images, labels, callback=lambda r: seen.append(snapshot(r)),
                        record_maps=record_maps, **flipping(name))
    assert len(result.trace) == len(seen) >= 3
    for i, (stored, at_the_time) in enumerate(zip(result.trace, seen)):
        assert_same_record(stored, at_the_time, f"{name} record {i}")
        if record_maps:
            assert at_the_time.prediction is not None and at_the_time.constraint_mask is not None
    # the comparison has teeth: success flips during the run (a trace aliasing the run's
    # success flags would show True at every iteration), and the per-image values move
    assert not seen[0].success.all() and seen[-1].success.any(), name
    assert not all(torch.equal(seen[0].apsr, r.apsr) for r in seen), name
    assert result.iterations == len(seen)


@pytest.mark.parametrize("record_maps", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_a_callback_that_modifies_its_record_cannot_change_the_trace(name, record_maps):
    model, images, labels = problem()
    seen = []

    def vandal(record):
        seen.append(snapshot(record))
        for f in TENSOR_FIELDS:
            getattr(record, f).fill_(7)
        for value in record.extras.values():
            value.fill_(7)
        record.extras["injected"] = torch.zeros(2)
        record.attack, record.iteration, record.num_steps = "vandal", -1, -1
        for f in MAP_FIELDS:
            if getattr(record, f) is not None:
                getattr(record, f).zero_()

    result = run_attack(name, model, images, labels, callback=vandal, record_maps=record_maps, **flipping(name))
    assert len(result.trace) == len(seen) >= 2
    for i, (stored, at_the_time) in enumerate(zip(result.trace, seen)):
        assert_same_record(stored, at_the_time, f"{name} record {i}")
    # nor the attack itself: the same run without the vandal returns the same images
    clean = run_attack(name, model, images, labels, callback=lambda r: None, record_maps=record_maps,
                       **flipping(name))
    assert torch.equal(clean.adv_images, result.adv_images)


@pytest.mark.parametrize("name", NAMES)
def test_records_share_no_storage_with_each_other_or_the_trace(name):
    model, images, labels = problem()
    handed = []
    result = run_attack(name, model, images, labels, callback=handed.append, record_maps=True, **flipping(name))
    assert len(handed) == len(result.trace) >= 2
    for given, stored in zip(handed, result.trace):
        assert given is not stored and given.extras is not stored.extras
    tensors = [t for r in handed + result.trace
               for t in [getattr(r, f) for f in TENSOR_FIELDS + MAP_FIELDS] + list(r.extras.values())
               if t is not None]
    pointers = [t.data_ptr() for t in tensors if t.numel()]
    assert len(pointers) == len(set(pointers)), name


# ----------------------------------------------------------------------------- 2. SEA's trace

def sea_trace(record_maps, stop_at=None):
    model, images, labels = problem()
    seen = []

    def callback(record):
        seen.append(snapshot(record))
        return STOP if record.iteration == stop_at else None

    result = run_attack("sea", model, images, labels, callback=callback, record_maps=record_maps)
    return result, seen


@pytest.mark.parametrize("record_maps", [False, True])
def test_sea_trace_is_the_ensembles_numbered_across_members(record_maps):
    result, seen = sea_trace(record_maps)
    total = len(SEA_LOSSES) * SEA_STEPS
    assert result.iterations == total
    for records in (result.trace, seen):
        assert [r.iteration for r in records] == list(range(total))
        assert {r.attack for r in records} == {"sea"}
        assert {r.num_steps for r in records} == {total}
        assert [int(r.extras["member"][0]) for r in records] == [i // SEA_STEPS for i in range(total)]
    for stored, at_the_time in zip(result.trace, seen):
        assert_same_record(stored, at_the_time, "sea")
    # the members' own traces keep their own names and numbers, without the ensemble's extra
    for index, loss in enumerate(SEA_LOSSES):
        member = result.members[loss].trace
        assert [r.iteration for r in member] == list(range(SEA_STEPS))
        assert {r.attack for r in member} == {f"sea/{loss}"} and {r.num_steps for r in member} == {SEA_STEPS}
        assert all("member" not in r.extras for r in member)
        for r, ensemble in zip(member, result.trace[index * SEA_STEPS:]):
            assert torch.equal(r.apsr, ensemble.apsr) and torch.equal(r.loss, ensemble.loss)


def test_sea_trace_is_the_same_with_and_without_maps():
    with_maps, _ = sea_trace(True)
    without, _ = sea_trace(False)
    assert len(with_maps.trace) == len(without.trace)
    for a, b in zip(with_maps.trace, without.trace):
        assert_same_record(a, b, "sea maps vs no maps")


def test_sea_stopped_in_a_later_member_keeps_a_contiguous_trace():
    result, seen = sea_trace(False, stop_at=SEA_STEPS + 1)
    assert result.stopped and result.iterations == SEA_STEPS + 2
    assert [r.iteration for r in result.trace] == list(range(SEA_STEPS + 2))
    assert list(result.members) == list(SEA_LOSSES[:2])


# ----------------------------------------------------------------------------- 3. broken models

class Broken(torch.nn.Module):
    """The linear segmenter, broken from forward call ``start`` on (1-based) in one of several ways."""

    def __init__(self, inner, how: str, start: int = 1):
        super().__init__()
        self.inner, self.how, self.start, self.calls = inner, how, start, 0

    def forward(self, x):
        self.calls += 1
        if self.calls < self.start:
            return self.inner(x)
        if self.how == "nan":
            return self.inner(x) * float("nan")
        if self.how == "inf":
            return self.inner(x) + float("inf")
        if self.how == "one_nan":  # a single NaN logit in the whole batch
            z = self.inner(x)
            return z + F.pad(torch.full((1, 1, 1, 1), float("nan")), (0, z.shape[3] - 1, 0, z.shape[2] - 1, 0,
                                                                      z.shape[1] - 1, 0, z.shape[0] - 1))
        if self.how == "detach_output":
            return self.inner(x).detach()
        if self.how == "detach_input":
            return self.inner(x.detach())
        if self.how == "no_grad":
            with torch.no_grad():
                return self.inner(x)
        if self.how == "more_classes":
            z = self.inner(x)
            return torch.cat([z, z[:, :1] - 1], 1)
        raise AssertionError(self.how)


class Counting(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def total_calls(name, **kwargs):
    """Forward calls of an unbroken run (its last one is where a 'last' breakage starts)."""
    model, images, labels = problem()
    counting = Counting(model)
    run_attack(name, counting, images, labels, **kwargs)
    return counting.calls


def start_call(name, when, **kwargs):
    return {"first": 1, "third": 3}.get(when) or total_calls(name, **kwargs)


@pytest.fixture(params=["eager", "deferred"])
def finite_check_mode(request, monkeypatch):
    """The finite check as on the CPU (immediate) and as on an accelerator (deferred to the
    loop's synchronisation points), both exercised here on the CPU."""
    monkeypatch.setattr(AttackRun, "defer_finite_check", request.param == "deferred")
    return request.param


@pytest.mark.parametrize("when", ["first", "third", "last"])
@pytest.mark.parametrize("how", ["nan", "inf", "one_nan"])
@pytest.mark.parametrize("name", NAMES)
def test_non_finite_logits_are_refused_naming_the_model(name, how, when, finite_check_mode):
    model, images, labels = problem()
    broken = Broken(model, how, start_call(name, when))
    seen = []
    with pytest.raises(InputError, match=r"model Broken returned NaN or infinite logits") as error:
        run_attack(name, broken, images, labels, callback=seen.append)
    assert broken.calls >= broken.start
    if finite_check_mode == "eager":
        expected = {"nan": "(NaN)", "inf": "(+inf)", "one_nan": "(NaN)"}[how]
        assert expected in str(error.value)
    # no record computed from the broken logits reached the callback
    assert len(seen) <= broken.start - 1


@pytest.mark.parametrize("name", NAMES)
def test_non_finite_logits_are_refused_without_a_callback_and_with_maps(name, finite_check_mode):
    model, images, labels = problem()
    with pytest.raises(InputError, match="NaN or infinite"):
        run_attack(name, Broken(model, "nan", 3), images, labels)
    with pytest.raises(InputError, match="NaN or infinite"):
        run_attack(name, Broken(model, "inf", 2), images, labels, callback=lambda r: None, record_maps=True)


def test_a_model_named_by_its_name_attribute():
    model, images, labels = problem()
    broken = Broken(model, "nan")
    broken.name = "my-segformer"
    with pytest.raises(InputError, match="model my-segformer returned NaN"):
        run_attack("dag", broken, images, labels)


@pytest.mark.parametrize("how", ["detach_output", "detach_input", "no_grad"])
@pytest.mark.parametrize("name", NAMES)
def test_a_model_cut_from_autograd_is_refused_naming_it(name, how):
    model, images, labels = problem()
    broken = Broken(model, how)
    expected = "depend on its input" if how == "detach_input" else "require grad"
    with pytest.raises(InputError, match=rf"model Broken returned logits that do not {expected}"):
        run_attack(name, broken, images, labels)
    assert broken.calls == 1  # refused at the first forward, not after a run


@pytest.mark.parametrize("when", ["third", "last"])
@pytest.mark.parametrize("name", NAMES)
def test_a_model_whose_class_count_changes_is_refused(name, when):
    """'last' falls in a later bisection step or ensemble member, whose run is not the first."""
    model, images, labels = problem()
    broken = Broken(model, "more_classes", start_call(name, when))
    with pytest.raises(InputError, match=r"model Broken returned logits for K = 5 classes after K = 4"):
        run_attack(name, broken, images, labels)
    assert broken.calls == broken.start


def test_bisection_pictures_forward_is_checked_too():
    """With record_maps the bisection runs one more forward per step, for the pictures."""
    model, images, labels = problem()
    calls = total_calls("ifgsm_bisection", callback=lambda r: None, record_maps=True)
    with pytest.raises(InputError, match="NaN or infinite"):
        run_attack("ifgsm_bisection", Broken(model, "nan", calls), images, labels, callback=lambda r: None,
                   record_maps=True)


# ----------------------------------------------------------------------------- 4. arguments

NUMBER_PARAMS = [(name, p.name) for name, spec in ATTACKS.items() for p in spec.params if p.type in (int, float)]


class Untouchable(torch.nn.Module):
    """A model that fails the test if an attack calls it: validation must come first."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        raise AssertionError("the model ran before the arguments were validated")


@pytest.mark.parametrize("value", [True, False])
@pytest.mark.parametrize("name,param", NUMBER_PARAMS)
def test_booleans_are_not_numbers(name, param, value):
    model, images, labels = problem()
    with pytest.raises(InputError, match=rf"{param} must be a number, not true/false"):
        ATTACKS[name](Untouchable(model), images, labels, **{param: value})


@pytest.mark.parametrize("keyword,value", [("adv_threshold", True), ("adv_threshold", False),
                                           ("adv_threshold", "high"), ("adv_threshold", None),
                                           ("adv_threshold", 10 ** 400), ("adv_threshold", 0),
                                           ("targeted", 1), ("targeted", 0), ("targeted", "no"),
                                           ("targeted", "False"), ("targeted", None), ("targeted", torch.tensor(True)),
                                           ("record_maps", 1), ("record_maps", "yes"), ("record_maps", None)])
def test_common_keywords_are_checked_strictly(keyword, value):
    model, images, labels = problem()
    for name in NAMES:
        with pytest.raises(InputError, match=keyword):
            ATTACKS[name](Untouchable(model), images, labels, **{keyword: value})


def test_targeted_no_does_not_run_a_targeted_attack():
    model, images, labels = problem()
    with pytest.raises(InputError, match=r"targeted must be True or False; got 'no'"):
        ATTACKS["dag"](model, images, labels, targeted="no")


BAD_STEPS = [10 ** 400, -10 ** 400, 10 ** 5000, "1e400", float("inf"), float("nan"), "-inf", "1" * 5000, 2.5,
             "twelve", [3], None, {}, torch.ones(2), 1 + 2j]


@pytest.mark.parametrize("value", BAD_STEPS, ids=[f"bad{i}" for i in range(len(BAD_STEPS))])
@pytest.mark.parametrize("name", NAMES)
def test_bad_num_steps_get_one_readable_line(name, value):
    model, images, labels = problem()
    with pytest.raises(InputError, match="num_steps") as error:
        ATTACKS[name](Untouchable(model), images, labels, num_steps=value)
    message = str(error.value)
    assert "\n" not in message and len(message) < 300, message


def test_huge_numbers_for_every_number_parameter():
    model, images, labels = problem()
    for name, param in NUMBER_PARAMS:
        for value in (10 ** 400, "1e400", -10 ** 400):
            with pytest.raises(InputError, match=param):
                ATTACKS[name](Untouchable(model), images, labels, **{param: value})


def test_param_spec_conversions_stay_exact():
    steps = ParamSpec("n", int, 5, "h", low=1, high=100)
    assert steps.validate(7) == 7 and steps.validate(7.0) == 7 and steps.validate("12") == 12
    assert steps.validate(torch.tensor(9)) == 9
    assert type(steps.validate(7.0)) is int
    with pytest.raises(InputError, match="whole number"):
        steps.validate(7.5)
    rate = ParamSpec("r", float, 0.5, "h", low=0.0, high=1.0)
    assert rate.validate(1) == 1.0 and type(rate.validate(1)) is float and rate.validate("0.25") == 0.25
    unbounded = ParamSpec("u", float, 0.5, "h")
    with pytest.raises(InputError, match="too large"):
        unbounded.validate(10 ** 400)
    flag = ParamSpec("f", bool, True, "h")
    for bad in (1, 0, "true", None):
        with pytest.raises(InputError, match="true or false"):
            flag.validate(bad)
    choice = ParamSpec("c", str, "a", "h", choices=("a", "b"))
    with pytest.raises(InputError, match="one of"):
        choice.validate(["a"])
    assert ADV_THRESHOLD.validate(0.5) == 0.5
    with pytest.raises(InputError, match="adv_threshold"):
        ADV_THRESHOLD.validate(True)


@pytest.mark.parametrize("bad", [42, "print", object()])
@pytest.mark.parametrize("name", NAMES)
def test_a_callback_that_is_not_callable_is_refused_before_the_model_runs(name, bad):
    model, images, labels = problem()
    with pytest.raises(InputError, match="callback must be None or a function"):
        ATTACKS[name](Untouchable(model), images, labels, callback=bad)


@pytest.mark.parametrize("name", NAMES)
def test_masks_must_be_boolean_and_of_the_images_shape(name):
    model, images, labels = problem()
    n, _, h, w = images.shape
    for bad in (torch.ones(n, h, w), torch.ones(n, h, w, dtype=torch.uint8), torch.ones(n, h, w + 1, dtype=torch.bool),
                torch.ones(h, w, dtype=torch.bool), [[True]], "all"):
        with pytest.raises(InputError, match="masks must be"):
            ATTACKS[name](Untouchable(model), images, labels, masks=bad)
    # a good mask works, and the masked-out pixels do not count
    masks = torch.ones(n, h, w, dtype=torch.bool)
    masks[:, :, : w // 2] = False
    result = run_attack(name, model, images, labels, masks=masks)
    assert result.adv_images.shape == images.shape


def test_direct_attack_runs_check_the_common_keywords_too():
    model, images, labels = problem()
    with pytest.raises(InputError, match="targeted"):
        AttackRun("x", model, images, labels, None, "no", 0.99, 3)
    with pytest.raises(InputError, match="callback"):
        AttackRun("x", model, images, labels, None, False, 0.99, 3, callback=3)
    with pytest.raises(InputError, match="adv_threshold"):
        AttackRun("x", model, images, labels, None, False, True, 3)
    with pytest.raises(InputError, match="model must be callable"):
        AttackRun("x", "a model", images, labels, None, False, 0.99, 3)


# ----------------------------------------------------------------------------- hyper-parameters only

@pytest.mark.parametrize("name", NAMES)
def test_validate_hyperparameters_accepts_only_the_schema_and_adv_threshold(name):
    spec = ATTACKS[name]
    params = {**spec.defaults(), "adv_threshold": 0.9}
    assert spec.validate_hyperparameters(params) == params
    assert spec.validate_hyperparameters({"num_steps": "3"})["num_steps"] == 3
    for keyword in set(COMMON_KEYWORDS) - {"adv_threshold"}:
        for value in (None, False, print):
            with pytest.raises(InputError, match=rf"'{keyword}' is not a hyper-parameter"):
                spec.validate_hyperparameters({"num_steps": 3, keyword: value})
    with pytest.raises(InputError, match="no parameter"):
        spec.validate_hyperparameters({"__class__": 1})
    with pytest.raises(InputError, match="num_steps"):
        spec.validate_hyperparameters({"num_steps": True})
    with pytest.raises(InputError, match="mapping"):
        spec.validate_hyperparameters([("num_steps", 3)])
    with pytest.raises(InputError, match="strings"):
        spec.validate_hyperparameters({3: 3})
    # the program's own calls still take the common keywords
    assert spec.validate({"targeted": False, "callback": None, "record_maps": True})["record_maps"] is True


# ----------------------------------------------------------------------------- dtypes, graphs, iterations

@pytest.mark.parametrize("name", NAMES)
def test_float64_images_give_the_float32_result(name):
    model, images, labels = problem()
    reference = run_attack(name, model, images, labels)
    result = run_attack(name, model, images.double(), labels)
    assert result.adv_images.dtype == torch.float32
    assert torch.equal(result.adv_images, reference.adv_images) and torch.equal(result.apsr, reference.apsr)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_half_precision_images_are_converted_to_the_models_dtype(name, dtype):
    model, images, labels = problem()
    result = run_attack(name, model, images.to(dtype), labels)
    assert result.adv_images.dtype == torch.float32
    assert ((result.adv_images >= 0) & (result.adv_images <= 1)).all()


@pytest.mark.parametrize("name", NAMES)
def test_a_parameter_free_model_keeps_the_images_dtype(name):
    model, images, labels = problem()
    weight, bias = model.conv.weight.detach().double(), model.conv.bias.detach().double()

    def functional(x):
        return F.conv2d(x, weight, bias)

    result = run_attack(name, functional, images.double(), labels)
    assert result.adv_images.dtype == torch.float64
    reference = run_attack(name, model, images, labels)
    assert (result.apsr - reference.apsr).abs().max() <= 0.2


@pytest.mark.parametrize("name", NAMES)
def test_results_are_not_attached_to_the_callers_graph(name):
    model, images, labels = problem()
    source = images.clone().requires_grad_(True)
    scaled = source * 1.0  # a non-leaf, as from a preprocessing graph
    seen = []
    result = run_attack(name, model, scaled, labels, callback=seen.append, record_maps=True)
    for tensor in (result.adv_images, result.linf, result.apsr):
        assert tensor.requires_grad is False and tensor.grad_fn is None
    assert seen[-1].adv_images.requires_grad is False
    assert source.grad is None


@pytest.mark.parametrize("name", NAMES)
def test_iterations_are_counted_without_a_callback(name):
    model, images, labels = problem()
    records = []
    observed = run_attack(name, model, images, labels, callback=records.append)
    unobserved = run_attack(name, model, images, labels)
    assert observed.iterations == len(records) > 0
    assert unobserved.iterations == observed.iterations
    assert torch.equal(unobserved.adv_images, observed.adv_images)
    assert torch.equal(unobserved.num_forwards, observed.num_forwards)


def test_existing_input_errors_still_raise():
    model, images, labels = problem()
    for name in NAMES:
        with pytest.raises(InputError, match="labels must be an integer"):
            ATTACKS[name](model, images, labels.float())
        with pytest.raises(InputError, match="empty"):
            ATTACKS[name](model, images[:0], labels[:0])
        with pytest.raises(InputError, match="images must be floating point"):
            ATTACKS[name](model, (images * 255).to(torch.uint8), labels)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_the_finite_check_agrees_with_isfinite_on_every_kind_of_bad_entry(dtype):
    from explorer.attacks.core import all_finite

    generator = torch.Generator().manual_seed(0)
    for bad in (None, float("nan"), float("inf"), float("-inf")):
        for position in (0, 7, 59):
            values = torch.randn(3, 4, 5, generator=generator).to(dtype) * 100
            if bad is not None:
                values.view(-1)[position] = bad
            assert bool(all_finite(values)) == bool(torch.isfinite(values).all())
    assert bool(all_finite(torch.empty(0, 3)))
