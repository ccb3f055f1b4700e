"""The accuracies an unlearning run is steered and judged by, as a mixin of ``UnlearningTrainer``.

Two kinds: ``control_metrics`` (small cached samples, read by the guard and stop rules every few
steps, so they must be cheap) and ``unlearning_metrics`` (whole sets, for ``evaluate``). Small
datasets are read into memory once and shared by every pass.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import EvalPrediction

from ..control.state import RunOutcome, copy_weights, restore_weights
from ..data.columns import keep_model_columns, label_array
from ..data.memory import materialize
from ..evaluation.predict import collect_outputs, collect_token_outcomes, length_order


class UnlearningMeasurements:
    """Needs ``args``, ``model``, ``accelerator``, ``base_collator``, the three datasets, ``scenario`` and
    ``causal_lm``."""

    def _init_measurements(self) -> None:
        self._in_memory: dict[int, tuple] = {}
        self._retain_sample = None
        self._control_samples: dict[str, object] = {}
        self._guard_before: tuple[int, dict[str, float]] | None = None  # (id of the start weights, their reading)

    def _memory(self, dataset):
        """The dataset read once into memory when small (see data/memory.py), shared by every pass over it."""
        if dataset is None:
            return None
        key = id(dataset)
        if key not in self._in_memory:
            self._in_memory[key] = (dataset, materialize(dataset))  # keep the original alive: ids stay unique
        return self._in_memory[key][1]

    def _verdicts(self, dataset, model=None) -> dict[str, torch.Tensor]:
        """One batched pass: per unit (an example, or a causal LM's target token) whether the prediction is
        right and the probability of the truth; ``labels`` and ``logits`` per example for classifiers."""
        model = model if model is not None else self.accelerator.unwrap_model(self.model)
        dataset = self._memory(dataset)
        size, device = self._eval_batch_size(dataset), self.args.device
        if self.causal_lm:
            return collect_token_outcomes(model, dataset, collate_fn=self.base_collator, batch_size=size, device=device)
        out = collect_outputs(model, dataset, collate_fn=self.base_collator, batch_size=size, device=device)
        p_true = out["logits"].softmax(-1).gather(1, out["labels"][:, None]).squeeze(1)
        return {**out, "correct": out["logits"].argmax(-1) == out["labels"], "p_true": p_true}

    def _correct(self, dataset) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-unit correctness and (classifiers) labels, from one batched pass."""
        out = self._verdicts(dataset)
        return out["correct"], out.get("labels")

    def _eval_batch_size(self, dataset) -> int:
        """256 fixed-shape examples per pass, 64 texts: one batch of 256 texts pads all to the longest (SMS spam,
        1.14 s for 200 messages against 0.64 s in length-sorted batches of 64)."""
        text = "input_ids" in getattr(dataset, "column_names", ())
        if self.causal_lm:  # a batch's logits span the vocabulary: 16 texts × 32 tokens × 49k = 100 MB
            return max(16, self.args.per_device_eval_batch_size)
        return max(64 if text else 256, self.args.per_device_eval_batch_size)

    @staticmethod
    def _percent(correct: torch.Tensor) -> float:
        return 100.0 * correct.float().mean().item() if correct.numel() else float("nan")

    def _sample(self, name: str, dataset, size: int):
        """A fixed random sample of ``dataset`` (the same examples at every check)."""
        if name not in self._control_samples:
            if dataset is not None and len(dataset) > size:
                dataset = dataset.shuffle(seed=self.args.seed).select(range(size))
            order = length_order(dataset) if dataset is not None else None
            if order is not None:  # sorted once here, so no pass has to sort it again
                dataset = dataset.select(order)
            self._control_samples[name] = dataset
        return self._control_samples[name]

    def _check_samples(self) -> tuple:
        """The cached forget / retain / validation samples every check reads (empty lists when absent)."""
        size, retain_size = self.args.control_samples, self.args.eval_retain_samples
        retain = self._sample("retain", self.retain_dataset, retain_size) if retain_size > 0 else None
        validation = self._sample("validation", self.eval_dataset, size)
        return (self._sample("forget", self.forget_dataset, size), retain or [], validation or [])

    def _batch_of(self, dataset, size: int = 8) -> dict:
        """The first ``size`` examples, collated, on the model's device (for a forward pass before training)."""
        rows = dataset.select(range(min(size, len(dataset))))
        batch = self.base_collator([rows[i] for i in range(len(rows))])
        return {k: v.to(self.args.device) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _kept_batch(self, size: int = 128) -> dict | None:
        """Kept examples: a retain sample, else the validation set's kept classes; None when neither exists."""
        if self.retain_dataset is not None and len(self.retain_dataset) > 0:
            return self._batch_of(self.retain_dataset.shuffle(seed=self.args.seed), size)
        if self.eval_dataset is None:
            return None
        forgotten = set(self.forgotten_classes)  # one pass over the forget labels, not one per example
        kept = [i for i, y in enumerate(label_array(self.eval_dataset).tolist()) if y not in forgotten]
        return self._batch_of(self.eval_dataset.select(kept), size) if kept else None

    def control_metrics(self, model=None) -> dict[str, float]:
        """What the guard and stop rules read: accuracies (%) on small cached samples, one pass each.

        ``forget_probability`` is the mean probability of the true label on the forget sample: for a
        removed class, how much the model still believes in it. ``model`` measures another model on the
        same samples (the model before a series of requests). For a causal LM each accuracy is over target
        tokens (the greedy next token is the text's), the probability the mean over them, and
        ``*_likelihood`` is 100·exp(−mean token loss): what its sample-removal rule compares, because a
        model that never saw a text gives it about the loss of held-out text (the accuracy moved with the
        templates: at the crossing SmolLM2 still stated 60 % of the forgotten facts, a model fine-tuned
        without them 10 %).
        """
        forget, retain, validation = self._check_samples()
        out = self._verdicts(forget, model)
        metrics = {
            "forget_accuracy": self._percent(out["correct"]),
            "forget_accuracy_count": len(forget),
            "forget_probability": float(out["p_true"].mean()),
        }
        if self.causal_lm:
            metrics["forget_likelihood"] = likelihood(out["loss"])
        if len(retain):
            correct = self._verdicts(retain, model)["correct"]
            metrics["retain_accuracy"] = self._percent(correct)
            metrics["retain_accuracy_count"] = len(retain)
            metrics["retain_accuracy_units"] = correct.numel()  # a causal LM's target tokens
        if len(validation):
            out = self._verdicts(validation, model)
            metrics["validation_accuracy"] = self._percent(out["correct"])
            metrics["validation_accuracy_count"] = len(validation)
            metrics["validation_accuracy_units"] = out["correct"].numel()
            metrics["validation_probability"] = float(out["p_true"].mean())
            if self.causal_lm:
                metrics["validation_likelihood"] = likelihood(out["loss"])
            if self.scenario == "class":
                kept = ~torch.isin(out["labels"], torch.tensor(self.forgotten_classes))
                metrics["validation_accuracy_kept"] = self._percent(out["correct"][kept])
                metrics["validation_accuracy_kept_count"] = int(kept.sum())
                metrics["validation_accuracy_kept_units"] = int(kept.sum())
        return metrics

    def full_utility(
        self, retain_examples: int = 256, known: dict[str, float] | None = None, validation: bool = True
    ) -> dict[str, float]:
        """What the end-of-run utility check compares: validation accuracy on the whole eval set (kept classes
        for class removal) and retain accuracy on ``retain_examples`` retain examples. A set the guard's
        samples already cover whole is left out (the guard saw all of it).

        ``known``: the control metrics of the current weights (``control_metrics``). The check samples are
        then not read again: they are the first rows of the same shuffles, so only the rest is read and the
        accuracies are combined by units, examples or a causal LM's target tokens (the same numbers as a whole
        read; the ViT of the fidelity suite read 384 of its 756 examples a look here for nothing, SmolLM2 128
        of its 135 retain texts). ``validation=False``: the retain accuracy only (the closer look: a larger
        retain sample cannot change the whole validation set's).
        """
        known = known or {}
        utility = {}
        if validation and self.eval_dataset is not None and len(self.eval_dataset) > self.args.control_samples:
            key = "validation_accuracy_kept" if self.scenario == "class" else "validation_accuracy"
            rest = f"{key}_units" in known  # the guard's sample is the first rows of this shuffle: read the others
            rows = range(self.args.control_samples, len(self.eval_dataset)) if rest else None
            name = "validation_rest" if rest else "validation"
            correct, labels = self._correct(self._cached_rows(name, self.eval_dataset, self.args.seed, rows))
            if self.scenario == "class":
                correct = correct[~torch.isin(labels, torch.tensor(self.forgotten_classes))]
            utility["validation accuracy"] = _combined(known, key, correct) if rest else self._percent(correct)
        retain = self.retain_dataset
        if retain is not None and len(retain) > self.args.eval_retain_samples:
            size = min(retain_examples, len(retain))
            rest = "retain_accuracy_units" in known and size > self.args.eval_retain_samples
            if rest:  # likewise the guard's retain sample
                rows = range(self.args.eval_retain_samples, size)
                correct = self._correct(self._cached_rows(f"retain_{size}_rest", retain, self.args.seed, rows))[0]
                utility["retain accuracy"] = _combined(known, "retain_accuracy", correct)
            else:  # one sample per size: before and after read the same rows
                rows = range(size) if len(retain) > retain_examples else None
                utility["retain accuracy"] = self._percent(
                    self._correct(self._cached_rows(f"retain_{size}", retain, self.args.seed + 1, rows))[0]
                )
        return utility

    def _cached_rows(self, name: str, dataset, seed: int | None = None, rows: range | None = None):
        """``dataset`` (shuffled with ``seed`` and cut to ``rows`` when given), built once per name."""
        key = f"utility_{name}"
        if key not in self._control_samples:
            if seed is not None and rows is not None:
                dataset = dataset.shuffle(seed=seed).select(rows)
            self._control_samples[key] = dataset
        return self._control_samples[key]

    def utility_against(
        self,
        start: dict[str, torch.Tensor],
        retain_examples: int,
        known_before: dict[str, float] | None = None,
        known_after: dict[str, float] | None = None,
    ) -> tuple[dict, dict]:
        """Retain accuracy of the ``start`` weights and of the current ones, on a larger retain sample (the
        ``known`` control metrics of each, when given, spare re-reading the guard's retain sample).

        Run when the guard had to roll back: 256 retain examples missed 3-4 point drops that 1000 showed
        (fidelity suite: gradient ascent, random labels and SalUn on class removal).
        """
        model = self.accelerator.unwrap_model(self.model)
        end = copy_weights(model, like=start)  # frozen weights unchanged since the start: shared, not copied
        try:
            restore_weights(model, start)
            before = self.full_utility(retain_examples, known=known_before, validation=False)
        finally:
            restore_weights(model, end)
        return before, self.full_utility(retain_examples, known=known_after, validation=False)

    def closer_look(
        self,
        start: dict[str, torch.Tensor],
        tolerance: float,
        known_before: dict[str, float] | None = None,
        known_after: dict[str, float] | None = None,
    ) -> list[str]:
        """The end-of-run comparison after the guard rolled back: on 1024 retain examples, then, when a drop
        comes within ``CLOSER_MARGIN`` points of the tolerance without passing it, on up to 4096.

        A drop near the tolerance is decided by which examples were drawn: gradient ascent removing digit 7
        from the fidelity suite's ResNet (seed 1) lost 3.4 points on the whole 3 138-example retain set, and
        1 024 of them showed 2.4 (the suite's own 1 000 showed 4.4). Retain accuracy only: the whole validation
        set was already compared, and re-reading it twice per size cost the fidelity suite's ViT more than the
        retain reads (0.55 s of a 1.3 s run, profiled).
        """
        for size in CLOSER_SIZES:
            before, after = self.utility_against(start, size, known_before, known_after)
            drops = utility_drops(before, after, tolerance)
            near = near_tolerance(before, after, tolerance)
            whole = self.retain_dataset is None or len(self.retain_dataset) <= size  # a larger sample is the same
            if drops or not near or whole:
                break
        return drops

    def guard_closer_look(
        self, start: dict[str, torch.Tensor], metrics: dict[str, float], alarms: list[str]
    ) -> list[str]:
        """The drops that hold on ``guard_retain_sample(tolerance)`` retain examples and the whole validation set,
        read for the current weights and for ``start`` (once per run) on the same examples: a paired comparison.
        Every set the larger read covers is judged there; an alarm on a set with nothing larger to read (validation
        already whole) stands as it was.
        """
        tolerance = self.args.utility_tolerance
        size = guard_retain_sample(tolerance)
        if self._guard_before is None or self._guard_before[0] != id(start):
            model = self.accelerator.unwrap_model(self.model)
            end = copy_weights(model, like=start)
            try:
                restore_weights(model, start)
                before = self.full_utility(size, known=self.control_callback.outcome.initial)
            finally:
                restore_weights(model, end)
            self._guard_before = (id(start), before)
        before, after = self._guard_before[1], self.full_utility(size, known=metrics)
        # every set the larger read covers is judged on it, not only the alarmed ones: a validation alarm's look once
        # found retain accuracy 5.3 points down on 600 examples where the check's 128 read it within the tolerance
        confirmed = [f"{name} {after[name]:.1f} < {before[name]:.1f} - {tolerance:g} (closer look)"
                     for name in after if name in before and after[name] < before[name] - tolerance]
        for alarm in alarms:
            name = "retain accuracy" if alarm.startswith("retain_accuracy") else "validation accuracy"
            if name not in after or name not in before:  # nothing larger to read: the check's sample stands
                confirmed.append(alarm)
        return confirmed

    def end_of_run_drops(
        self,
        before: dict[str, float],
        outcome: RunOutcome,
        start: dict[str, torch.Tensor],
        setup_changed_weights: bool,
    ) -> list[str]:
        """The end-of-run utility check: the final weights' ``full_utility`` against ``before`` (the original's).

        The guard reads small samples, so this is the last word on utility. The final check's metrics describe
        the final weights, unless the run kept its ``start`` after a setup that moved the weights (its start
        metrics then hold the lower of two readings). When the guard rolled back, or the 256-example look came
        near the line, ``closer_look`` reads larger retain samples (EUPMU on a label-smoothed ResNet: no
        rollback, -3.3 points on 1 000 retain examples, unflagged by 256).
        """
        tolerance = self.args.utility_tolerance
        exact = not setup_changed_weights  # start = the original: its metrics are known
        known = outcome.final if exact else None
        after = self.full_utility(known=known)
        drops = utility_drops(before, after, tolerance)
        if not drops and (outcome.backtracks or near_tolerance(before, after, tolerance)):
            drops = self.closer_look(start, tolerance, outcome.initial if exact else None, known)
        return drops

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix: str = "test"):
        """The Trainer's predict on the model's input columns (the Trainer's own pruning is off: see arguments)."""
        return super().predict(keep_model_columns(self.model, test_dataset), ignore_keys, metric_key_prefix)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        if eval_dataset is not None:
            self.eval_dataset = keep_model_columns(self.model, eval_dataset)
        metrics = self.unlearning_metrics(metric_key_prefix)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def unlearning_metrics(self, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Accuracy (%) on the forget set, a retain sample and the eval set (kept classes in class mode); for a
        causal LM, next-token accuracy and perplexity on each."""
        sets = {"forget": self.forget_dataset}
        if self.retain_dataset is not None and self.args.eval_retain_samples > 0:
            if self._retain_sample is None:
                retain = self.retain_dataset
                if len(retain) > self.args.eval_retain_samples:
                    retain = retain.shuffle(seed=self.args.seed).select(range(self.args.eval_retain_samples))
                self._retain_sample = retain
            sets["retain"] = self._retain_sample
        if self.eval_dataset is not None:
            sets["test"] = self.eval_dataset
        metrics = {}
        for name, dataset in sets.items():
            out = self._verdicts(dataset)
            metrics[f"{metric_key_prefix}_{name}_accuracy"] = self._percent(out["correct"])
            if self.causal_lm:
                metrics[f"{metric_key_prefix}_{name}_perplexity"] = math.exp(float(out["loss"].double().mean()))
        if self.eval_dataset is not None and not self.causal_lm:
            correct, labels = out["correct"], out["labels"]
            if self.scenario == "class":
                kept = ~torch.isin(labels, torch.tensor(self.forgotten_classes))
                metrics[f"{metric_key_prefix}_test_accuracy_kept_classes"] = self._percent(correct[kept])
            if self.compute_metrics is not None:  # the user's metrics (e.g. F1 on an imbalanced set), on the eval set
                prediction = EvalPrediction(predictions=out["logits"].cpu().numpy(), label_ids=labels.cpu().numpy())
                user = self.compute_metrics(prediction)
                metrics.update({f"{metric_key_prefix}_{k}": v for k, v in user.items()})
        return metrics


CLOSER_SIZES = (1024, 4096)  # retain examples of the closer end-of-run look; the second only when near the line
CLOSER_MARGIN = 1.5  # points: a drop this close to the tolerance is re-read on the larger sample



GUARD_Z = 3.0  # the guard's closer look resolves its tolerance at this many standard errors


def guard_retain_sample(tolerance: float, z: float = GUARD_Z) -> int:
    """Retain examples a paired comparison needs to tell a ``tolerance``-point drop at ``z`` standard errors.

    Read on the same n examples before and after, a drop d (a fraction) with as many examples turning right as
    turning wrong beside it (churn 2d) has standard error sqrt(2d / n) (McNemar); d = tolerance at z standard
    errors gives n = 2 z² / tolerance: 600 examples for 3 points, where the check's 128 resolve 3 points as 4
    examples and one standard error is about 2 points.
    """
    if tolerance <= 0:
        raise ValueError(f"the guard's tolerance must be positive to size its sample, got {tolerance}")
    return math.ceil(2.0 * z * z * 100.0 / tolerance)


def likelihood(token_losses: torch.Tensor) -> float:
    """100·exp(−mean token loss): the geometric-mean probability of the target tokens, in percent."""
    return 100.0 * math.exp(-float(token_losses.double().mean()))


def _combined(known: dict[str, float], key: str, rest: torch.Tensor) -> float:
    """Accuracy (%) over a sample whose accuracy ``known[key]`` over ``known[key + '_units']`` units (examples, or a
    causal LM's target tokens) is known and ``rest``, the per-unit correctness of the other units."""
    count = known[f"{key}_units"]
    total = count + rest.numel()
    return 100.0 * (known[key] * count / 100.0 + float(rest.sum())) / total if total else float("nan")


def utility_drops(before: dict[str, float], after: dict[str, float], tolerance: float) -> list[str]:
    """Full-set drops beyond the tolerance: the guard reads small samples, so this is the loud last word."""
    return [
        f"{name} fell {before[name] - after[name]:.1f} points (from {before[name]:.1f} to {after[name]:.1f}), more "
        f"than the {tolerance:g}-point tolerance"
        for name in before
        if name in after and after[name] < before[name] - tolerance
    ]


def near_tolerance(before: dict[str, float], after: dict[str, float], tolerance: float) -> bool:
    """A retain-accuracy drop within ``CLOSER_MARGIN`` of the tolerance: a larger sample may put it past the line
    (the whole validation set is already read whole, so only the retain sample can tell more)."""
    key = "retain accuracy"
    return key in before and key in after and after[key] < before[key] - tolerance + CLOSER_MARGIN


def weights_summary(model: nn.Module) -> torch.Tensor:
    """One number per parameter tensor: enough to tell whether a setup step moved any weight."""
    with torch.no_grad():
        return torch.stack([p.detach().double().sum() for p in model.parameters()])
