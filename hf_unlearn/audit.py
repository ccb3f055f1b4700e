"""The audit: many unlearning runs against many retrains, scored example by example.

One unlearned model next to one retrained model says little: two retrains with different seeds differ too, and an
average over the forget set can match while every example is off. The audit trains the original once, then N
models without the forget set (the user's own training function, N seeds) and N unlearning runs per method from
that one original (N seeds), records each model's confidence on every forget example and its accuracies, and
scores each method's family against the retrained family (:mod:`hf_unlearn.evaluation.audit_report`).

Every finished run is cached on disk as soon as it ends (``<output_dir>/cache/<setup>/<family>/seed-<s>.json``),
keyed by the training data, the forget indices, the original's seed and ``recipe_key``: a rerun, or a rerun with a
larger N or more methods, trains only what is missing. Runs go one after another in this process (a retrain and
each method's run per seed in turn, so an interrupted audit has balanced families); parallel processes are not
used — on a few cores one small model per process gains little over the threads torch already uses.
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PrinterCallback

from .core.fingerprint import digest, fingerprint_examples
from .core.labels import LABEL_KEYS
from .data.forget import split_forget_retain
from .evaluation.audit_report import render_markdown, score_family
from .evaluation.challenge_score import logit_scaled_confidence
from .evaluation.predict import collect_outputs
from .methods import DEFAULT_PATH, METHODS, get_method, resolve_method
from .utils.files import write_json_atomically

logger = logging.getLogger(__name__)
DO_NOTHING = "none"  # the original itself, N times: what a method that changes nothing scores
CEILING = "ceiling"  # a second set of N retrains scored against the first: the best any method can score
CEILING_SEED_OFFSET = 100_000  # its seeds never meet the first set's, whatever N a later run asks for

TrainFn = Callable[..., nn.Module]  # (dataset, seed) -> a trained model
UnlearnFn = Callable[..., nn.Module]  # (model, method, forget, retain, seed) -> the unlearned model


class LibraryUnlearning:
    """The default unlearning function: ``UnlearningTrainer`` with the library's defaults for the method, seeded.

    A method that projects (PGU, the default path) needs the original's Core Gradient Space: it is built once
    from ``original_dataset`` on the first call, saved in ``space_dir``, and loaded fresh for every run (each run
    records its request in its own copy). ``argument_overrides`` go to every run's ``UnlearningArguments``.
    ``quiet`` keeps N runs' logs and warnings off the console; what each run ended with (stopped by what,
    incomplete or not) is kept in ``last_outcome`` and the audit stores it with the run.
    """

    def __init__(self, original_dataset, eval_dataset=None, space_dir: str | Path | None = None, quiet: bool = True,
                 **argument_overrides):
        self.original_dataset = original_dataset
        self.eval_dataset = eval_dataset
        self.quiet = quiet
        self.last_outcome: dict | None = None
        self._scratch = tempfile.TemporaryDirectory(prefix="hf_unlearn_audit_")
        self.space_dir = Path(space_dir) if space_dir is not None else Path(self._scratch.name) / "space"
        self.argument_overrides = argument_overrides

    @staticmethod
    def _projects(method: str) -> bool:
        return get_method(resolve_method(method, has_retain=True)).uses_projection

    def prepare(self, model: nn.Module, method: str) -> None:
        """Build and save the original's space once, before the first run of a method that projects
        (``model`` is an untouched copy of the original)."""
        from .core import CoreGradientSpace

        if self._projects(method) and not (self.space_dir / "cgs_config.json").is_file():
            space = CoreGradientSpace.from_model(model, self.original_dataset, batch_size=256,
                                                 show_progress=not self.quiet)
            space.save_pretrained(self.space_dir)

    def __call__(self, model: nn.Module, method: str, forget, retain, seed: int) -> nn.Module:
        from .core import CoreGradientSpace
        from .training.arguments import UnlearningArguments
        from .training.trainer import UnlearningTrainer

        space = None
        if self._projects(method):
            self.prepare(model, method)
            space = CoreGradientSpace.from_pretrained(self.space_dir, model)
        values = dict(output_dir=str(Path(self._scratch.name) / "run"), method=method, seed=seed,
                      disable_tqdm=True, logging_strategy="no", report_to="none", **self.argument_overrides)
        trainer = UnlearningTrainer(model=model, args=UnlearningArguments(**values), forget_dataset=forget,
                                    retain_dataset=retain, eval_dataset=self.eval_dataset,
                                    core_gradient_space=space)
        library_logger = logging.getLogger("hf_unlearn")
        level = library_logger.level
        if self.quiet:
            trainer.remove_callback(PrinterCallback)
            library_logger.setLevel(logging.ERROR)
        try:
            trainer.train()
        finally:
            library_logger.setLevel(level)
        outcome = trainer.outcome
        self.last_outcome = None if outcome is None else {
            "unlearned": outcome.unlearned, "stopped_by": outcome.stopped_by, "incomplete": outcome.incomplete,
            "steps": outcome.steps}
        return model


def _measure(model: nn.Module, sets: dict, collate_fn) -> dict:
    """Confidences on the forget set and the accuracies (%) of one model."""
    out = {}
    for name, dataset in sets.items():
        outputs = collect_outputs(model, dataset, collate_fn=collate_fn)
        logits, labels = outputs["logits"].numpy(), outputs["labels"].numpy()
        out[f"{name}_accuracy"] = float(100.0 * (logits.argmax(-1) == labels).mean())
        if name == "forget":
            out["confidences"] = logit_scaled_confidence(logits, labels).tolist()
    return out


def setup_key(train_dataset, forget_indices: Sequence[int], original_seed: int, recipe_key: str) -> str:
    """What the cached runs depend on: the training rows, the forget request, the original's seed, the recipe."""
    rows = fingerprint_examples(train_dataset, train_dataset.column_names, key=None)
    return digest(rows, [sorted(int(i) for i in forget_indices), original_seed, recipe_key], length=16)


