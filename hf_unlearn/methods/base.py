"""What every unlearning method is: a forget objective plus a way to protect what must be kept.

A method sees one batch contract, ``{"forget": inputs, "retain": inputs}`` (retain only when the
method asks for it), and returns a scalar loss. Protection that acts on the gradient or the update
rather than the loss hooks into the step: ``before_optimizer_step`` sees the accumulated, all-reduced
gradient (SalUn's mask), ``after_optimizer_step`` the updated weights (EUPMU's multiplier).

A method's hyperparameters live in its own ``MethodConfig`` dataclass, beside its code: help text,
checks in ``__post_init__``, the TrainingArguments values it recommends and the paper it comes
from. Methods see the trainer only through ``UnlearningContext``, the few values they read, so they
can be tested with a plain object and never import the trainer.
"""

from __future__ import annotations

import copy
import dataclasses
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Protocol

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..core.labels import LABEL_KEYS
from ..core.loaders import read_loader
from ..data.causal_lm import IGNORE_INDEX

# The TrainingArguments a method may recommend; ``UnlearningArguments`` leaves them ``None`` ("unset")
# and fills each one from the chosen method's ``MethodConfig.training_defaults`` exactly once.
TRAINING_KEYS = ("optim", "learning_rate", "num_train_epochs", "per_device_train_batch_size")


@dataclasses.dataclass(frozen=True)
class Paper:
    """Where a method comes from: shown by ``hf-unlearn methods NAME`` and cited by the model card."""

    title: str
    authors: str  # "Last, First and Last, First" (BibTeX order)
    venue: str
    year: int
    arxiv: str | None = None

    @property
    def url(self) -> str | None:
        return f"https://arxiv.org/abs/{self.arxiv}" if self.arxiv else None

    @property
    def bibtex(self) -> str:
        key = self.authors.split(",")[0].lower().replace(" ", "") + str(self.year)
        lines = [f"  title = {{{self.title}}}", f"  author = {{{self.authors}}}", f"  booktitle = {{{self.venue}}}",
                 f"  year = {{{self.year}}}"]
        if self.arxiv:
            lines.append(f"  eprint = {{{self.arxiv}}}, archivePrefix = {{arXiv}}")
        return "@inproceedings{" + key + ",\n" + ",\n".join(lines) + "\n}"


@dataclasses.dataclass
class MethodConfig:
    """Base of every method's hyperparameters (a dataclass, so ``HfArgumentParser`` and YAML read it).

    Field names carry the method's prefix (``pgu_delta``, ``scrub_alpha``): they share one command
    line with ``UnlearningArguments`` and must never collide with it or with TrainingArguments.
    """

    training_defaults: ClassVar[dict[str, Any]] = {}  # recommended values for TRAINING_KEYS left unset
    # the control's step growth when a sample removal stalls (``UnlearningArguments.step_growth``); 1 = never
    step_growth: ClassVar[float] = 1.0
    paper: ClassVar[Paper | None] = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class NoHyperparameters(MethodConfig):
    """A method whose only knobs are the TrainingArguments (learning rate, epochs)."""


class UnlearningContext(Protocol):
    """What a method may read from the trainer that runs it (``UnlearningTrainer`` satisfies it)."""

    args: Any  # TrainingArguments: device, seed, world_size, process_index, per_device_train_batch_size
    model: nn.Module
    forget_dataset: Any
    retain_dataset: Any
    base_collator: Any
    state: Any  # TrainerState: ``epoch``

    def compute_loss_context_manager(self) -> AbstractContextManager: ...


def split_labels(inputs: dict) -> tuple[dict, torch.Tensor]:
    """Model inputs without the labels, and the labels."""
    for key in LABEL_KEYS:
        if key in inputs:
            return {k: v for k, v in inputs.items() if k != key}, inputs[key]
    raise ValueError(f"A batch has no labels (keys: {sorted(inputs)}); unlearning needs labelled examples.")


