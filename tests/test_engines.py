"""Gradient projection for engines that own the step, and what each engine refuses (no DeepSpeed needed)."""

from types import SimpleNamespace

import pytest
import torch
from projection_fixtures import small_model_and_space

from hf_unlearn.core import UnsupportedSetupError
from hf_unlearn.methods import get_method
from hf_unlearn.protection.gradients import ProjectedGradients
from hf_unlearn.protection.updates import ProjectedUpdates
from hf_unlearn.training.engines import must_project_gradients


def test_hooked_gradients_and_sgd_momentum_updates_have_no_protected_component():
    model, space, x = small_model_and_space()
    updates = ProjectedUpdates.for_layers(model, space.projectors(dtype=torch.float64))
    updates.leave_unprojected("0", [2])  # a free output row takes the raw gradient
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    raw = torch.autograd.grad(model(x).pow(2).sum(), model[0].weight)[0]
    hooks = ProjectedGradients(updates)
    hooks.attach()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    for _ in range(4):
        optimizer.zero_grad()
        model(x).pow(2).sum().backward()
        optimizer.step()
    basis0, basis2 = space.basis("0").float(), space.basis("2").float()
    change0 = model[0].weight.detach() - start["0.weight"]
    change2 = model[2].weight.detach() - start["2.weight"]  # Conv1D: (in, out), projected on the left
    inside0, inside2 = change0 @ basis0, basis2.T @ change2
    assert change0.abs().max() > 1e-2 and change2.abs().max() > 1e-2
    assert inside0[2].abs().max() > 1e-3  # the free row moved inside the space
    # float32 weights: W + ΔW rounds each entry (~1e-7 of |W|) every step; the projection itself is exact
    assert torch.cat([inside0[:2], inside0[3:]]).abs().max() < 1e-5 and inside2.abs().max() < 1e-5
    # the hook changes only the gradient's protected part: a free row's gradient is the raw one
    optimizer.zero_grad()
    model.load_state_dict({k: v for k, v in start.items()})
    model(x).pow(2).sum().backward()
    torch.testing.assert_close(model[0].weight.grad[2], raw[2])
    assert not torch.allclose(model[0].weight.grad[0], raw[0])
    hooks.detach()
    optimizer.zero_grad()
    model(x).pow(2).sum().backward()
    torch.testing.assert_close(model[0].weight.grad, raw)  # detached: gradients are raw again


def test_free_rows_with_a_bias_offset_move_alike_whether_updates_or_gradients_are_projected():
    import copy

    model, space, x = small_model_and_space()
    twin = copy.deepcopy(model)
    kept_mean = x.mean(0)
    runs = []
    for net, mode in ((model, "updates"), (twin, "gradients")):
        net[0].bias.requires_grad_(False)  # class removal's output bias is frozen, and moved only by the offset
        updates = ProjectedUpdates.for_layers(net, space.projectors(dtype=torch.float64))
        updates.leave_unprojected("0", [1, 4], kept_mean=kept_mean, bias=net[0].bias)
        hooks = ProjectedGradients(updates) if mode == "gradients" else None
        if hooks:
            hooks.attach()
        optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.05, momentum=0.5)
        bias_start = net[0].bias.detach().clone()
        for _ in range(4):
            if hooks:
                hooks.before_step()
            else:
                updates.snapshot()
            optimizer.zero_grad()
            (-net(x)[:, :2].sum()).backward()  # raises outputs 0-1 of layer 2 by moving layer 0's rows too
            optimizer.step()
            hooks.after_step() if hooks else updates.project()
        runs.append((net[0].weight.detach().clone(), net[0].bias.detach().clone(), bias_start))
    (w_u, b_u, start), (w_g, b_g, _) = runs
    torch.testing.assert_close(w_g, w_u, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b_g, b_u, rtol=1e-5, atol=1e-6)
    assert (b_u - start)[[1, 4]].abs().max() > 1e-4  # the offset acted on the free rows' bias
    assert torch.equal((b_u - start)[[0, 2, 3]], torch.zeros(3))  # and only there