def _check(train_dataset, forget_indices, methods, num_models: int, custom_unlearn: bool) -> list[int]:
    if num_models < 3:
        raise ValueError(f"num_models must be at least 3 (the score needs 3 models a side; 16 or more is usual), "
                         f"got {num_models}")
    indices = sorted({int(i) for i in forget_indices})
    if not indices or len(indices) >= len(train_dataset) or indices[0] < 0 or indices[-1] >= len(train_dataset):
        raise ValueError(f"forget_indices must be a non-empty proper subset of the {len(train_dataset)} training "
                         f"rows (0 .. {len(train_dataset) - 1}); got {len(indices)} indices")
    known = {DEFAULT_PATH, DO_NOTHING, *METHODS}
    # a custom unlearning function may take any name; "retrain" and "ceiling" name the reference families
    refused = [m for m in methods if m in ("retrain", CEILING) or (not custom_unlearn and m not in known)]
    if refused or not methods or len(set(methods)) < len(methods):
        raise ValueError(f"methods {list(methods)}: {refused or 'none given or repeated'} cannot be audited; use "
                         f"distinct names of {sorted(known)} ('none' does nothing; the retrain-vs-retrain ceiling "
                         "is ceiling=True)")
    return indices


class _Original:
    """The original model, trained once and cached (``save_pretrained`` when the model has it, else pickled)."""

    def __init__(self, folder: Path, train_model: TrainFn, train_dataset, seed: int):
        self.folder, self.train_model, self.train_dataset, self.seed = folder, train_model, train_dataset, seed
        self._model: nn.Module | None = None

    def get(self) -> nn.Module:
        if self._model is None:
            meta = self.folder / "original.json"
            if meta.is_file():
                self._model = self._load(json.loads(meta.read_text()))
            else:
                self._model = self.train_model(self.train_dataset, self.seed)
                self._save(self._model, meta)
        return self._model

    def _save(self, model: nn.Module, meta: Path) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if hasattr(model, "save_pretrained"):
            model.save_pretrained(self.folder)
        else:
            torch.save(model, self.folder / "model.pt")
        write_json_atomically(meta, {"class": f"{type(model).__module__}:{type(model).__qualname__}"})

    def _load(self, meta: dict) -> nn.Module:
        if (self.folder / "model.pt").is_file():
            return torch.load(self.folder / "model.pt", weights_only=False)
        module, name = meta["class"].split(":")
        return getattr(importlib.import_module(module), name).from_pretrained(self.folder)


def _plan(methods: Sequence[str], num_models: int, original_seed: int, ceiling: bool) -> list[tuple[str, int]]:
    """(family, seed) for every run, seed by seed, so an interrupted audit leaves balanced families."""
    plan = []
    for i in range(num_models):
        plan.append(("retrain", original_seed + 1 + i))
        plan += [(m, i) for m in methods if m != DO_NOTHING]
        if ceiling:
            plan.append((CEILING, original_seed + CEILING_SEED_OFFSET + i))
    return plan


def _run_one(family: str, seed: int, original: _Original, train_model: TrainFn, unlearn: UnlearnFn,
             forget, retain) -> tuple[nn.Module, float, dict | None]:
    if family in ("retrain", CEILING):
        start = time.perf_counter()
        return train_model(retain, seed), time.perf_counter() - start, None
    model = copy.deepcopy(original.get())
    if hasattr(unlearn, "prepare"):  # one-off work for every run (the Core Gradient Space), not timed per run
        unlearn.prepare(model, family)
    start = time.perf_counter()
    model = unlearn(model, family, forget, retain, seed)
    return model, time.perf_counter() - start, getattr(unlearn, "last_outcome", None)


