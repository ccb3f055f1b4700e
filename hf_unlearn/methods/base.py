"""What every unlearning method is: a forget objective plus a way to protect what must be kept.

A method sees one batch contract, ``{"forget": inputs, "retain": inputs}`` (retain only when the
method asks for it), and returns a scalar loss. Protection that acts on the gradient or the update
rather than the loss hooks into the step: ``before_optimizer_step`` sees the accumulated, all-reduced
gradient (SalUn's mask), ``after_optimizer_step`` the updated weights (EUPMU's multiplier).

``default_overrides`` holds a method's recommended TrainingArguments values (its learning rate,
optimizer, epochs); ``UnlearningArguments`` applies them to every field the user left at the
library default (see ``apply_default_overrides``).
"""

from __future__ import annotations

import copy
import dataclasses
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..data.columns import LABEL_COLUMNS

if TYPE_CHECKING:
    from ..arguments import UnlearningArguments
    from ..trainer import UnlearningTrainer



def split_labels(inputs: dict) -> tuple[dict, torch.Tensor]:
    """Model inputs without the labels, and the labels."""
    for key in LABEL_COLUMNS:
        if key in inputs:
            return {k: v for k, v in inputs.items() if k != key}, inputs[key]
    raise ValueError(f"A batch has no labels (keys: {sorted(inputs)}); unlearning needs labelled examples.")


def logits_and_labels(model: nn.Module, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    features, labels = split_labels(inputs)
    return model(**features).logits, labels


def cross_entropy(model: nn.Module, inputs: dict) -> torch.Tensor:
    logits, labels = logits_and_labels(model, inputs)
    return F.cross_entropy(logits, labels)


class UnlearningMethod(ABC):
    """Base class: override ``compute_loss``; set the class attributes that describe the method."""

    name: ClassVar[str] = ""
    needs_retain: ClassVar[bool] = False  # the batch carries a "retain" stream
    uses_projection: ClassVar[bool] = False  # updates are projected away from the Core Gradient Space
    trains_unprotected: ClassVar[bool] = True  # parameters outside the space may move
    default_overrides: ClassVar[dict[str, Any]] = {}  # recommended values for fields left at their defaults

    def __init__(self, args: UnlearningArguments):
        self.args = args
        self._tracked: dict[str, tuple[float, int]] = {}

    def setup(self, trainer: UnlearningTrainer) -> None:  # noqa: B027 (optional hook)
        """Called once before the first step, after inputs were validated (e.g. copy a teacher)."""

    @abstractmethod
    def compute_loss(self, trainer: UnlearningTrainer, model: nn.Module, batch: dict) -> torch.Tensor:
        """The scalar loss of one micro-batch (a mean over its examples)."""

    def before_optimizer_step(self, trainer: UnlearningTrainer, model: nn.Module) -> None:  # noqa: B027
        """Called before every optimizer step, on the accumulated, all-reduced and clipped gradient."""

    def after_optimizer_step(self, trainer: UnlearningTrainer, model: nn.Module) -> None:  # noqa: B027
        """Called after every optimizer step (after any projection)."""

    def track(self, name: str, value: float | torch.Tensor) -> None:
        """Record a value; ``logs`` reports its mean since the last log."""
        total, count = self._tracked.get(name, (0.0, 0))
        self._tracked[name] = (total + float(value), count + 1)

    def logs(self) -> dict[str, float]:
        """Method-specific values to log with the training loss (e.g. a multiplier)."""
        means = {name: total / count for name, (total, count) in self._tracked.items() if count}
        self._tracked.clear()
        return means


# ---------------------------------------------------------------------- per-method defaults
def apply_default_overrides(args: UnlearningArguments, method: type[UnlearningMethod]) -> dict[str, Any]:
    """Set ``method.default_overrides`` on every field of ``args`` still at its dataclass default.

    A value equal to the library default counts as "not set" (dataclasses cannot tell the two apart);
    pass ``use_method_defaults=False`` to keep the library defaults verbatim. Returns what was applied.
    """
    fields = {f.name: f for f in dataclasses.fields(args)}
    applied = {}
    for name, value in method.default_overrides.items():
        if name not in fields:
            raise ValueError(f"{method.__name__}.default_overrides names {name!r}, which is not an argument.")
        field = fields[name]
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        if getattr(args, name) == default and default != value:
            setattr(args, name, value)
            applied[name] = value
    return applied


# ---------------------------------------------------------------------- helpers shared by methods
def random_wrong_labels(labels: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """A label drawn uniformly from the classes other than ``labels`` (drawn on CPU: reproducible anywhere)."""
    if num_classes < 2:
        raise ValueError("Random labels need at least two classes.")
    offset = torch.randint(1, num_classes, labels.shape, generator=generator).to(labels.device)
    return (labels + offset) % num_classes


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode that takes no gradients (a teacher or a reference model)."""
    copied = copy.deepcopy(model)
    copied.eval()
    copied.requires_grad_(False)
    return copied


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def batches(trainer: UnlearningTrainer, dataset, batch_size: int | None = None, shard: bool = True):
    """This process's share of ``dataset`` in collated batches on the training device (for ``setup``)."""
    args = trainer.args
    if shard and args.world_size > 1:
        dataset = dataset.shard(args.world_size, args.process_index, contiguous=True)
    loader = DataLoader(
        dataset, batch_size=batch_size or args.per_device_train_batch_size, collate_fn=trainer.base_collator
    )
    for batch in loader:
        yield {k: v.to(args.device) if torch.is_tensor(v) else v for k, v in batch.items()}


def all_reduce_sum(tensors: list[torch.Tensor]) -> None:
    """Sum tensors in place across processes (no-op in a single process), in the order given."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for tensor in tensors:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
