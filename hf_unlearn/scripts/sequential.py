"""The recipe's ``--num_requests N`` mode: the forget set served as N deletion requests on one model.

    python recipes/unlearn.py --config recipes/configs/digits_class.yaml --forget_class 3 5 7 --num_requests 3

Each request gets ``output_dir/request-NNNN/`` (model, space with its ledger, card); ``requests.json``
lists what every request did, with UA / RA / TA after it and, with ``--compare_with_retrain``, the Avg.
Gap to a model retrained without everything removed so far. Rerunning the same command after a crash
serves only what is missing.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

from ..data.columns import keep_model_columns, label_array
from ..data.requests import detect_scenario
from ..evaluation import avg_gap, evaluate_unlearning
from ..evaluation.suite import ALL_CLASSES_TA
from ..exact import TrainingRecipe, retrain_from_scratch
from ..exact.retrain import default_reference_cache
from ..sequential import SUMMARY_FILE, SequentialUnlearning
from ..training.arguments import UnlearningArguments
from .arguments import ForgetSetArguments, ScriptArguments, reference_recipe

logger = logging.getLogger(__name__)


def split_requests(indices: list[int], forget_args: ForgetSetArguments, train) -> list[list[int]]:
    """One request per class when ``--forget_class`` names exactly N classes, else N seeded random parts."""
    n = forget_args.num_requests
    if n > len(indices):
        raise ValueError(f"--num_requests {n} is more than the {len(indices)} examples of the forget set.")
    classes = forget_args.forget_class or []
    if len(classes) == n:
        labels = label_array(train.select(indices))
        return [[i for i, y in zip(indices, labels.tolist(), strict=True) if y == c] for c in classes]
    shuffled = list(indices)
    random.Random(forget_args.forget_seed).shuffle(shuffled)
    return [sorted(shuffled[k::n]) for k in range(n)]


class RetrainComparison:
    """UA / RA / TA / MIA after a request; with a recipe, the Avg. Gap to a model retrained without the removed rows.
    Once whole classes are removed, TA is on the kept classes (the all-class one beside it as TA_all_classes)."""

    def __init__(self, train, test, collate_fn, seed: int, recipe: TrainingRecipe | None = None, *,
                 config=None, cache_dir: str | None = None, base_model: str | None = None, processing_class=None):
        self.train, self.test, self.collate_fn, self.seed, self.recipe = train, test, collate_fn, seed, recipe
        self.config, self.cache_dir, self.base_model = config, cache_dir, base_model
        self.processing_class = processing_class

    def __call__(self, model, removed: list[int]) -> dict:
        if not removed:
            return {}
        removed_set = set(removed)
        kept = [i for i in range(len(self.train)) if i not in removed_set]
        forget, retain = self.train.select(removed), self.train.select(kept)
        test = keep_model_columns(model, self.test)
        forget_in, retain_in = keep_model_columns(model, forget), keep_model_columns(model, retain)
        reference = None
        if self.recipe is not None:
            reference, _, _ = retrain_from_scratch(
                self.config, retain, self.recipe, cache_dir=self.cache_dir, processing_class=self.processing_class,
                base_model=self.base_model,
            )
        # every row of some classes removed so far (the trainer's class rule): TA on the kept classes
        classes = detect_scenario("auto", forget, retain) == "class"
        forgotten = sorted(set(label_array(forget).tolist())) if classes else None
        options = dict(collate_fn=self.collate_fn, retain_eval_samples=1000, seed=self.seed,
                       forgotten_classes=forgotten)
        row = evaluate_unlearning(model, forget_in, retain_in, test, reference_model=reference, **options)
        metrics = {k: row[k] for k in ("UA", "RA", "TA", "MIA", ALL_CLASSES_TA) if k in row}
        if reference is not None:
            metrics["avg_gap"] = avg_gap(row, evaluate_unlearning(reference, forget_in, retain_in, test, **options))
        return metrics


def run_sequential(script_args: ScriptArguments, forget_args: ForgetSetArguments, args: UnlearningArguments, *,
                   model, train, test, indices: list[int], processing_class, space, collate_fn) -> dict:
    if args.push_to_hub or script_args.push_dry_run:
        raise ValueError(
            "--num_requests does not push: each request has its own folder. Serve the requests, then push the last "
            "one (output_dir/request-NNNN) with the single-request recipe's Hub options or huggingface_hub."
        )
    requests = split_requests(indices, forget_args, train)
    if script_args.reference_model:
        raise ValueError("--reference_model is one reference; a series of requests needs one per request: drop it "
                         "and the series retrains its references (cached).")
    recipe = None
    if script_args.compare_with_retrain:
        recipe = reference_recipe(script_args, args.world_size, args.seed)
    comparison = None
    if test is not None:
        comparison = RetrainComparison(
            train, test, collate_fn, args.seed, recipe, config=model.config,
            cache_dir=script_args.retrain_cache_dir or str(default_reference_cache()),
            base_model=script_args.retrain_base_model, processing_class=processing_class,
        )
    queue = SequentialUnlearning(model, args, train, eval_dataset=test, core_gradient_space=space,
                                 processing_class=processing_class, evaluate=comparison)
    records = queue.serve(requests)
    for record in records:
        logger.info("Request %d: %d examples, %s (%s) %s", record["request"], record["num_examples"],
                    "unlearned" if record["unlearned"] else "NOT unlearned", record["outcome"],
                    json.dumps(record.get("metrics", {})))
    summary = {"requests": len(records), "unlearned": sum(r["unlearned"] for r in records),
               "removed": sum(r["num_examples"] for r in records if r["unlearned"]),
               "final_model": str(Path(args.output_dir) / f"request-{len(records):04d}"),
               "records": str(Path(args.output_dir) / SUMMARY_FILE)}
    print(json.dumps(summary, indent=2))
    return summary
