"""Unlearn part of a classifier's training data: the ``accelerate launch`` recipe.

    # the embedded digits data, the forget set as a whole class, a YAML config (after `make demo`)
    accelerate launch recipes/unlearn.py --config recipes/configs/digits_class.yaml

    # any local or Hub image/text classifier, with CLI overrides
    python recipes/unlearn.py --model_name_or_path ./my-model --dataset_name ./my-data \\
        --forget_fraction 0.05 --forget_seed 1 --output_dir outputs/run --compare_with_retrain true

Two processes on CPU (gloo):
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \\
        --dynamo_backend no recipes/unlearn.py --config ... --use_cpu true
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

from .. import models  # noqa: F401  (registers the small CNN with the Auto classes)
from ..arguments import UnlearningArguments
from ..core import CoreGradientSpace
from ..data.forget import select_forget_indices, split_forget_retain
from ..data.loading import ensure_splits, load_raw, process_images, rename_label, tokenize
from ..evaluation import evaluate_unlearning, per_example_loss, write_report
from ..exact import TrainingRecipe, retrain_from_scratch
from ..trainer import UnlearningTrainer
from .arguments import ForgetSetArguments, ScriptArguments, parse_args

logger = logging.getLogger(__name__)


def load_model_and_data(script_args: ScriptArguments):
    seed = script_args.split_seed
    data = rename_label(
        load_raw(script_args.dataset_name, script_args.dataset_config, script_args.data_files, seed),
        script_args.label_column,
    )
    data = ensure_splits(data, script_args.eval_split, seed)
    processing_class = None
    if script_args.text_column:
        processing_class = AutoTokenizer.from_pretrained(script_args.model_name_or_path)
        data = tokenize(data, processing_class, script_args.text_column, script_args.max_length)
        model = AutoModelForSequenceClassification.from_pretrained(script_args.model_name_or_path)
    else:
        if script_args.image_column:
            processing_class = AutoImageProcessor.from_pretrained(script_args.model_name_or_path)
            data = process_images(data, processing_class, script_args.image_column)
        model = AutoModelForImageClassification.from_pretrained(script_args.model_name_or_path)
    eval_split = script_args.eval_split or next(s for s in ("validation", "test") if s in data)
    return model, data.with_format("torch"), eval_split, processing_class


def main(argv: list[str] | None = None) -> dict:
    """Parse the command line (and ``--config``), then run the recipe."""
    return run(*parse_args(argv))


def run(script_args: ScriptArguments, forget_args: ForgetSetArguments, args: UnlearningArguments) -> dict:
    logging.basicConfig(level=logging.INFO if args.should_log else logging.WARNING)
    model, data, eval_split, processing_class = load_model_and_data(script_args)
    train = data[script_args.train_split]
    forget, retain = split_forget_retain(train, select_forget_indices(train, **forget_args.selection()))
    space = None
    if script_args.core_gradient_space and Path(script_args.core_gradient_space).is_dir():
        space = CoreGradientSpace.from_pretrained(script_args.core_gradient_space, model)
    original = copy.deepcopy(model) if script_args.compare_with_retrain else None
    trainer = UnlearningTrainer(
        model=model,
        args=args,
        forget_dataset=forget,
        retain_dataset=retain,
        eval_dataset=data[eval_split],
        original_dataset=train if space is None else None,
        core_gradient_space=space,
        processing_class=processing_class,
    )
    trainer.train()
    metrics = trainer.evaluate()
    if script_args.compare_with_retrain:
        trainer.comparison = compare_with_retrain(script_args, trainer, original, forget, retain, data[eval_split])
    trainer.save_model()  # model, core_gradient_space/ and the model card
    if trainer.is_world_process_zero():
        Path(args.output_dir, "unlearning_metrics.json").write_text(json.dumps(metrics, indent=2))
    if args.push_to_hub:
        trainer.push_to_hub()
    return metrics


def compare_with_retrain(script_args, trainer, original, forget, retain, test) -> dict[str, dict[str, float]]:
    """Retrain without the forget set (cached), evaluate original / retrain / unlearned, write the report."""
    recipe = TrainingRecipe(
        num_train_epochs=script_args.retrain_epochs,
        learning_rate=script_args.retrain_learning_rate,
        per_device_train_batch_size=script_args.retrain_batch_size,
        seed=trainer.args.seed,
    )
    cache = script_args.retrain_cache_dir or str(Path(trainer.args.output_dir) / "retrain_cache")
    base = script_args.retrain_base_model
    retrained, seconds, _ = retrain_from_scratch(
        original.config, retain, recipe, cache_dir=cache, processing_class=trainer.processing_class, base_model=base
    )
    start = f"fine-tuned from `{base}`" if base else "trained from a random initialisation"
    logger.info("Reference: %s on the retain set with the original recipe", start)
    trainer.comparison_reference = start
    collate = trainer.base_collator
    results = {}
    for name, model, time_s in (
        ("original", original, None),
        ("retrain", retrained, seconds),
        (trainer.args.method, trainer.model, trainer.unlearning_seconds),
    ):
        results[name] = evaluate_unlearning(
            model,
            forget,
            retain,
            test,
            collate_fn=collate,
            reference_model=retrained,
            run_time=time_s,
            seed=trainer.args.seed,
        )
    if trainer.is_world_process_zero():
        histograms = {
            f"forget ({trainer.args.method})": per_example_loss(trainer.model, forget, collate_fn=collate),
            f"test ({trainer.args.method})": per_example_loss(trainer.model, test, collate_fn=collate),
            "forget (retrain)": per_example_loss(retrained, forget, collate_fn=collate),
        }
        write_report(
            results,
            trainer.args.output_dir,
            loss_histograms=histograms,
            title=f"{trainer.args.method} vs retraining (reference {start} on the retain set)",
        )
    return results


if __name__ == "__main__":
    main()
