"""``CoreGradientSpaceCallback``: collect the Core Gradient Space inside the user's own ``Trainer`` run.

Building the space after training is one more pass over the training set; the callback does it as
part of training and saves ``core_gradient_space/`` beside the model, so the first deletion request
finds it. Two modes:

* ``"final_pass"`` (default): after the last optimizer step, one no-grad eval-mode pass over the
  training set with the final weights, through ``CoreGradientSpace.from_model``. The space then
  describes the saved weights exactly, and retain-by-subtraction (G − G_forget) is exact.
* ``"last_epoch"``: forward hooks add each training forward of the last epoch to the Grams; no extra
  pass. The weights move during that epoch and the model runs in train mode (BatchNorm batch
  statistics, dropout), so the space approximates the final model's; the subtraction of a request,
  computed later on the final weights, is then approximate too (round-off negatives are clamped).

Either way the space records the fingerprint of the final weights (the ones a request will start
from) and the fingerprints of every training row, so a later request naming rows the run never saw is
refused. The last-epoch mode falls back to a final pass, with a warning, when its epoch did not see
every training row exactly once (``max_steps`` mid-epoch, distributed padding) or when the weights at
the end are not those the epoch ended with (``load_best_model_at_end``), and with gradient checkpointing
(recomputed forwards would count twice).
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping

import torch
import torch.distributed as dist
from torch import nn
from transformers import TrainerCallback

from ..core import CoreGradientSpace, GramCollector, find_protectable_layers, fingerprint_examples, model_fingerprint
from ..core.covariance import PRECISIONS, _token_mask, batch_size_of
from ..core.energy import DEFAULT_ENERGY, DEFAULT_GAMMA
from ..core.layers import layer_info
from ..protection.peft import is_peft_model
from ..protection.space import CGS_DIR, shard

logger = logging.getLogger(__name__)
MODES = ("final_pass", "last_epoch")


class _TrainingForwardGrams(GramCollector):
    """A ``GramCollector`` that counts a forward only while ``active`` (the Trainer's training steps, not its
    evaluations) and adds it only while ``sampled`` (the steps drawn), reading each batch's size and attention
    mask from the model's own call."""

    def __init__(self, model: nn.Module, layers: Mapping[str, nn.Module], padding: str, precision: str,
                 clock: Callable[[], float]):
        super().__init__(layers, precision=precision)
        self.clock = clock
        self.active = self.sampled = False
        self.num_examples = 0  # every training row the epoch's steps saw
        self.sampled_examples = 0  # those whose inputs were added
        self.seconds = 0.0  # spent in the hooks: what collection adds to the training steps
        self._model, self.padding = model, padding

    def __enter__(self) -> _TrainingForwardGrams:
        super().__enter__()
        self._handles.append(self._model.register_forward_pre_hook(self._see_batch, with_kwargs=True))
        return self

    def _see_batch(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if not self.active:
            return
        batch = kwargs if any(torch.is_tensor(v) for v in kwargs.values()) else args
        rows = batch_size_of(batch)
        self.num_examples += rows
        self.sampled_examples += rows if self.sampled else 0
        self.token_mask = _token_mask(kwargs, None) if self.padding == "masked" else None

    def _make_hook(self, name: str):
        add = super()._make_hook(name)

        def hook(module: nn.Module, args: tuple, output) -> None:
            if self.active and self.sampled:
                start = self.clock()
                add(module, args, output)
                self.seconds += self.clock() - start

        return hook


class CoreGradientSpaceCallback(TrainerCallback):
    """Add to a plain ``Trainer(callbacks=[...])``: the trained model's Core Gradient Space, saved with it.

    Args:
        mode: ``"final_pass"`` (exact, one extra no-grad pass after training) or ``"last_epoch"``
            (no extra pass, collected on the moving weights of the last epoch); see the module docstring.
        train_dataset: the rows to fingerprint for the ledger (default: the Trainer's training set as its
            dataloader holds it, i.e. the model's columns and the label). Pass the dataset you give the
            Trainer to fingerprint all its columns, as ``CoreGradientSpace.from_model`` does.
        fingerprint_columns: columns that identify a row (default: all of ``train_dataset``'s).
        include, exclude: layer patterns, as in ``CoreGradientSpace.from_model``.
        batch_size: the final pass's batch size.
        precision: ``"float64"`` or ``"float32"``: the dtype of each batch's products in the last-epoch mode (the
            sum is float64 either way; float32 halves the hooks' cost at ~1e-7 relative error, well below what
            the moving weights change). The final pass always computes in float64, as ``from_model``.
        step_fraction: below 1, the last-epoch hooks add the forwards of a seeded random share of the epoch's
            optimizer steps only, and the sums are scaled by (rows seen) / (rows added): the hooks cost that share
            of what they cost on every step, and the Grams are an estimate from that share of the rows.
        seed: the draw of those steps.
        gamma, energy: the thresholds saved with the space (a request's arguments replace them).
        save_directory: where ``core_gradient_space/`` goes at the end of training (default: ``output_dir``,
            where ``trainer.save_model()`` writes the model). Checkpoints saved after collection carry it too.

    After training, ``space`` holds the space, ``collections`` how many times Grams were collected and
    ``collection_seconds`` the time spent on it (inside the hooks, the final pass, fingerprints), read from
    ``clock`` (wall time; a benchmark on a shared machine may set ``time.process_time``).
    """

    clock: Callable[[], float] = staticmethod(time.perf_counter)

    def __init__(
        self,
        mode: str = "final_pass",
        *,
        train_dataset=None,
        fingerprint_columns: Iterable[str] | None = None,
        include: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        batch_size: int = 64,
        precision: str = "float64",
        step_fraction: float = 1.0,
        seed: int = 0,
        gamma: float = DEFAULT_GAMMA,
        energy: str = DEFAULT_ENERGY,
        save_directory: str | os.PathLike | None = None,
        show_progress: bool = False,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not 0.0 < step_fraction <= 1.0:
            raise ValueError(f"step_fraction must lie in (0, 1], got {step_fraction}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if train_dataset is not None and not hasattr(train_dataset, "column_names"):
            raise TypeError("train_dataset must be a datasets.Dataset: its rows are fingerprinted for the ledger.")
        self.mode = mode
        self.train_dataset = train_dataset
        self.fingerprint_columns = list(fingerprint_columns) if fingerprint_columns else None
        self.include, self.exclude = include, exclude
        self.batch_size, self.precision, self.gamma, self.energy = batch_size, precision, gamma, energy
        self.step_fraction = step_fraction
        self._draw = random.Random(seed)
        self.save_directory = save_directory
        self.show_progress = show_progress
        self.space: CoreGradientSpace | None = None
        self.collections = 0
        self.collection_seconds = 0.0
        self._mode = mode  # this run's mode (last_epoch falls back to final_pass where it cannot be exact enough)
        self._collector: _TrainingForwardGrams | None = None
        self._dataloader = None

    # ------------------------------------------------------------------ the Trainer's events
    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        if is_peft_model(model):
            raise ValueError(
                "CoreGradientSpaceCallback does not collect the space of a PEFT model: merge the adapter after "
                "training (merge_and_unload), save the merged model, then build its space with "
                "`hf-unlearn cgs build` or CoreGradientSpace.from_model."
            )
        self._dataloader = train_dataloader
        data = self._rows()
        if not hasattr(data, "column_names"):
            raise TypeError(
                "CoreGradientSpaceCallback needs the training rows as a datasets.Dataset to fingerprint them for the "
                f"ledger; the Trainer's training set is a {type(data).__name__}. Pass train_dataset=<datasets.Dataset>."
            )
        self._mode = self.mode
        if self.mode == "last_epoch" and args.gradient_checkpointing:
            logger.warning("Gradient checkpointing recomputes forwards: the space is collected in a final pass.")
            self._mode = "final_pass"

    def on_epoch_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        if self._mode != "last_epoch" or self.space is not None or self._collector is not None:
            return
        steps = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
        if state.global_step + steps < state.max_steps:
            return  # not the last epoch
        padding = "counted" if getattr(getattr(model, "config", None), "is_encoder_decoder", False) else "masked"
        start = self.clock()
        self._collector = _TrainingForwardGrams(
            model, self._layers(model), padding, self.precision, self.clock
        ).__enter__()
        self.collection_seconds += self.clock() - start

    def on_step_begin(self, args, state, control, **kwargs):
        if self._collector is not None:
            self._collector.active = True
            self._collector.sampled = self.step_fraction == 1.0 or self._draw.random() < self.step_fraction

    def on_step_end(self, args, state, control, **kwargs):
        if self._collector is not None:
            self._collector.active = False

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if self._collector is not None:
            self._finish_last_epoch(args, state, model)
        elif self._mode == "final_pass" and self.space is None and (
            state.global_step >= state.max_steps or control.should_training_stop
        ):
            self._final_pass(args, state, model)  # before the last checkpoint is saved, so it carries the space

    def on_save(self, args, state, control, model=None, **kwargs):
        if self.space is not None and args.should_save and self._describes(model):
            folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            if os.path.isdir(folder):
                self.space.save_pretrained(os.path.join(folder, CGS_DIR))

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self._collector is not None:  # training stopped before the last epoch ended
            self._finish_last_epoch(args, state, model)
        if self.space is None or not self._describes(model):
            if self.space is not None:
                logger.warning(
                    "The weights at the end of training are not the ones the space was collected for (e.g. "
                    "load_best_model_at_end): collecting it again in a final pass."
                )
            self.space = None
            self._final_pass(args, state, model)
        if args.should_save:
            self.space.save_pretrained(os.path.join(self.save_directory or args.output_dir, CGS_DIR))

    # ------------------------------------------------------------------ collection
    def _rows(self):
        """The training rows: the dataset given, else the one the Trainer's dataloader reads."""
        if self.train_dataset is not None:
            return self.train_dataset
        return getattr(self._dataloader, "dataset", None)

    def _layers(self, model: nn.Module) -> dict[str, nn.Module]:
        return find_protectable_layers(model, include=self.include, exclude=self.exclude)

    def _describes(self, model: nn.Module) -> bool:
        """Whether the space was bound to exactly ``model``'s current weights and state."""
        current = model_fingerprint(model, self.space.layers)
        return current == self.space.model_fingerprint

    def _fingerprints(self) -> tuple[torch.Tensor, list[str]]:
        rows = self._rows()
        columns = self.fingerprint_columns or list(rows.column_names)
        return fingerprint_examples(rows.select_columns(columns), columns), columns

    def _final_pass(self, args, state, model: nn.Module) -> None:
        """``CoreGradientSpace.from_model`` on the final weights (each process its share of the rows)."""
        start = self.clock()
        rows = self._rows()
        model_rows = getattr(self._dataloader, "dataset", None)
        model_rows = model_rows if hasattr(model_rows, "column_names") else rows
        self.space = CoreGradientSpace.from_model(
            model,
            shard(model_rows, args.world_size, args.process_index),
            include=self.include,
            exclude=self.exclude,
            fingerprint_columns=self.fingerprint_columns,
            fingerprint_data=rows,
            batch_size=self.batch_size,
            gamma=self.gamma,
            energy=self.energy,
            show_progress=self.show_progress,
            collate_fn=getattr(self._dataloader, "collate_fn", None),
        )
        self.space.provenance = {"collected": "final_pass", "global_step": state.global_step}
        self.collections += 1
        self.collection_seconds += self.clock() - start

    def _finish_last_epoch(self, args, state, model: nn.Module) -> None:
        """Close the hooks; the space, if the epoch saw every row once, else a final pass."""
        start = self.clock()
        collector, self._collector = self._collector, None
        collector.active = False
        collector.all_reduce()
        collector.__exit__(None, None, None)
        self.collection_seconds += collector.seconds
        device = next(iter(collector.grams.values())).device
        seen, added = _summed(collector.num_examples, device), _summed(collector.sampled_examples, device)
        expected = len(self._rows())
        self.collections += 1
        self.collection_seconds += self.clock() - start
        if seen != expected or added == 0:
            logger.warning(
                "The last epoch saw %d training rows, not the %d of the training set (max_steps inside an epoch, or "
                "rows repeated to even out processes), or none of its steps was drawn: the space is collected in a "
                "final pass instead.",
                seen,
                expected,
            )
            self._final_pass(args, state, model)
            return
        start = self.clock()
        if added < seen:  # a share of the steps was added: scaled up to the whole epoch
            for gram in collector.grams.values():
                gram.mul_(seen / added)
        fingerprints, columns = self._fingerprints()
        layers = {name: layer_info(module) for name, module in collector.layers.items()}
        self.space = CoreGradientSpace(
            {name: gram.cpu() for name, gram in collector.grams.items()},
            layers,
            seen,
            gamma=self.gamma,
            energy=self.energy,
            model_fingerprint=model_fingerprint(model, layers),
            train_fingerprints=fingerprints,
            fingerprint_columns=columns,
            padding=collector.padding,
            provenance={"collected": "last_epoch", "epoch": math.ceil(state.epoch), "global_step": state.global_step,
                        "precision": self.precision, "step_fraction": self.step_fraction},
        )
        self.collection_seconds += self.clock() - start


def _summed(count: int, device: torch.device) -> int:
    """``count`` summed over all processes."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return count
    total = torch.tensor([count], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return int(total.item())


__all__ = ["CoreGradientSpaceCallback"]
