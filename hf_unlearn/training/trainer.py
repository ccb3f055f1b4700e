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
from transformers import IntervalStrategy, Trainer
from transformers.trainer_utils import TrainOutput

from ..control.controller import ControlSettings, RunOutcome, UnlearningControl
from ..control.progress import RuleProgress
from ..core import CGSMismatchError, CoreGradientSpace
from ..core.errors import refuse_frozen_model, refuse_meta_weights
from ..data.causal_lm import is_causal_lm, prepare_causal_lm_sets
from ..data.checks import check_model_inputs, check_request_inputs
from ..data.columns import keep_model_columns, label_array
from ..data.requests import check_label_range, detect_scenario
from ..data.streams import ForgetRetainDataset, TwoStreamCollator, collator_for
from ..data.text_lengths import check_token_rows
from ..methods import get_method
from ..protection import (
    SpaceProtection,
    SpaceSettings,
    batch_norms_in_eval_mode,
    check_unprojected_request,
    freeze_parameters,
    space_saved_with,
)
from ..utils.heap import frozen_heap
from . import checkpoints
from .arguments import UnlearningArguments
from .checkpoints import check_resume, request_digest, resolve_resume, write_checkpoint_extras
from .engines import must_project_gradients
from .kept_repair import repair_kept_examples, wants_repair
from .measurements import UnlearningMeasurements, weights_summary
from .neighbour_target import retain_neighbours, sample_removal_targets
from .publishing import UnlearningPublishing
from .step_hooks import StepHooksCallback

logger = logging.getLogger(__name__)


