"""``UnlearningTrainer``: a ``transformers.Trainer`` whose training set is the forget set.

It keeps the Trainer's loop, Accelerate, logging, checkpoints and ``push_to_hub`` and adds what
unlearning needs: two-stream batches, the method's loss, the Core Gradient Space (built or loaded,
the forget set subtracted before any weight moves), projection of every applied update, the
forget/retain/test accuracies as evaluation, and the stop rules. Every check of the inputs runs
before the first optimizer step, so a refused request leaves the model untouched.
"""

from __future__ import annotations

import logging
import os
import time

import torch
from torch import nn
from transformers import DataCollatorWithPadding, IntervalStrategy, Trainer, default_data_collator

from .arguments import UnlearningArguments
from .callbacks import StepHooksCallback, resolve_stop_rule
from .control import ControlSettings, RunOutcome, UnlearningControl
from .core import CGSMismatchError, CoreGradientSpace, fingerprint_examples
from .data.columns import keep_model_columns, label_array
from .data.memory import materialize
from .data.requests import check_label_range, detect_scenario
from .data.streams import ForgetRetainDataset, TwoStreamCollator
from .evaluation.predict import collect_outputs
from .gc_utils import frozen_heap
from .hub import UnlearningCardData, write_model_card
from .methods import get_method
from .protection import (
    CGS_DIR,
    SpaceProtection,
    SpaceSettings,
    batch_norms_in_eval_mode,
    check_membership,
    freeze_parameters,
)

logger = logging.getLogger(__name__)