def test_a_bias_offset_on_a_trainable_bias_is_refused_under_gradient_projection():
    model, space, x = small_model_and_space()
    updates = ProjectedUpdates.for_layers(model, space.projectors())
    updates.leave_unprojected("0", [1], kept_mean=x.mean(0), bias=model[0].bias)
    with pytest.raises(UnsupportedSetupError, match="freeze_bias_and_norm=True"):
        ProjectedGradients(updates)


def _trainer(method="pgu", stage=2, optim="sgd", weight_decay=0.0, ds_optimizer=None, allow=True, scenario="samples",
             deepspeed=True, fsdp=False, freeze=True, clipping="auto", max_grad_norm=0.0, partitioned=False, **config):
    ds_config = {"zero_optimization": {"stage": stage}, "zero_allow_untested_optimizer": allow,
                 "gradient_clipping": clipping}
    if ds_optimizer:
        ds_config["optimizer"] = ds_optimizer
    plugin = SimpleNamespace(zero_stage=stage, deepspeed_config=ds_config)
    cls = get_method(method)
    weight = torch.nn.Parameter(torch.zeros(2, 2))
    if partitioned:
        weight.ds_id = 0  # how DeepSpeed tags a ZeRO-3 parameter
    return SimpleNamespace(
        model=torch.nn.ParameterList([weight]),
        args=SimpleNamespace(method=method, optim=optim, weight_decay=weight_decay, unproject_forgotten_outputs=True,
                             freeze_bias_and_norm=freeze, max_grad_norm=max_grad_norm),
        protection=object() if cls.uses_projection else None,
        method=cls(cls.config_class(**config)),
        scenario=scenario,
        is_deepspeed_enabled=deepspeed,
        is_fsdp_enabled=fsdp,
        accelerator=SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin)),
    )


def test_deepspeed_zero2_with_sgd_projects_gradients_and_plain_runs_do_not():
    assert must_project_gradients(_trainer()) is True
    assert must_project_gradients(_trainer(ds_optimizer={"type": "SGD", "params": {"lr": 0.1}}, allow=False)) is True
    auto = {"type": "SGD", "params": {"lr": "auto", "weight_decay": "auto"}}  # filled from the Trainer's args
    assert must_project_gradients(_trainer(ds_optimizer=auto)) is True
    with pytest.raises(UnsupportedSetupError, match="weight decay 0.1"):
        must_project_gradients(_trainer(ds_optimizer=auto, weight_decay=0.1))
    assert must_project_gradients(_trainer(deepspeed=False)) is False
    assert must_project_gradients(_trainer(scenario="class")) is True  # free rows, bias offset on a frozen bias
    no_projection = _trainer("gradient_ascent", optim="adamw_torch")
    assert must_project_gradients(no_projection) is False  # no projection: any optimizer
    assert must_project_gradients(_trainer(stage=3)) is True  # ZeRO-3: whole weights until the engine starts
    assert must_project_gradients(_trainer(stage=3, scenario="class")) is True  # free rows gathered around each step


@pytest.mark.parametrize(
    ("trainer", "words"),
    [
        (dict(stage=3, partitioned=True), "already partitioned by DeepSpeed ZeRO-3"),
        (dict(optim="adamw_torch"), "SGD without weight decay"),
        (dict(weight_decay=0.01), "weight decay 0.01"),
        (dict(ds_optimizer={"type": "AdamW", "params": {"lr": 1e-3}}), "AdamW"),
        (dict(allow=False), "zero_allow_untested_optimizer"),
        (dict(scenario="class", freeze=False), "freeze_bias_and_norm=True"),
        (dict(pgu_normalize_gradient=True), "pgu_normalize_gradient=False"),
        (dict(method="salun"), "around each optimizer step"),
        (dict(method="eupmu"), "around each optimizer step"),
        (dict(deepspeed=False, fsdp=True), "FSDP"),
    ],
)
def test_what_an_engine_cannot_run_is_refused_by_name(trainer, words):
    with pytest.raises(UnsupportedSetupError, match=words):
        must_project_gradients(_trainer(**trainer))


