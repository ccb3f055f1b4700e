"""Project each protected weight's gradient the moment autograd produces it, for engines that own the step.

``ProjectedUpdates`` projects what ``optimizer.step()`` applied, which needs the weights before and after
the step. DeepSpeed ZeRO does the step inside ``backward`` on fp32 master partitions and copies them back
over the model's weights, so a projection written into the model is lost at the next step. A tensor hook
on the parameter runs before the gradient is accumulated, before ZeRO's reduce-scatter sees it: every
rank then reduces projected gradients. For an optimizer whose update is a linear combination of past
gradients (SGD, with or without momentum or Nesterov, no weight decay) the applied update is projected
too; the engine check refuses other optimizers. Verified on CPU (gloo, 2 processes, ZeRO-2 and ZeRO-3):
same weights as one process, protected component of the change at float32 round-off.
"""

from __future__ import annotations

from functools import partial

import torch

from ..core import UnsupportedSetupError
from .updates import ProjectedUpdates


class ProjectedGradients:
    """Gradient hooks that apply ``updates``' projectors (and its free output rows) to every trainable weight."""

    def __init__(self, updates: ProjectedUpdates):
        if updates._offsets:
            raise UnsupportedSetupError(
                "Class removal offsets the free output rows through their bias after each step, which an engine "
                "that owns the step (DeepSpeed) overwrites. Pass unproject_forgotten_outputs=False, or run "
                "data-parallel (DDP) or in one process."
            )
        self.updates = updates
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def attach(self) -> None:
        self.detach()
        for key, weight in self.updates.weights.items():
            if weight.requires_grad:
                self._handles.append(weight.register_hook(partial(self._project, key)))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @torch.no_grad()
    def _project(self, key: str, grad: torch.Tensor) -> torch.Tensor:
        projector = self.updates.projectors[key]
        raw = grad.to(projector.basis.dtype)
        projected = projector.project(raw)
        rows = self.updates.free_rows.get(key)
        if rows is not None:
            dim = 1 if projector.transposed else 0
            projected.index_copy_(dim, rows, raw.index_select(dim, rows))
        return projected.to(grad.dtype)
