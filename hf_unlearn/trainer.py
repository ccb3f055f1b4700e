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
from .callbacks import StepHooksCallback, StopRuleCallback
from .core import (
    CGSMismatchError,
    CoreGradientSpace,
    collect_gram_matrices,
    fingerprint_examples,
    model_fingerprint,
)
from .data.columns import keep_model_columns, label_array
from .data.memory import materialize
from .data.streams import ForgetRetainDataset, TwoStreamCollator
from .evaluation.predict import collect_outputs
from .gc_utils import frozen_heap
from .methods import get_method
from .peft_support import PeftTargets, is_peft_model, peft_targets
from .protection import ProjectedUpdates

logger = logging.getLogger(__name__)
CGS_DIR = "core_gradient_space"
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


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
        self.method = get_method(args.method)(args)
        if forget_dataset is None or len(forget_dataset) == 0:
            raise ValueError("The forget set is empty: there is nothing to unlearn.")
        if self.method.needs_retain and (retain_dataset is None or len(retain_dataset) == 0):
            raise ValueError(f"Method {args.method!r} needs a retain set: pass retain_dataset=...")
        self.raw_forget_dataset = forget_dataset
        self.core_gradient_space = core_gradient_space
        self.original_dataset = original_dataset
        if self.method.uses_projection and core_gradient_space is None and original_dataset is None:
            raise ValueError(
                f"Method {args.method!r} projects updates away from the Core Gradient Space: pass "
                "core_gradient_space=CoreGradientSpace.from_pretrained(...) or original_dataset=<training set>."
            )
        self.forget_dataset = keep_model_columns(model, forget_dataset)
        self.retain_dataset = keep_model_columns(model, retain_dataset)
        self._check_labels(model)
        self.scenario = self._detect_scenario(args)
        if data_collator is None:
            data_collator = (
                DataCollatorWithPadding(processing_class) if hasattr(processing_class, "pad") else default_data_collator
            )
        self.base_collator = data_collator
        self._in_memory: dict[int, tuple] = {}
        streams = ForgetRetainDataset(
            self._memory(self.forget_dataset),
            self._memory(self.retain_dataset) if self.method.needs_retain else None,
            seed=args.seed,
        )
        if eval_dataset is None and args.eval_strategy != IntervalStrategy.NO:
            logger.warning("No eval_dataset: per-epoch evaluation and the stop rule are off (eval_strategy='no').")
            args.eval_strategy = IntervalStrategy.NO  # the Trainer refuses evaluation without an eval set
        callbacks = [*(callbacks or []), StepHooksCallback(self), StopRuleCallback(self)]
        super().__init__(
            model=model,
            args=args,
            train_dataset=streams,
            eval_dataset=keep_model_columns(model, eval_dataset),
            data_collator=TwoStreamCollator(data_collator),
            processing_class=processing_class,
            callbacks=callbacks,
            **kwargs,
        )
        self.projection: ProjectedUpdates | None = None
        self.unlearning_seconds: float | None = None
        self.comparison: dict[str, dict[str, float]] | None = None  # metrics per model, e.g. beside "retrain"
        self._prepared = False
        self._original_fps: torch.Tensor | None = None
        self._peft: PeftTargets | None = None  # LoRA weights to project, when the model is a PEFT model
        self._retain_sample = None

    # ------------------------------------------------------------------ input checks
    def _check_labels(self, model: nn.Module) -> None:
        num_labels = getattr(getattr(model, "config", None), "num_labels", None)
        for name, dataset in (("forget", self.forget_dataset), ("retain", self.retain_dataset)):
            if dataset is None or num_labels is None:
                continue
            labels = label_array(dataset)
            if labels.size and (labels.min() < 0 or labels.max() >= num_labels):
                raise ValueError(
                    f"The {name} set has labels in [{int(labels.min())}, {int(labels.max())}] but the model has "
                    f"{num_labels} labels: these examples cannot come from this model's training data."
                )

    def _detect_scenario(self, args: UnlearningArguments) -> str:
        if args.scenario != "auto":
            return args.scenario
        if self.retain_dataset is None:
            return "samples"
        forget_labels = set(label_array(self.forget_dataset).tolist())
        retain_labels = set(label_array(self.retain_dataset).tolist())
        return "class" if not forget_labels & retain_labels else "samples"

    @property
    def forgotten_classes(self) -> list[int]:
        if self.scenario != "class":
            return []
        return sorted(set(label_array(self.forget_dataset).tolist()))

    # ------------------------------------------------------------------ the space
    def _shard(self, dataset):
        """This process's contiguous share, so statistics summed across processes count each row once."""
        world = self.args.world_size
        return dataset if world == 1 else dataset.shard(world, self.args.process_index, contiguous=True)

    def _original_fingerprints(self) -> torch.Tensor:
        if self._original_fps is None:
            self._original_fps = fingerprint_examples(self.original_dataset, self.original_dataset.column_names)
        return self._original_fps

    def _build_space(self) -> CoreGradientSpace:
        logger.info("Building the Core Gradient Space from %d training examples", len(self.original_dataset))
        stats = collect_gram_matrices(
            self.model,
            self._shard(keep_model_columns(self.model, self.original_dataset)),
            include=self.args.protect_layers,
            exclude=self.args.exclude_layers,
            batch_size=self.args.cgs_batch_size,
            collate_fn=self.base_collator,
            show_progress=not self.args.disable_tqdm and self.is_local_process_zero(),
        )
        return CoreGradientSpace(
            stats.grams,
            stats.layers,
            stats.num_examples,
            gamma=self.args.gamma,
            energy=self.args.gamma_energy,
            model_fingerprint=model_fingerprint(self.model, stats.layers),
            train_fingerprints=self._original_fingerprints(),
            fingerprint_columns=self.original_dataset.column_names,
        )

    def _forget_fingerprints(self, columns: list[str], source: str) -> torch.Tensor:
        """Fingerprints of the forget examples on the columns ``source`` identifies examples by."""
        missing = [c for c in columns if c not in self.raw_forget_dataset.column_names]
        if missing:
            raise ValueError(
                f"{source} identifies examples by columns {columns}; the forget set lacks {missing}. "
                "Select the forget set from the same dataset."
            )
        return fingerprint_examples(self.raw_forget_dataset.select_columns(columns), columns)

    def prepare_unlearning(self, resume_from_checkpoint: str | None = None) -> None:
        """Every check and the space's update, before any weight changes (idempotent)."""
        if self._prepared:
            return
        unwrapped = self.accelerator.unwrap_model(self.model)
        if self.method.uses_projection:
            self._prepare_space(unwrapped, resume_from_checkpoint)  # the space's ledger checks membership
        elif self.original_dataset is not None:
            self._check_membership()
        self._freeze_parameters(unwrapped)
        self.method.setup(self)
        self._prepared = True

    def _check_membership(self) -> None:
        known = set(self._original_fingerprints().tolist())
        forget = self._forget_fingerprints(list(self.original_dataset.column_names), "original_dataset").tolist()
        unknown = sum(fp not in known for fp in forget)
        if unknown:
            raise ValueError(
                f"{unknown} of {len(forget)} forget examples are not in original_dataset: "
                "only examples the model was trained on can be forgotten."
            )

    def _protected_modules(self, model: nn.Module, space: CoreGradientSpace) -> dict[str, nn.Module]:
        """The module holding each protected layer's weight and inputs (``base_layer`` under PEFT)."""
        if is_peft_model(model):
            self._peft = peft_targets(model, space.layers)
            return self._peft.stats_modules
        modules = dict(model.named_modules())
        return {n: modules[n] for n in space.layers if n in modules}

    def _prepare_space(self, model: nn.Module, resume_from_checkpoint: str | None) -> None:
        saved = os.path.join(resume_from_checkpoint, CGS_DIR) if resume_from_checkpoint else None
        if saved and os.path.isdir(saved):
            # the checkpoint's space already has this request subtracted; its weights moved on purpose
            space = CoreGradientSpace.from_pretrained(saved)
            space.check_model(model, check_weights=False, modules=self._protected_modules(model, space))
            self.core_gradient_space = space
        else:
            if self.core_gradient_space is None:
                self.core_gradient_space = self._build_space()
            space = self.core_gradient_space
            modules = self._protected_modules(model, space)
            space.check_model(model, modules=modules)
            columns = space.fingerprint_columns or list(self.raw_forget_dataset.column_names)
            fingerprints = self._forget_fingerprints(columns, "The cache")
            space.check_request(fingerprints)
            forget = self.forget_dataset if self.args.world_size > 1 else self._memory(self.forget_dataset)
            forget_stats = collect_gram_matrices(
                model,
                self._shard(forget),
                layers=modules,
                batch_size=self.args.cgs_batch_size,
                collate_fn=self.base_collator,
                show_progress=False,
            )
            space.subtract(forget_stats, fingerprints, note=f"{self.args.method}: {len(fingerprints)} examples")
        space.set_threshold(self.args.gamma, self.args.gamma_energy)  # the run's arguments decide
        if self._peft is not None:
            self.projection = ProjectedUpdates(space.projectors(), self._peft.updates)
            self.projection.project_weights([k for k in self._peft.updates if "#lora_A." in k])
        else:
            self.projection = ProjectedUpdates.for_layers(model, space.projectors())

    def _freeze_parameters(self, model: nn.Module) -> None:
        """Freeze biases/norms (default) and, for projection methods, what the space cannot protect."""
        if self._peft is not None:
            return self._freeze_peft_parameters(model)
        protected = set(self.core_gradient_space.layers) if self.method.uses_projection else None
        frozen = 0
        for module_name, module in model.named_modules():
            for param_name, param in module.named_parameters(recurse=False):
                is_norm = isinstance(module, _NORM_TYPES)
                is_bias = param_name == "bias"
                outside = (
                    protected is not None
                    and not (module_name in protected and param_name == "weight")
                    and not (is_bias or is_norm)
                )
                if (self.args.freeze_bias_and_norm and (is_bias or is_norm)) or (
                    outside and not (self.args.train_unprotected or self.method.trains_unprotected)
                ):
                    if param.requires_grad:
                        param.requires_grad_(False)
                        frozen += 1
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError("Every parameter is frozen: nothing can be unlearned. Check protect_layers.")
        logger.info("Froze %d parameter tensors", frozen)

    def _freeze_peft_parameters(self, model: nn.Module) -> None:
        """Under PEFT only projected LoRA A / modules_to_save weights and their LoRA B partners move."""
        allowed = {id(w) for _, w, _ in self._peft.updates.values()} | {id(b) for b in self._peft.free}
        for name, param in model.named_parameters():
            outside = id(param) not in allowed and not (self.args.train_unprotected or self.method.trains_unprotected)
            if param.requires_grad and (outside or (self.args.freeze_bias_and_norm and name.endswith("bias"))):
                param.requires_grad_(False)
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError("No LoRA weight of the PEFT model lies in a protected layer: nothing can be unlearned.")

    def _norms_in_eval_mode(self, model: nn.Module) -> None:
        if self.args.freeze_bias_and_norm:
            for module in model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()  # running statistics are part of what the model knows

    # ------------------------------------------------------------------ Trainer overrides
    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        if resume_from_checkpoint is True:
            from transformers.trainer_utils import get_last_checkpoint

            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
        start = time.perf_counter()
        self.prepare_unlearning(resume_from_checkpoint)
        with frozen_heap():
            output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        self.unlearning_seconds = time.perf_counter() - start
        if self.core_gradient_space is not None:
            unwrapped = self.accelerator.unwrap_model(self.model)
            modules = self._peft.stats_modules if self._peft is not None else None
            self.core_gradient_space.bind_model(unwrapped, modules)
        return output

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "forget" not in inputs:  # a plain batch (e.g. Trainer.predict): the model's own loss
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        self._norms_in_eval_mode(model)
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
        from .hub import write_model_card

        write_model_card(self, output_dir)

    def create_model_card(self, model_name: str | None = None, tags=None, **kwargs) -> None:
        """An honest card: what was forgotten, how, and (when measured) how close to retraining."""
        if self.is_world_process_zero():
            from .hub import write_model_card

            write_model_card(self, model_name=model_name, tags=tags)

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
