"""Project each protected weight's gradient the moment autograd produces it, for engines that own the step.

``ProjectedUpdates`` projects what ``optimizer.step()`` applied, which needs the weights before and after
the step. DeepSpeed ZeRO does the step inside ``backward`` on fp32 master partitions and copies them back
over the model's weights, so a projection written into the model is lost at the next step. A tensor hook
on the parameter runs before the gradient is accumulated, before ZeRO's reduce-scatter sees it: every
rank then reduces projected gradients. For an optimizer whose update is a linear combination of past
gradients (SGD, with or without momentum or Nesterov, no weight decay) the applied update is projected
too; the engine check refuses other optimizers. Free output rows (class removal) keep the raw gradient, and
their bias offset is computed from the rows before and after the step, on the frozen bias no engine copies.
Verified on CPU (gloo, 2 processes, ZeRO-2 and ZeRO-3): same weights as one process, protected component of
the change at float32 round-off.
"""

from __future__ import annotations

from functools import partial

import torch

from ..core import UnsupportedSetupError
from ..utils.zero3 import whole_parameters
from .updates import ProjectedUpdates


class ProjectedGradients:
    """Gradient hooks that apply ``updates``' projectors (and its free output rows) to every trainable weight."""

    def __init__(self, updates: ProjectedUpdates):
        for key in updates.offset_keys:
            if updates.offset_target(key).requires_grad:
                raise UnsupportedSetupError(
                    f"Class removal offsets the free output rows of {key!r} through their bias after each step; the "
                    "bias is trainable here, so DeepSpeed's master copy would overwrite the offset. Keep "
                    "freeze_bias_and_norm=True (the default), or pass unproject_forgotten_outputs=False."
                )
        self.updates = updates
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._rows_before: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def before_step(self) -> None:
        """The free rows whose bias is offset, as they are before the step (the engine steps inside backward)."""
        for key in self.updates.offset_keys:
            weight = self.updates.weights[key]
            with whole_parameters([weight]):  # ZeRO-3: gathered (collective, every process takes this path)
                rows = self.updates.free_part(key, weight.detach())
            self._rows_before[key] = rows.to(self.updates.projectors[key].basis.dtype)

    @torch.no_grad()
    def after_step(self) -> None:
        """Offset the bias by what the free rows' raw update raises on the mean kept input, as update projection
        does; the bias is frozen, so no optimizer copy of it overwrites this."""
        for key, before in self._rows_before.items():
            weight, bias = self.updates.weights[key], self.updates.offset_target(key)
            with whole_parameters([weight]):
                now = self.updates.free_part(key, weight.detach())
            with whole_parameters([bias], modify=True):  # ZeRO-3: the offset written into the whole bias is kept
                self.updates.offset_bias(key, now.to(before.dtype) - before)
        self._rows_before.clear()

    def attach(self) -> None:
        self.detach()
        for key, weight in self.updates.weights.items():
            if weight.requires_grad:
                self._handles.append(weight.register_hook(partial(self._project, key)))

    @property
    def attached(self) -> int:
        """How many gradient hooks are in place."""
        return len(self._handles)

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @torch.no_grad()
    def _project(self, key: str, grad: torch.Tensor) -> torch.Tensor:
        return self.updates.project_gradient(key, grad)