def next_token_targets(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A causal LM's predictions and the tokens they predict, one row per target token (-100 skipped).

    Position t predicts token t + 1, so every method's per-example loss becomes a per-token loss on
    the tokens that count (the answer, not the prompt or the padding).
    """
    logits, labels = logits[:, :-1], labels[:, 1:]
    keep = labels != IGNORE_INDEX
    return logits[keep], labels[keep]


def logits_and_labels(model: nn.Module, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels, one row per example, or per target token for a causal LM (token labels)."""
    features, labels = split_labels(inputs)
    logits = model(**features).logits
    if labels.dim() > 1:
        return next_token_targets(logits, labels)
    return logits, labels


def sequence_log_probs(model: nn.Module, inputs: dict, per_token: bool = False) -> torch.Tensor:
    """Per example, log p(label | input): for a causal LM the sum over its target tokens (NPO's π(y|x)).

    ``per_token`` divides by the number of target tokens |y| (SimNPO's length normalisation), so a long answer
    and a short one with the same per-token probability weigh alike; a classifier's |y| is 1.
    """
    features, labels = split_labels(inputs)
    logits = model(**features).logits.float()
    if labels.dim() == 1:
        return F.log_softmax(logits, dim=-1).gather(1, labels[:, None]).squeeze(1)
    logits, labels = logits[:, :-1], labels[:, 1:]
    keep = labels != IGNORE_INDEX
    tokens = F.log_softmax(logits, dim=-1).gather(2, labels.clamp(min=0)[..., None]).squeeze(2)
    total = (tokens * keep).sum(1)
    return total / keep.sum(1).clamp(min=1) if per_token else total


def cross_entropy(model: nn.Module, inputs: dict) -> torch.Tensor:
    logits, labels = logits_and_labels(model, inputs)
    return F.cross_entropy(logits, labels)  # a causal LM's: the mean over its target tokens


class UnlearningMethod(ABC):
    """Base class: override ``compute_loss``; set the class attributes that describe the method."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[MethodConfig]] = NoHyperparameters
    needs_retain: ClassVar[bool] = False  # the batch carries a "retain" stream
    uses_projection: ClassVar[bool] = False  # updates are projected away from the Core Gradient Space
    trains_unprotected: ClassVar[bool] = True  # parameters outside the space may move
    causal_lm: ClassVar[bool] = True  # its loss is defined per target token too (see ``logits_and_labels``)

    def __init__(self, config: MethodConfig, seed: int = 0):
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}.")
        self.config = config
        self.seed = seed
        self._tracked: dict[str, tuple[float, int]] = {}

    def setup(self, context: UnlearningContext) -> None:  # noqa: B027 (optional hook)
        """Called once before the first step, after inputs were validated (e.g. copy a teacher)."""

    @abstractmethod
    def compute_loss(self, context: UnlearningContext, model: nn.Module, batch: dict) -> torch.Tensor:
        """The scalar loss of one micro-batch (a mean over its examples)."""

    def before_optimizer_step(self, context: UnlearningContext, model: nn.Module) -> None:  # noqa: B027
        """Called before every optimizer step, on the accumulated, all-reduced and clipped gradient."""

    def after_optimizer_step(self, context: UnlearningContext, model: nn.Module) -> None:  # noqa: B027
        """Called after every optimizer step (after any projection)."""

    def repair_steps(self) -> int:
        """Steps the trainer may spend, after a met stop rule, on kept examples the run flipped (0: no repair)."""
        return 0

    def wants_retain_neighbours(self) -> bool:
        """Whether ``setup`` reads ``context.retain_neighbours`` (``neighbour_weights.RetainNeighbours``, built by the
        trainer from a retain sample in a classifier's sample removal; None elsewhere)."""
        return False

    def acts_on_steps(self) -> bool:
        """Whether the step hooks above read gradients or write weights. An engine that owns both (DeepSpeed:
        gradients partitioned during backward, fp32 master weights that overwrite the model's) cannot run them."""
        base = UnlearningMethod
        return (
            type(self).before_optimizer_step is not base.before_optimizer_step
            or type(self).after_optimizer_step is not base.after_optimizer_step
        )

    def track(self, name: str, value: float | torch.Tensor) -> None:
        """Record a value; ``logs`` reports its mean since the last log."""
        total, count = self._tracked.get(name, (0.0, 0))
        self._tracked[name] = (total + float(value), count + 1)

    def logs(self) -> dict[str, float]:
        """Method-specific values to log with the training loss (e.g. a multiplier)."""
        means = {name: total / count for name, (total, count) in self._tracked.items() if count}
        self._tracked.clear()
        return means


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


def batches(context: UnlearningContext, dataset, batch_size: int | None = None, shard: bool = True):
    """This process's share of ``dataset`` in collated batches on the training device (for ``setup``)."""
    args = context.args
    if shard and args.world_size > 1:
        dataset = dataset.shard(args.world_size, args.process_index, contiguous=True)
    loader = read_loader(dataset, batch_size or args.per_device_train_batch_size, context.base_collator)
    for batch in loader:
        yield {k: v.to(args.device) if torch.is_tensor(v) else v for k, v in batch.items()}


def all_reduce_sum(tensors: list[torch.Tensor]) -> None:
    """Sum tensors in place across processes (no-op in a single process), in the order given."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for tensor in tensors:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
