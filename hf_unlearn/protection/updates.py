"""Keep every applied update out of the Core Gradient Space, whatever the optimizer does.

Projecting gradients is enough for plain SGD, but Adam-type optimizers rescale each entry and
weight decay acts on the weights themselves, so both leak into the protected space. We therefore
snapshot the protected weights before ``optimizer.step()`` and project the *difference* after it:
W ← W_before + P(W_after − W_before). Where the step is a linear combination of past gradients (torch's SGD,
momentum or not, no weight decay, float32/float64 weights not sharded), projecting the final gradient in place
before the step applies the same update without the snapshot, a copy of every protected weight (405 MiB of a
135M-parameter causal LM's peak): ``snapshot(optimizer)`` takes that path when it may.

The projection runs in float32 (or the weight's dtype if wider). A bfloat16 or float16 weight also
gets a float32 master copy that follows the projected trajectory exactly; the model's weight is that
copy rounded. So the only part of the total change that reaches the protected space is the rounding
of the current weight, at most half a unit in the last place of each entry (2⁻⁹ relative in
bfloat16), and it does not accumulate over steps. Rounding every step instead let 1-6 % of each small
update into the protected space. float32 and float64 weights carry no such rounding.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..core import LayerProjector, UnsupportedSetupError
from .sharded import check_row_sharding, is_sharded, local_rows


class ProjectedUpdates:
    """Snapshot/project pair around an optimizer step for the weights a space protects.

    ``targets`` maps a key to ``(layer name, weight, transposed)``: the trainable weight whose
    updates must stay out of that layer's input space, and its layout. Usually the key is the layer
    name and the weight its own; for a PEFT model the weights are the LoRA ``A`` matrices (``(r, in)``,
    never transposed) and the ``modules_to_save`` copies of the layer.
    """

    def __init__(self, projectors: dict[str, LayerProjector], targets: dict[str, tuple[str, nn.Parameter, bool]]):
        self.weights: dict[str, nn.Parameter] = {}
        self.projectors: dict[str, LayerProjector] = {}
        for key, (layer, weight, transposed) in targets.items():
            if is_sharded(weight):  # FSDP2: see sharded.py
                check_row_sharding(key, weight)
                if weight.dtype not in (torch.float32, torch.float64):
                    raise UnsupportedSetupError(
                        f"Weight of {key!r} is a sharded {weight.dtype} tensor: projected updates keep a float32 "
                        "master copy for low-precision weights only when they are not sharded. Shard float32 "
                        "weights (mixed precision computes in bf16 while the parameters stay float32)."
                    )
            projector = dataclasses.replace(projectors[layer], transposed=transposed)
            self.weights[key] = weight
            # float32 at least: in bfloat16 the projection itself left 1-6 % of each update in the protected space
            self.projectors[key] = projector.to(weight.device, torch.promote_types(weight.dtype, torch.float32))
        self._before: dict[str, torch.Tensor] = {}
        self._rows_before: dict[str, torch.Tensor] = {}  # free rows before a step taken on projected gradients
        self.free_rows: dict[str, torch.Tensor] = {}  # output units whose updates are applied unprojected
        self._offsets: dict[str, tuple[torch.Tensor, nn.Parameter]] = {}  # kept-input mean and bias per free layer
        self._master: dict[str, torch.Tensor] = {}  # float32 copies of bfloat16/float16 weights

    @classmethod
    def for_layers(cls, model: nn.Module, projectors: dict[str, LayerProjector]) -> ProjectedUpdates:
        """The usual case: every protected layer's own weight."""
        modules = dict(model.named_modules())
        return cls(projectors, {n: (n, modules[n].weight, p.transposed) for n, p in projectors.items()})

    def leave_unprojected(
        self, key: str, outputs: list[int], kept_mean: torch.Tensor | None = None, bias: nn.Parameter | None = None
    ) -> None:
        """Apply the updates of these output units (rows of ``(out, in)``, columns if transposed) as they are.

        With ``kept_mean`` (the mean input of the layer on kept examples) and the layer's ``bias``, a free
        update that would raise those units' outputs on the average kept input is offset through the bias:
        when the forgotten and kept inputs point in opposite directions (a binary classifier's two classes),
        lowering a class on its own examples would otherwise raise it on everything else.
        """
        size = self.weights[key].shape[1 if self.projectors[key].transposed else 0]
        if not outputs or min(outputs) < 0 or max(outputs) >= size:
            raise ValueError(f"Output units {outputs} do not exist in {key}, which has {size}.")
        self.free_rows[key] = torch.tensor(sorted(set(outputs)), device=self.weights[key].device)
        if kept_mean is not None and bias is not None:
            self._offsets[key] = (kept_mean.to(self.projectors[key].basis), bias)

    @torch.no_grad()
    def project_weights(self, keys: list[str]) -> None:
        """Project these weights themselves (LoRA ``A`` at the start, so B·A·x = 0 for kept x from step 0)."""
        for key in keys:
            projector = self.projectors[key]
            self.weights[key].copy_(projector.project(self.weights[key].to(projector.basis.dtype)))

    def _needs_full(self, key: str) -> bool:
        """A sharded weight is projected on its own rows, except where rows do not carry whole inputs."""
        return self.projectors[key].transposed or key in self.free_rows

    def steps_on_gradients(self, optimizer) -> bool:
        """True when projecting the gradient before ``optimizer``'s step equals projecting the step itself."""
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the torch optimizer
        if type(inner) is not torch.optim.SGD:
            return False
        for key, weight in self.weights.items():
            if is_sharded(weight) or weight.dtype != self.projectors[key].basis.dtype:
                return False  # low precision needs the master copy the snapshot path keeps
        protected = {id(w) for w in self.weights.values()}
        return all(
            group.get("weight_decay", 0.0) == 0.0
            for group in inner.param_groups
            if any(id(p) in protected for p in group["params"])
        )

    @torch.no_grad()
    def snapshot(self, optimizer=None) -> None:
        """Before the step: the weights it will change, or, where ``optimizer`` allows it, the gradients projected."""
        if optimizer is not None and self.steps_on_gradients(optimizer):
            self._project_gradients()
            return
        for key, weight in self.weights.items():
            if not weight.requires_grad:
                continue
            compute = self.projectors[key].basis.dtype
            if is_sharded(weight):
                held = weight.full_tensor() if self._needs_full(key) else weight.to_local()
                self._before[key] = held.detach().to(compute).clone()
                continue
            master = self._master.get(key)
            if weight.dtype == compute:
                self._before[key] = weight.detach().clone()
            elif master is not None and torch.equal(master.to(weight.dtype), weight):
                self._before[key] = master
            else:  # first step, or the weights were replaced (a guard rollback, a resumed checkpoint)
                self._before[key] = weight.detach().to(compute)

    @torch.no_grad()
    def _project_gradients(self) -> None:
        """Each protected gradient projected in place (free units keep theirs); free rows whose bias is offset are
        kept as they are before the step, the only part of the weights ``project`` then needs."""
        for key, weight in self.weights.items():
            if not weight.requires_grad or weight.grad is None:
                continue
            if key in self._offsets:
                self._rows_before[key] = self.free_part(key, weight.detach()).clone()
            weight.grad.copy_(self.project_gradient(key, weight.grad))

    def project_gradient(self, key: str, grad: torch.Tensor) -> torch.Tensor:
        """``grad`` of ``key``'s weight with its protected part removed, except on free units (raw)."""
        projector = self.projectors[key]
        raw = grad.to(projector.basis.dtype)
        projected = projector.project(raw)
        if key in self.free_rows:
            projected.index_copy_(1 if projector.transposed else 0, self.free_rows[key], self.free_part(key, raw))
        return projected.to(grad.dtype)

    @torch.no_grad()
    def project(self) -> None:
        for key, rows in self._rows_before.items():  # gradients were projected: only the bias offsets remain
            self.offset_bias(key, self.free_part(key, self.weights[key].detach()) - rows)
        self._rows_before.clear()
        for key, before in self._before.items():
            weight, projector = self.weights[key], self.projectors[key]
            if is_sharded(weight):
                self._project_sharded(key, before)
                continue
            delta = weight.to(before.dtype) - before.to(weight.dtype).to(before.dtype)  # the optimizer's step
            projected = projector.project(delta)
            if key in self.free_rows:
                self._free(key, delta, projected)
            after = before + projected
            if weight.dtype != after.dtype:
                self._master[key] = after  # low-precision weights: the exact projected trajectory lives here
            weight.copy_(after)
        self._before.clear()

    def _project_sharded(self, key: str, before: torch.Tensor) -> None:
        weight, full = self.weights[key], self._needs_full(key)
        current = (weight.full_tensor() if full else weight.to_local()).to(before.dtype)
        delta = current - before
        projected = self.projectors[key].project(delta)
        if key in self.free_rows:
            self._free(key, delta, projected)
        after = before + projected
        weight.to_local().copy_(local_rows(after, weight) if full else after)

    @property
    def offset_keys(self) -> list[str]:
        """The layers whose free units' rise on the mean kept input is offset through their bias."""
        return list(self._offsets)

    def free_part(self, key: str, tensor: torch.Tensor) -> torch.Tensor:
        """The free units' slice of a weight-shaped ``tensor`` (rows, or columns of a transposed layer)."""
        return tensor.index_select(1 if self.projectors[key].transposed else 0, self.free_rows[key])

    def _free(self, key: str, delta: torch.Tensor, projected: torch.Tensor) -> None:
        """Free units take the raw update; a rise it causes on the average kept input goes into the bias."""
        raw = self.free_part(key, delta)
        projected.index_copy_(1 if self.projectors[key].transposed else 0, self.free_rows[key], raw)
        self.offset_bias(key, raw)

    def offset_target(self, key: str) -> torch.Tensor:
        """The bias that ``offset_bias`` lowers for ``key``'s free units."""
        return self._offsets[key][1]

    @torch.no_grad()
    def offset_bias(self, key: str, raw: torch.Tensor) -> None:
        """Lower the free units' bias by the rise ``raw`` (their update) causes on the mean kept input, if any."""
        if key not in self._offsets:
            return
        rows, transposed = self.free_rows[key], self.projectors[key].transposed
        mean, bias = self._offsets[key]
        raw = raw.to(mean.dtype)
        rise = mean @ raw if transposed else raw @ mean
        if is_sharded(bias):
            full = bias.full_tensor().index_add(0, rows, -rise.clamp(min=0).to(bias.dtype))
            bias.to_local().copy_(local_rows(full, bias))
        else:
            bias.index_add_(0, rows, -rise.clamp(min=0).to(bias.dtype))
