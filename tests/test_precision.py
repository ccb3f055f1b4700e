"""In a bfloat16 model only the rounding of the current weights reaches the protected space, and it does not grow."""

import torch

from hf_unlearn.core import LayerProjector
from hf_unlearn.core.layers import LayerInfo
from hf_unlearn.protection import ProjectedUpdates

STEPS = 30


def _run(master: bool):
    """The protected part of the total change after small steps, and the rounding bound of the final weight."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(256, 64).to(torch.bfloat16)
    basis, _ = torch.linalg.qr(torch.randn(256, 256, dtype=torch.float64))
    projector = LayerProjector.from_eigenbasis(basis, 96, LayerInfo("linear", (64, 256)))
    updates = ProjectedUpdates({"w": projector}, {"w": ("w", layer.weight, False)})
    protected = basis[:, :96]
    start = layer.weight.detach().double().clone()
    for _ in range(STEPS):
        if not master:
            updates._master.clear()  # round every step, as without a master copy
        updates.snapshot()
        with torch.no_grad():
            layer.weight.add_(1e-3 * torch.randn_like(layer.weight))  # a small optimizer step
        updates.project()
    total = layer.weight.detach().double() - start
    bound = 2.0**-9 * layer.weight.detach().double().norm()  # half an ulp of every entry, at most
    return float((total @ protected).norm()), float(bound), float(total.norm())


def test_bfloat16_changes_stay_out_of_the_protected_space_up_to_one_rounding():
    leak, bound, change = _run(master=True)
    assert leak <= bound and leak / change < 0.05
    rounded_each_step, _, _ = _run(master=False)
    assert rounded_each_step > 3 * leak  # rounding at every step accumulates into the protected space


def test_a_rollback_of_the_weights_resynchronises_the_master_copy():
    layer = torch.nn.Linear(8, 4).to(torch.bfloat16)
    basis = torch.eye(8, dtype=torch.float64)
    projector = LayerProjector.from_eigenbasis(basis, 3, LayerInfo("linear", (4, 8)))
    updates = ProjectedUpdates({"w": projector}, {"w": ("w", layer.weight, False)})
    updates.snapshot()
    with torch.no_grad():
        layer.weight.add_(0.5)
    updates.project()
    restored = torch.zeros_like(layer.weight)
    with torch.no_grad():
        layer.weight.copy_(restored)  # the guard rolled back
    updates.snapshot()
    updates.project()  # no optimizer step in between: nothing may change
    assert torch.equal(layer.weight, restored)
