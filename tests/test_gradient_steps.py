"""Plain SGD steps on projected gradients instead of a snapshot of the weights: same weights, no copy held."""

import copy

import pytest
import torch
from projection_fixtures import small_model_and_space

from hf_unlearn.protection.updates import ProjectedUpdates


def _run(model, space, x, make_optimizer, *, pass_optimizer: bool, free_rows: bool = False):
    """Four steps; returns the weights, the bias and whether a snapshot of the weights was ever held."""
    model[0].bias.requires_grad_(not free_rows)
    updates = ProjectedUpdates.for_layers(model, space.projectors())
    if free_rows:
        updates.leave_unprojected("0", [1, 4], kept_mean=x.mean(0), bias=model[0].bias)
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad])
    held = False
    for _ in range(4):
        optimizer.zero_grad()
        (-model(x)[:, :2].sum()).backward()
        updates.snapshot(optimizer if pass_optimizer else None)
        held = held or bool(updates._before)
        optimizer.step()
        updates.project()
    return model[0].weight.detach().clone(), model[2].weight.detach().clone(), model[0].bias.detach().clone(), held


@pytest.mark.parametrize("free_rows", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_on_projected_gradients_ends_where_projected_updates_end_and_holds_no_snapshot(momentum, free_rows):
    model, space, x = small_model_and_space()
    exact = copy.deepcopy(model).double()  # the snapshot path in float64: the trajectory both paths round
    start = model[0].weight.detach().clone(), model[2].weight.detach().clone(), model[0].bias.detach().clone()

    def sgd(params):
        return torch.optim.SGD(params, lr=0.05, momentum=momentum)

    *reference, held = _run(exact, space, x.double(), sgd, pass_optimizer=False, free_rows=free_rows)
    g0, g2, g_bias, g_held = _run(model, space, x, sgd, pass_optimizer=True, free_rows=free_rows)
    assert held and not g_held  # the gradient path keeps no copy of the weights
    for ours, theirs in zip((g0, g2, g_bias), reference):
        # float32 round-off of four steps (~1e-6 on weights of order 1); a wrong projection misses by 1e-2
        torch.testing.assert_close(ours.double(), theirs, rtol=0, atol=1e-5 * max(1.0, float(theirs.abs().max())))
    inside0 = (g0 - start[0]) @ space.basis("0").float()
    inside2 = space.basis("2").float().T @ (g2 - start[1])  # Conv1D: (in, out)
    kept = [0, 2, 3] if free_rows else list(range(12))
    assert (g0 - start[0]).abs().max() > 1e-2 and inside2.abs().max() < 1e-5 and inside0[kept].abs().max() < 1e-5
    if free_rows:
        assert inside0[[1, 4]].abs().max() > 1e-3  # free rows took the raw gradient
        assert (g_bias - start[2])[[1, 4]].abs().max() > 1e-4  # and their bias was offset


@pytest.mark.parametrize("make_optimizer", [
    lambda params: torch.optim.SGD(params, lr=0.05, weight_decay=0.1),  # decay acts on the weights themselves
    lambda params: torch.optim.AdamW(params, lr=0.01),  # rescales each entry
], ids=["sgd_weight_decay", "adamw"])
def test_optimizers_whose_step_is_not_linear_in_the_gradients_keep_the_snapshot(make_optimizer):
    model, space, x = small_model_and_space()
    start = model[0].weight.detach().clone()
    w0, _, _, held = _run(model, space, x, make_optimizer, pass_optimizer=True)
    assert held
    change = w0 - start
    assert change.abs().max() > 1e-3 and (change @ space.basis("0").float()).abs().max() < 1e-5


def test_low_precision_weights_keep_the_snapshot_and_its_float32_master_copy():
    model, space, x = small_model_and_space()
    model.to(torch.bfloat16)
    updates = ProjectedUpdates.for_layers(model, space.projectors())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    assert not updates.steps_on_gradients(optimizer)
    model.float()
    assert ProjectedUpdates.for_layers(model, space.projectors()).steps_on_gradients(optimizer)