class UnlearningTrainer(UnlearningMeasurements, UnlearningPublishing, Trainer):
    """Unlearn ``forget_dataset`` from ``model`` with ``args.method`` (PGU by default).

    Args:
        forget_dataset: the examples to forget (a ``datasets.Dataset`` with a label column).
        retain_dataset: examples to keep; needed by methods with a retain loss, and used for the
            retain accuracy logged during training and to tell class removal from sample removal.
        original_dataset: the full training set (forget + retain). Builds the Core Gradient Space when
            none is given and proves the forget examples were trained on.
        baseline_model: for one of a series of requests, the model before the first: the utility guard
            and the sample-removal target compare with it, so losses cannot add up over requests.
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
        baseline_model: nn.Module | None = None,
        processing_class=None,
        callbacks=None,
        **kwargs,
    ):
        if not isinstance(args, UnlearningArguments):
            raise TypeError("UnlearningTrainer needs UnlearningArguments (a TrainingArguments subclass).")
        args.resolve_default_path(has_retain=retain_dataset is not None and len(retain_dataset) > 0)
        self.method = get_method(args.method)(args.method_config, seed=args.seed)
        if core_gradient_space is None and (saved := space_saved_with(model)) is not None:
            core_gradient_space = saved[0]  # an unlearned model's folder carries its space and ledger
        raw = {"forget": forget_dataset, "retain": retain_dataset, "eval": eval_dataset, "original": original_dataset}
        self._check_request(model, args, raw, core_gradient_space)
        self.raw_forget_dataset = forget_dataset
        self.baseline_model = baseline_model
        self.original_dataset = original_dataset
        self._given_space = core_gradient_space
        self.causal_lm = is_causal_lm(model)
        sets, data_collator = self._model_input_sets(args, raw, core_gradient_space, processing_class, data_collator)
        self.original_model_inputs = sets["original"]  # what the space is built from (tokenised for an LM)
        self.base_collator = data_collator
        self.protection = _space_protection(self.method, args, core_gradient_space, original_dataset, data_collator)
        model_eval = self._keep_model_columns(model, sets)
        scenario = "samples" if self.causal_lm and args.scenario == "auto" else args.scenario
        self.scenario = detect_scenario(scenario, self.forget_dataset, self.retain_dataset)
        self._init_measurements()
        if eval_dataset is None and args.eval_strategy != IntervalStrategy.NO:
            logger.warning("No eval_dataset: per-epoch evaluation and the stop rule are off (eval_strategy='no').")
            args.eval_strategy = IntervalStrategy.NO  # the Trainer refuses evaluation without an eval set
        self.control_callback = UnlearningControl(
            ControlSettings(), measure=self.control_metrics, log=self.log,
            closer_look=self.guard_closer_look if args.utility_tolerance > 0 else None,
        )
        super().__init__(
            model=model,
            args=args,
            train_dataset=self._streams(args.seed),
            eval_dataset=model_eval,
            data_collator=TwoStreamCollator(data_collator),
            processing_class=processing_class,
            callbacks=[*(callbacks or []), self._step_hooks(), self.control_callback,
                       RuleProgress(self.control_callback, self._progress_bar)],
            **kwargs,
        )
        self.unlearning_seconds: float | None = None
        self.comparison: dict[str, dict[str, float]] | None = None  # metrics per model, e.g. beside "retrain"
        self.comparison_reference = ""  # how the "retrain" model of the comparison was made
        self._prepared = False
        self.outcome: RunOutcome | None = None

    # ------------------------------------------------------------------ the steps of __init__
    def _check_request(self, model: nn.Module, args: UnlearningArguments, raw: dict, space) -> None:
        """Every check of the raw rows, before any is tokenised or trimmed to the model's columns."""
        refuse_meta_weights(model)  # weights never loaded: the Trainer's move to the device would fail raw
        refuse_frozen_model(model)  # a merged LoRA model: every weight requires_grad=False
        if not is_causal_lm(model):  # first: names ("spam") in the label column would surface as another error below
            check_label_range(model, forget=raw["forget"], retain=raw["retain"], eval=raw["eval"])
        check_request_inputs(
            forget=raw["forget"],
            retain=raw["retain"],
            eval_dataset=raw["eval"],
            original_dataset=raw["original"],
            space=space,
        )
        retain = raw["retain"]
        if self.method.needs_retain and (retain is None or len(retain) == 0):
            raise ValueError(f"Method {args.method!r} needs a retain set: pass retain_dataset=...")

    def _model_input_sets(self, args, raw: dict, space, processing_class, data_collator) -> tuple[dict, object]:
        """The sets as the model reads them, and the collator of one stream. A causal LM's texts become token ids
        and labels (every check ran on the raw rows); its training set is tokenised only when it builds the space."""
        if self.causal_lm:
            builds_space = self.method.uses_projection and space is None
            sets, data_collator = prepare_causal_lm_sets(
                self.method, args, processing_class, data_collator, forget=raw["forget"], retain=raw["retain"],
                eval=raw["eval"], original=raw["original"] if builds_space else None,
            )
        else:
            sets = dict(raw)
        return sets, data_collator if data_collator is not None else collator_for(processing_class)

    def _keep_model_columns(self, model: nn.Module, sets: dict):
        """Forget and retain cut to the model's inputs (refused when none is left, or too long); returns eval's cut."""
        self.forget_dataset = keep_model_columns(model, sets["forget"])
        self.retain_dataset = keep_model_columns(model, sets["retain"])
        model_eval = keep_model_columns(model, sets["eval"])
        check_model_inputs(
            forget=(self.forget_dataset, sets["forget"].column_names),
            retain=(self.retain_dataset, getattr(sets["retain"], "column_names", [])),
            eval=(model_eval, getattr(sets["eval"], "column_names", [])),
        )
        check_token_rows(model, self.base_collator, forget=self.forget_dataset, retain=self.retain_dataset,
                         eval=model_eval, original=sets["original"])
        return model_eval

    def _progress_bar(self):
        """The Trainer's training bar (None with ``disable_tqdm`` or before training starts)."""
        bars = (getattr(c, "training_bar", None) for c in self.callback_handler.callbacks)
        return next((bar for bar in bars if bar is not None), None)

    def _streams(self, seed: int) -> ForgetRetainDataset:
        """Every forget example paired with a random retain example (retain only for methods that read it)."""
        retain = self._memory(self.retain_dataset) if self.method.needs_retain else None
        return ForgetRetainDataset(self._memory(self.forget_dataset), retain, seed=seed)

    def _step_hooks(self) -> StepHooksCallback:
        """The method's hooks around every optimizer step, and the projection's when the space protects the run."""
        before = [lambda: self.method.before_optimizer_step(self, self.model)]
        after = [lambda: self.method.after_optimizer_step(self, self.model)]
        if self.protection is None:
            return StepHooksCallback(before=before, after=after)
        protection = self.protection
        return StepHooksCallback(
            before=[*before, lambda: protection.snapshot(self.optimizer)], after=[protection.project, *after],
            begin=[protection.begin_step],
        )

    @property
    def core_gradient_space(self) -> CoreGradientSpace | None:
        """The space this run protects (with the request subtracted once prepared), or the one given."""
        if self.protection is not None:
            return self.protection.space
        return None  # a method without projection leaves the space behind: its statistics no longer fit

    @property
    def projection(self):
        return self.protection.projection if self.protection is not None else None

    # ------------------------------------------------------------------ input checks
    @property
    def forgotten_classes(self) -> list[int]:
        if self.scenario != "class":
            return []
        return sorted(set(label_array(self.forget_dataset).tolist()))

    # ------------------------------------------------------------------ before the first step
    def prepare_unlearning(self, resume_from_checkpoint: str | None = None, checks_only: bool = False) -> None:
        """Every check and the space's update, before any weight changes (idempotent). ``checks_only``: the
        refusals only (a request that will take no step needs no forget Grams, projectors or method setup)."""
        if self._prepared:
            return
        model = self.accelerator.unwrap_model(self.model)
        args = self.args
        if self.protection is not None:  # the space's ledger checks membership
            inputs = self.original_model_inputs
            original = keep_model_columns(model, inputs) if inputs is not None else None
            self.protection.prepare(
                model,
                forget_model_inputs=self.forget_dataset if args.world_size > 1 else self._memory(self.forget_dataset),
                forget_dataset=self.raw_forget_dataset,
                original_model_inputs=original,
                note=f"{args.method}: {len(self.raw_forget_dataset)} examples",
                resume_from_checkpoint=resume_from_checkpoint,
                checks_only=checks_only,
            )
            if checks_only:
                return
            self.protection.freeze(
                model,
                freeze_bias_and_norm=args.freeze_bias_and_norm,
                train_unprotected=args.train_unprotected or self.method.trains_unprotected,
            )
            if args.free_embedding_rows and not self.causal_lm and self.protection.peft is None \
                    and not must_project_gradients(self):
                self.protection.free_embedding_rows(model, self.forget_dataset, self.retain_dataset,
                                                    decays=args.weight_decay > 0)
            if self.scenario == "class" and args.unproject_forgotten_outputs:
                self.protection.unproject_forgotten_outputs(
                    model, self._batch_of(self.forget_dataset), self._kept_batch(), self.forgotten_classes
                )
        else:
            check_unprojected_request(self.raw_forget_dataset, space=self._given_space,
                                      original_dataset=self.original_dataset, method=args.method)
            if checks_only:
                return
            freeze_parameters(
                model, protected_layers=None, freeze_bias_and_norm=args.freeze_bias_and_norm, train_unprotected=True
            )
        self.retain_neighbours = retain_neighbours(self)
        self.method.setup(self)
        self._prepared = True

    # ------------------------------------------------------------------ Trainer overrides
    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """Unlearn. ``resume_from_checkpoint=True`` (or "last") resumes from the newest complete checkpoint."""
        resume_from_checkpoint = resolve_resume(resume_from_checkpoint, self.args.output_dir)
        if self._prepared and self.outcome is not None and self.outcome.unlearned and not resume_from_checkpoint:
            raise RuntimeError("This trainer already carried out its request (recorded in its space's ledger); "
                               "a second train() would unlearn the same examples again from the unlearned weights. "
                               "Start a new UnlearningTrainer (core_gradient_space=trainer.core_gradient_space).")
        control = self.control_callback
        if resume_from_checkpoint:
            control.resume_state = check_resume(resume_from_checkpoint, self._request_digest(), self.args.method)
        start = time.perf_counter()
        control.settings = ControlSettings.from_args(
            self.args,
            scenario=self.scenario,
            has_eval=self.eval_dataset is not None,
            causal_lm=self.causal_lm,
            check_examples=sum(len(d) for d in self._check_samples()),
            needs_retain=self.method.needs_retain,
        )
        project_gradients = must_project_gradients(self)  # DeepSpeed owns the step: see engines.py
        self._measure_baseline()
        if not self._prepared:
            measured = self.control_metrics()
            control.original_metrics = {**measured, **sample_removal_targets(self, measured)}
            reason = None if resume_from_checkpoint else control.nothing_to_unlearn(control.original_metrics)
            if reason:
                return self._no_step(reason, start)
        utility_before = self._set_up(resume_from_checkpoint, project_gradients)
        try:
            if resume_from_checkpoint and checkpoints.stopped_at(control.resume_state):  # the rule fired there
                output = checkpoints.finish_at_stop(self, resume_from_checkpoint)
            else:
                with frozen_heap():
                    output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        finally:
            if project_gradients:  # the model outlives this run (a series of requests): its hooks must not
                self.protection.gradient_hooks.detach()
        self.outcome = control.outcome
        if repair_steps := wants_repair(self):
            repaired = repair_kept_examples(self, repair_steps).describe()
            logger.info("Repair: %s", repaired)
            self.outcome.reason += f"; {repaired}"
        self.unlearning_seconds = time.perf_counter() - start
        if utility_before is not None and self.outcome.unlearned:
            self.outcome.warnings += self.end_of_run_drops(
                utility_before, self.outcome, control.start, control.setup_changed_weights
            )
            for warning in self.outcome.warnings:
                logger.warning("UTILITY DROP: %s", warning)
        if self.protection is not None:
            self.protection.finish(self.outcome, self.accelerator.unwrap_model(self.model))
        output.metrics.update(self.outcome.summary())
        return output

    def _measure_baseline(self) -> None:
        """The model before a series of requests, on this run's check samples (on the run's device, then put back)."""
        if self.baseline_model is None:
            return
        home = next(self.baseline_model.parameters()).device
        baseline = self.baseline_model.to(self.args.device)
        measured = self.control_metrics(model=baseline)
        self.control_callback.baseline_metrics = {**measured, **sample_removal_targets(self, measured, baseline)}
        self.baseline_model.to(home)

    def _set_up(self, resume_from_checkpoint: str | None, project_gradients: bool) -> dict[str, float] | None:
        """The original's full utility (not on a resumed run), then every check and the method's setup; the control
        learns whether the setup moved the weights. Returns the utility the end-of-run check compares with."""
        control = self.control_callback
        known = control.original_metrics  # the check samples' verdicts on these weights: not re-read
        utility_before = self.full_utility(known=known) if not resume_from_checkpoint else None
        weights_before = weights_summary(self.model)
        self.prepare_unlearning(resume_from_checkpoint)
        if project_gradients:
            self.protection.project_gradients()
        if self.projection is not None and self.projection.free_rows:  # fast class removal: check it closely
            control.settings.check_density = 4
        control.setup_changed_weights = not torch.equal(weights_before, weights_summary(self.model))
        return utility_before

    def _no_step(self, reason: str, start: float) -> TrainOutput:
        """Every check of the request still runs, then the model is left exactly as it was; nothing is recorded."""
        saved = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.prepare_unlearning(checks_only=True)  # a bad request is still refused, not silently skipped
        self.model.load_state_dict(saved)
        if self.protection is not None:
            self.protection.revert()
        self._prepared = False  # a later train() (e.g. with stop_rule="none") starts from the checks again
        metrics = self.control_callback.original_metrics
        self.outcome = RunOutcome(
            unlearned=False,
            reason=f"{reason}. The weights are unchanged. To remove these examples anyway, run with stop_rule='none' "
            "and a step budget, and compare with a retrained model",
            stopped_by="rule",
            initial=dict(metrics),
            final=dict(metrics),
        )
        self.unlearning_seconds = time.perf_counter() - start
        logger.warning("NOT UNLEARNED: %s. The request is not recorded.", self.outcome.reason)
        return TrainOutput(0, 0.0, {"unlearned": False, "unlearning_outcome": self.outcome.reason})

    def _request_digest(self) -> str:
        if getattr(self, "_digest", None) is None:
            self._digest = request_digest(self.raw_forget_dataset)
        return self._digest

    def _save_checkpoint(self, model, trial) -> None:
        """The Trainer's checkpoint, then the control's state and, last, the marker saying it is complete."""
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            state = self.control_callback.state_dict()
            write_checkpoint_extras(folder, state, self._request_digest(), self.args.method, self.state.global_step)

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


def _space_protection(method, args: UnlearningArguments, space, original_dataset, collate_fn) -> SpaceProtection | None:
    """PGU's protection (the space built or loaded, updates projected) for a method that projects; None otherwise."""
    if not method.uses_projection:
        return None
    return SpaceProtection(SpaceSettings.from_args(args), space=space, original_dataset=original_dataset,
                           collate_fn=collate_fn, world_size=args.world_size, process_index=args.process_index)


__all__ = ["CGSMismatchError", "UnlearningTrainer"]