class UnlearningTrainer(Trainer):
    """Unlearn ``forget_dataset`` from ``model`` with ``args.method`` (PGU by default).

    Args:
        forget_dataset: the examples to forget (a ``datasets.Dataset`` with a label column).
        retain_dataset: examples to keep; needed by methods with a retain loss, and used for the
            retain accuracy logged during training and to tell class removal from sample removal.
        original_dataset: the full training set (forget + retain). Builds the Core Gradient Space when
            none is given and proves the forget examples were trained on.
        core_gradient_space: a cached space (``CoreGradientSpace.from_pretrained``); checked against
            the model before use.
        eval_dataset: held-out data; its accuracy drives the default stop rule.
    """

    loss_is_scaled_for_ga = False  # our losses are per-micro-batch means

    def __init__(
        self,
        model: nn.Module,
        args: UnlearningArguments,
        forget_dataset,
        retain_dataset=None,
        eval_dataset=None,
        original_dataset=None,
        core_gradient_space: CoreGradientSpace | None = None,
        data_collator=None,
        processing_class=None,
        callbacks=None,
        **kwargs,
    ):
        if not isinstance(args, UnlearningArguments):
            raise TypeError("UnlearningTrainer needs UnlearningArguments (a TrainingArguments subclass).")
        self.method = get_method(args.method)(args.method_config, seed=args.seed)
        if forget_dataset is None or len(forget_dataset) == 0:
            raise ValueError("The forget set is empty: there is nothing to unlearn.")
        if self.method.needs_retain and (retain_dataset is None or len(retain_dataset) == 0):
            raise ValueError(f"Method {args.method!r} needs a retain set: pass retain_dataset=...")
        self.raw_forget_dataset = forget_dataset
        self.original_dataset = original_dataset
        self._given_space = core_gradient_space
        if data_collator is None:
            data_collator = (
                DataCollatorWithPadding(processing_class) if hasattr(processing_class, "pad") else default_data_collator
            )
        self.base_collator = data_collator
        self.protection: SpaceProtection | None = None
        if self.method.uses_projection:
            self.protection = SpaceProtection(
                SpaceSettings(
                    gamma=args.gamma,
                    energy=args.gamma_energy,
                    protect_layers=args.protect_layers,
                    exclude_layers=args.exclude_layers,
                    batch_size=args.cgs_batch_size,
                    show_progress=not args.disable_tqdm and args.process_index == 0,
                ),
                space=core_gradient_space,
                original_dataset=original_dataset,
                collate_fn=data_collator,
                world_size=args.world_size,
                process_index=args.process_index,
            )
        self.forget_dataset = keep_model_columns(model, forget_dataset)
        self.retain_dataset = keep_model_columns(model, retain_dataset)
        check_label_range(model, forget=self.forget_dataset, retain=self.retain_dataset)
        self.scenario = detect_scenario(args.scenario, self.forget_dataset, self.retain_dataset)
        self._in_memory: dict[int, tuple] = {}
        streams = ForgetRetainDataset(
            self._memory(self.forget_dataset),
            self._memory(self.retain_dataset) if self.method.needs_retain else None,
            seed=args.seed,
        )
        if eval_dataset is None and args.eval_strategy != IntervalStrategy.NO:
            logger.warning("No eval_dataset: per-epoch evaluation and the stop rule are off (eval_strategy='no').")
            args.eval_strategy = IntervalStrategy.NO  # the Trainer refuses evaluation without an eval set
        self.control_callback = UnlearningControl(ControlSettings(), measure=self.control_metrics, log=self.log)
        step_hooks = StepHooksCallback(
            before=[lambda: self.method.before_optimizer_step(self, self.model), self._snapshot],
            after=[self._project, lambda: self.method.after_optimizer_step(self, self.model)],
        )
        super().__init__(
            model=model,
            args=args,
            train_dataset=streams,
            eval_dataset=keep_model_columns(model, eval_dataset),
            data_collator=TwoStreamCollator(data_collator),
            processing_class=processing_class,
            callbacks=[*(callbacks or []), step_hooks, self.control_callback],
            **kwargs,
        )
        self.unlearning_seconds: float | None = None
        self.comparison: dict[str, dict[str, float]] | None = None  # metrics per model, e.g. beside "retrain"
        self._prepared = False
        self._retain_sample = None
        self._control_samples: dict[str, object] = {}
        self.outcome: RunOutcome | None = None

    @property
    def core_gradient_space(self) -> CoreGradientSpace | None:
        """The space this run protects (with the request subtracted once prepared), or the one given."""
        if self.protection is not None and self.protection.space is not None:
            return self.protection.space
        return self._given_space

    @property
    def projection(self):
        return self.protection.projection if self.protection is not None else None

    def _snapshot(self) -> None:
        if self.protection is not None:
            self.protection.snapshot()

    def _project(self) -> None:
        if self.protection is not None:
            self.protection.project()

    # ------------------------------------------------------------------ input checks
    @property
    def forgotten_classes(self) -> list[int]:
        if self.scenario != "class":
            return []
        return sorted(set(label_array(self.forget_dataset).tolist()))

    # ------------------------------------------------------------------ before the first step
    def prepare_unlearning(self, resume_from_checkpoint: str | None = None) -> None:
        """Every check and the space's update, before any weight changes (idempotent)."""
        if self._prepared:
            return
        model = self.accelerator.unwrap_model(self.model)
        args = self.args
        if self.protection is not None:  # the space's ledger checks membership
            original = keep_model_columns(model, self.original_dataset) if self.original_dataset is not None else None
            self.protection.prepare(
                model,
                forget_model_inputs=self.forget_dataset if args.world_size > 1 else self._memory(self.forget_dataset),
                forget_dataset=self.raw_forget_dataset,
                original_model_inputs=original,
                note=f"{args.method}: {len(self.raw_forget_dataset)} examples",
                resume_from_checkpoint=resume_from_checkpoint,
            )
            self.protection.freeze(
                model,
                freeze_bias_and_norm=args.freeze_bias_and_norm,
                train_unprotected=args.train_unprotected or self.method.trains_unprotected,
            )
        else:
            if self.original_dataset is not None:
                columns = list(self.original_dataset.column_names)
                fingerprints = fingerprint_examples(self.original_dataset, columns)
                check_membership(fingerprints, self.raw_forget_dataset, columns)
            freeze_parameters(
                model, protected_layers=None, freeze_bias_and_norm=args.freeze_bias_and_norm, train_unprotected=True
            )
        self.method.setup(self)
        self._prepared = True

    # ------------------------------------------------------------------ Trainer overrides
    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        if resume_from_checkpoint is True:
            from transformers.trainer_utils import get_last_checkpoint

            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
        start = time.perf_counter()
        args = self.args
        self.control_callback.settings = ControlSettings(
            rule=resolve_stop_rule(args.stop_rule, self.scenario, self.eval_dataset is not None),
            check_every=args.check_every_steps,
            tolerance=args.utility_tolerance,
            max_backtracks=args.max_backtracks,
            class_forget_target=args.class_forget_target,
            class_probability=args.class_forget_probability,
        )
        self.prepare_unlearning(resume_from_checkpoint)
        with frozen_heap():
            output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        self.unlearning_seconds = time.perf_counter() - start
        self.outcome = self.control_callback.outcome
        if self.protection is not None:
            if self.outcome.unlearned:
                self.protection.bind(self.accelerator.unwrap_model(self.model))
            else:
                self.protection.revert()  # the request was not carried out: the ledger must not say it was
        output.metrics.update({"unlearned": self.outcome.unlearned, "unlearning_outcome": self.outcome.reason})
        return output

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "forget" not in inputs:  # a plain batch (e.g. Trainer.predict): the model's own loss
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.args.freeze_bias_and_norm:
            batch_norms_in_eval_mode(model)
        loss = self.method.compute_loss(self, model, inputs)
        return (loss, None) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs = {**logs, **self.method.logs()}
        super().log(logs, start_time)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """The model, its space (with the ledger) and the model card travel together."""
        super()._save(output_dir, state_dict)
        if not self.args.should_save:
            return
        output_dir = output_dir or self.args.output_dir
        if self.core_gradient_space is not None:
            self.core_gradient_space.save_pretrained(os.path.join(output_dir, CGS_DIR))
        write_model_card(self.card_data(), output_dir)

    def create_model_card(self, model_name: str | None = None, tags=None, **kwargs) -> None:
        """An honest card: what was forgotten, how, and (when measured) how close to retraining."""
        if self.is_world_process_zero():
            write_model_card(self.card_data(model_name, tags), self.args.output_dir)

    def card_data(self, model_name: str | None = None, tags=None) -> UnlearningCardData:
        """What this run did, as values for the model card."""
        args = self.args
        config = getattr(self.model, "config", None)
        paper = args.method_config.paper
        space = self.core_gradient_space
        return UnlearningCardData(
            model_name=model_name or os.path.basename(os.path.normpath(args.output_dir)),
            base_model=getattr(config, "_name_or_path", "") or type(self.model).__name__,
            method=args.method,
            scenario=self.scenario,
            forget_count=len(self.forget_dataset),
            optim=getattr(args.optim, "value", args.optim),
            learning_rate=args.learning_rate,
            epochs=args.num_train_epochs,
            stop_rule=args.stop_rule,
            stopped_epoch=self.state.epoch,
            method_config=args.method_config.to_dict(),
            paper_title=paper.title if paper else None,
            paper_url=paper.url if paper else None,
            paper_bibtex=paper.bibtex if paper else None,
            projection=f"gamma={args.gamma}, energy `{args.gamma_energy}`" if self.method.uses_projection else None,
            ledger=list(space.ledger) if self.protection is not None and space is not None else [],
            seconds=self.unlearning_seconds,
            comparison=self.comparison,
            tags=list(tags or []) if not isinstance(tags, str) else [tags],
            unlearned=self.outcome.unlearned if self.outcome else None,
            outcome=self.outcome.reason if self.outcome else "",
            backtracks=self.outcome.backtracks if self.outcome else 0,
        )

    # ------------------------------------------------------------------ evaluation
    def _memory(self, dataset):
        """The dataset read once into memory when small (see data/memory.py), shared by every pass over it."""
        if dataset is None:
            return None
        key = id(dataset)
        if key not in self._in_memory:
            self._in_memory[key] = (dataset, materialize(dataset))  # keep the original alive: ids stay unique
        return self._in_memory[key][1]

    def _correct(self, dataset) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example correctness and labels, from one batched pass."""
        out = collect_outputs(
            self.accelerator.unwrap_model(self.model),
            self._memory(dataset),
            collate_fn=self.base_collator,
            batch_size=max(256, self.args.per_device_eval_batch_size),
            device=self.args.device,
        )
        return out["logits"].argmax(-1) == out["labels"], out["labels"]

    @staticmethod
    def _percent(correct: torch.Tensor) -> float:
        return 100.0 * correct.float().mean().item() if correct.numel() else float("nan")

    def _sample(self, name: str, dataset, size: int):
        """A fixed random sample of ``dataset`` (the same examples at every check)."""
        if name not in self._control_samples:
            if dataset is not None and len(dataset) > size:
                dataset = dataset.shuffle(seed=self.args.seed).select(range(size))
            self._control_samples[name] = dataset
        return self._control_samples[name]

    def _outputs(self, dataset) -> dict[str, torch.Tensor]:
        return collect_outputs(
            self.accelerator.unwrap_model(self.model),
            self._memory(dataset),
            collate_fn=self.base_collator,
            batch_size=max(256, self.args.per_device_eval_batch_size),
            device=self.args.device,
        )

    def control_metrics(self) -> dict[str, float]:
        """What the guard and stop rules read: accuracies (%) on small cached samples, one pass each.

        ``forget_probability`` is the mean probability of the true label on the forget sample: for a
        removed class, how much the model still believes in it.
        """
        size = self.args.control_samples
        out = self._outputs(self._sample("forget", self.forget_dataset, size))
        p_true = out["logits"].softmax(-1).gather(1, out["labels"][:, None]).squeeze(1)
        metrics = {
            "forget_accuracy": self._percent(out["logits"].argmax(-1) == out["labels"]),
            "forget_probability": float(p_true.mean()),
        }
        retain = self._sample("retain", self.retain_dataset, self.args.eval_retain_samples)
        if retain is not None and len(retain) and self.args.eval_retain_samples > 0:
            out = self._outputs(retain)
            metrics["retain_accuracy"] = self._percent(out["logits"].argmax(-1) == out["labels"])
            metrics["retain_accuracy_count"] = len(retain)
        validation = self._sample("validation", self.eval_dataset, size)
        if validation is not None and len(validation):
            out = self._outputs(validation)
            correct = out["logits"].argmax(-1) == out["labels"]
            metrics["validation_accuracy"] = self._percent(correct)
            metrics["validation_accuracy_count"] = len(validation)
            if self.scenario == "class":
                kept = ~torch.isin(out["labels"], torch.tensor(self.forgotten_classes))
                metrics["validation_accuracy_kept"] = self._percent(correct[kept])
                metrics["validation_accuracy_kept_count"] = int(kept.sum())
        return metrics

    def unlearning_metrics(self, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Accuracy (%) on the forget set, a retain sample and the eval set (kept classes in class mode)."""
        metrics = {f"{metric_key_prefix}_forget_accuracy": self._percent(self._correct(self.forget_dataset)[0])}
        if self.retain_dataset is not None and self.args.eval_retain_samples > 0:
            if self._retain_sample is None:
                retain = self.retain_dataset
                if len(retain) > self.args.eval_retain_samples:
                    retain = retain.shuffle(seed=self.args.seed).select(range(self.args.eval_retain_samples))
                self._retain_sample = retain
            metrics[f"{metric_key_prefix}_retain_accuracy"] = self._percent(self._correct(self._retain_sample)[0])
        if self.eval_dataset is not None:
            correct, labels = self._correct(self.eval_dataset)
            metrics[f"{metric_key_prefix}_test_accuracy"] = self._percent(correct)
            if self.scenario == "class":
                kept = ~torch.isin(labels, torch.tensor(self.forgotten_classes))
                metrics[f"{metric_key_prefix}_test_accuracy_kept_classes"] = self._percent(correct[kept])
        return metrics

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        if eval_dataset is not None:
            self.eval_dataset = keep_model_columns(self.model, eval_dataset)
        metrics = self.unlearning_metrics(metric_key_prefix)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


__all__ = ["CGSMismatchError", "UnlearningTrainer"]