@pytest.mark.parametrize(
    ("clipping", "max_grad_norm", "warned"),
    [("auto", 5.0, True), ("auto", 0.0, False), (1.0, 0.0, True), (0.0, 5.0, False)],
)
def test_clipping_under_gradient_projection_is_announced(caplog, clipping, max_grad_norm, warned):
    """DeepSpeed clips the projected gradients, DDP the raw ones: the runs part once clipping acts (measured:
    class removal on digits at SGD 0.25, the removed class's output row 0.16 apart; within 1e-5 without
    clipping)."""
    with caplog.at_level("WARNING", logger="hf_unlearn.training.engines"):
        assert must_project_gradients(_trainer(clipping=clipping, max_grad_norm=max_grad_norm))
    assert ("clipping reads the norm of the projected gradients" in caplog.text) == warned


def test_only_methods_with_active_step_hooks_act_on_steps():
    def acts(name, **config):
        cls = get_method(name)
        return cls(cls.config_class(**config)).acts_on_steps()

    assert not acts("pgu") and not acts("pgu_retain") and not acts("gradient_ascent") and not acts("neggrad_plus")
    assert acts("pgu", pgu_normalize_gradient=True) and acts("salun") and acts("eupmu")


def test_the_reference_takes_the_original_recipes_batch_per_step_whatever_the_process_count():
    from hf_unlearn.scripts.arguments import per_process_batch

    assert per_process_batch(16, 1) == 16 and per_process_batch(16, 2) == 8 and per_process_batch(32, 4) == 8
    for total, world in ((16, 3), (1, 2)):
        with pytest.raises(ValueError, match=f"cannot be split evenly over {world} processes"):
            per_process_batch(total, world)


def test_models_load_whole_under_a_zero3_config_and_the_config_comes_back():
    """transformers partitions at load while a ZeRO-3 config is registered; the recipe loads outside it."""
    from transformers.integrations import deepspeed as hf_deepspeed

    from hf_unlearn.utils.zero3 import loading_whole

    class Zero3Config:
        config = {"zero_optimization": {"stage": 3}}

        def is_zero3(self):
            return True

    config = Zero3Config()
    hf_deepspeed.set_hf_deepspeed_config(config)
    try:
        assert hf_deepspeed.is_deepspeed_zero3_enabled()
        with loading_whole():
            assert not hf_deepspeed.is_deepspeed_zero3_enabled()  # from_pretrained here skips zero.Init
        assert hf_deepspeed.is_deepspeed_zero3_enabled()  # the Trainer still sees ZeRO-3
    finally:
        hf_deepspeed.unset_hf_deepspeed_config()
    with loading_whole():  # no DeepSpeed config at all: nothing to do
        assert not hf_deepspeed.is_deepspeed_zero3_enabled()


def test_whole_weights_outside_zero3_are_the_weights_themselves():
    from hf_unlearn.control.state import copy_weights, restore_weights

    model = torch.nn.Linear(3, 2)
    saved = copy_weights(model)
    with torch.no_grad():
        model.weight.add_(1.0)
    assert not torch.equal(model.weight, saved["weight"])  # a copy, not a view
    restore_weights(model, saved)
    assert torch.equal(model.weight, saved["weight"]) and saved.keys() == {"weight", "bias"}


def test_a_series_of_requests_under_zero3_is_refused_before_loading(tmp_path):
    from hf_unlearn.scripts.arguments import parse_args
    from hf_unlearn.scripts.unlearn import refuse_under_zero3

    script, forget, args = parse_args(["--model_name_or_path", "none", "--dataset_name", "digits",
                                       "--output_dir", str(tmp_path), "--num_requests", "3"])
    refuse_under_zero3(script, forget, args)  # no DeepSpeed: nothing refused
    args.deepspeed_plugin = SimpleNamespace(zero_stage=3)
    with pytest.raises(ValueError, match="num_requests > 1 is not supported"):
        refuse_under_zero3(script, forget, args)
    args.deepspeed_plugin = SimpleNamespace(zero_stage=2)
    refuse_under_zero3(script, forget, args)