def _stack(records: list[dict]) -> dict:
    keys = ("confidences", "forget_accuracy", "retain_accuracy", "test_accuracy", "seconds")
    stacked = {key: np.asarray([r[key] for r in records], dtype=np.float64) for key in keys}
    outcomes = [r.get("outcome") for r in records]
    known = [o for o in outcomes if o is not None]
    stacked["incomplete_runs"] = sum(bool(o.get("incomplete")) for o in known) if known else None
    return stacked


def run_audit(
    train_model: TrainFn,
    train_dataset,
    forget_indices: Sequence[int],
    test_dataset,
    *,
    output_dir: str | Path,
    methods: Sequence[str] = (DEFAULT_PATH,),
    num_models: int = 16,
    unlearn: UnlearnFn | None = None,
    eval_dataset=None,
    ceiling: bool = False,
    original_seed: int = 0,
    recipe_key: str = "",
    collate_fn=None,
    progress: bool = True,
    top_examples: int = 10,
) -> dict:
    """Train the original, N retrains and N unlearning runs per method (cached), score them, write the report.

    ``train_model(dataset, seed)`` trains a fresh model on ``dataset`` (the original on ``train_dataset``, the
    retrains on its retain part) and returns it; ``unlearn(model, method, forget, retain, seed)`` unlearns the
    forget rows from a copy of the original (default: :class:`LibraryUnlearning`, the trainer with the method's
    defaults). ``methods`` may include ``"none"`` (the original itself: what doing nothing scores); ``ceiling``
    adds N more retrains scored against the first N, the best score N models allow. ``recipe_key`` is any text
    describing the training recipe: cached runs are reused only for the same data, forget rows, original seed
    and recipe key (a changed training function with the same key would reuse stale runs). Writes
    ``report.json`` and ``report.md`` to ``output_dir`` and returns the report.
    """
    indices = _check(train_dataset, forget_indices, list(methods), num_models, unlearn is not None)
    out = Path(output_dir)
    cache = out / "cache" / setup_key(train_dataset, indices, original_seed, recipe_key)
    forget, retain = split_forget_retain(train_dataset, indices)
    labels = collect_labels(forget)  # refused before any training when there is none
    sets = {"forget": forget, "retain": retain, "test": test_dataset}
    original = _Original(cache / "original", train_model, train_dataset, original_seed)
    unlearn = unlearn or LibraryUnlearning(train_dataset, eval_dataset, space_dir=cache / "original" / "space")
    plan = _plan(methods, num_models, original_seed, ceiling)
    pending = [(f, s) for f, s in plan if not (cache / f / f"seed-{s}.json").is_file()]
    if len(pending) < len(plan):
        logger.info("Reusing %d finished runs from %s", len(plan) - len(pending), cache)
    bar = tqdm(total=len(plan), initial=len(plan) - len(pending), desc="audit runs", unit="run",
               disable=not progress)
    for family, seed in pending:
        bar.set_postfix_str(f"{family} seed {seed}")
        model, seconds, outcome = _run_one(family, seed, original, train_model, unlearn, forget, retain)
        record = {**_measure(model, sets, collate_fn), "seconds": seconds, "outcome": outcome}
        write_json_atomically(cache / family / f"seed-{seed}.json", record)
        bar.update(1)
    bar.close()
    original_path = cache / "original" / "measures.json"
    if not original_path.is_file():
        write_json_atomically(original_path, {**_measure(original.get(), sets, collate_fn), "seconds": 0.0})
    families = {}
    for family in ["retrain", *methods] + ([CEILING] if ceiling else []):
        paths = [original_path] * num_models if family == DO_NOTHING else \
            [cache / family / f"seed-{s}.json" for f, s in plan if f == family]
        families[family] = _stack([json.loads(path.read_text()) for path in paths])
    report = build_report(families, indices, labels, num_models=num_models, top_examples=top_examples)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(render_markdown(report))
    return report


def build_report(families: dict[str, dict], indices: list[int], labels: list[int], *, num_models: int,
                 top_examples: int = 10) -> dict:
    """The report from the stacked runs of each family (``retrain`` is the reference)."""
    retrained = families["retrain"]
    scored = {name: score_family(runs, retrained, indices, labels, top_examples=top_examples)
              for name, runs in families.items() if name != "retrain"}
    ref = {key: float(np.mean(retrained[key])) for key in ("forget_accuracy", "retain_accuracy", "test_accuracy")}
    return {
        "setup": {"num_models": num_models, "num_forget": len(indices), "forget_indices": indices,
                  "families": list(scored)},
        "retrained": {**ref, "seconds_per_run": float(np.mean(retrained["seconds"]))},
        "families": scored,
    }


def collect_labels(dataset) -> list[int]:
    """The forget rows' labels, in order."""
    column = next((key for key in LABEL_KEYS if key in dataset.column_names), None)
    if column is None:
        raise ValueError(f"the forget rows have no label column (looked for {LABEL_KEYS}; found "
                         f"{dataset.column_names}): the audit scores the confidence of each row's label")
    return [int(v) for v in dataset.with_format(None)[column]]
