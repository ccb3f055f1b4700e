"""Retrain-from-scratch: the reference every unlearning result is measured against.

A retrained model is what the forget request *means*: the same recipe run on the retain set only.
It is expensive, so results are cached under a key made of the model config, the fingerprints of
the retain examples, the recipe and the seed; a second request for the same reference loads it and
reports the wall time the original retraining took.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification, Trainer, TrainingArguments

from ..core import fingerprint_examples
from ..core.fingerprint import digest
from ..core.ledger_key import key_path
from ..data.columns import keep_model_columns
from ..data.memory import materialize
from ..utils.heap import frozen_heap

logger = logging.getLogger(__name__)
META_NAME = "retrain_meta.json"


def default_reference_cache() -> Path:
    """Where references are cached unless a run names a folder: beside the ledger key, outside any output folder
    (a reference is a second full model; kept in ``output_dir`` it multiplied the folder's size)."""
    return key_path().parent / "references"


@dataclass
class TrainingRecipe:
    """How the original model was trained; retraining must use the very same recipe."""

    num_train_epochs: float = 40.0
    per_device_train_batch_size: int = 32
    learning_rate: float = 2e-3
    optim: str = "adamw_torch"
    weight_decay: float = 0.0
    lr_scheduler_type: str = "linear"
    label_smoothing_factor: float = 0.0  # a model trained with smoothed labels is never fully sure of any example
    seed: int = 0

    def training_arguments(self, output_dir: str, **overrides) -> TrainingArguments:
        values = {
            **asdict(self),
            "output_dir": output_dir,
            "save_strategy": "no",
            "report_to": "none",
            "logging_strategy": "no",
            "disable_tqdm": True,
            "use_cpu": not torch.cuda.is_available(),
            **overrides,
        }
        return TrainingArguments(**values)


def train_classifier(
    model,
    train_dataset,
    recipe: TrainingRecipe,
    *,
    output_dir: str,
    data_collator=None,
    processing_class=None,
    **training_overrides,
) -> float:
    """Train ``model`` in place with ``recipe``; returns the wall time in seconds.

    Small fixed-shape datasets are read into memory first (as the unlearning trainer does), so a
    comparison of wall times measures training, not Arrow formatting.
    """
    if len(train_dataset) == 0:
        raise ValueError("Cannot train on an empty dataset.")
    start = time.perf_counter()
    trainer = Trainer(
        model=model,
        args=recipe.training_arguments(output_dir, **training_overrides),
        train_dataset=materialize(keep_model_columns(model, train_dataset)),
        data_collator=data_collator,
        processing_class=processing_class,
    )
    with frozen_heap():  # the same start-of-training GC saving the unlearning trainer gets
        trainer.train()
    return time.perf_counter() - start


def _auto_class(config):
    archs = " ".join(getattr(config, "architectures", None) or [])
    return AutoModelForSequenceClassification if "SequenceClassification" in archs else AutoModelForImageClassification


# set by transformers when a model is built, trained or saved: not part of what defines the model
_RUNTIME_CONFIG_KEYS = ("architectures", "use_cache", "dtype", "torch_dtype", "_name_or_path", "transformers_version")


def retrain_key(config, retain_dataset, recipe: TrainingRecipe, base_model: str | Path | None = None) -> str:
    """The cache key of a reference: the model's defining config, the retain rows, the recipe (and the base)."""
    defining = {k: v for k, v in config.to_dict().items() if k not in _RUNTIME_CONFIG_KEYS}
    rows = fingerprint_examples(retain_dataset, retain_dataset.column_names)
    base = [f"base:{base_model}"] if base_model is not None else []
    return digest(*base, defining, rows, asdict(recipe), length=16)


def retrain_from_scratch(
    config,
    retain_dataset,
    recipe: TrainingRecipe,
    *,
    cache_dir: str | Path | None = None,
    model_class=None,
    data_collator=None,
    processing_class=None,
    base_model: str | Path | None = None,
    training_overrides: dict | None = None,
    progress: bool = False,
):
    """The reference: ``recipe`` run on ``retain_dataset`` only, from where the original started.

    For a model trained from scratch that is a fresh initialisation of ``config``. For a model
    fine-tuned from a pretrained checkpoint, pass ``base_model`` (a local folder or Hub id): the
    reference is fine-tuned from that same base (heads the base lacks are initialised as for the
    original), since a model retrained from random weights may only predict the majority class.
    Returns ``(model, seconds, from_cache)``. ``seconds`` is the wall time of the training that
    produced the model, also when it comes from the cache. ``model_class`` defaults to the Auto
    class matching ``config.architectures``. ``training_overrides`` are extra ``TrainingArguments`` that do
    not change what is learnt (e.g. ``ddp_find_unused_parameters`` under ``accelerate launch``). ``progress`` shows
    the Trainer's bar with its ETA (a reference can take longer than the request it judges).
    """
    model_class = model_class or _auto_class(config)
    key = retrain_key(config, retain_dataset, recipe, base_model)
    target = Path(cache_dir) / f"retrain-{key}" if cache_dir is not None else None
    if target is not None and (target / META_NAME).is_file():
        meta = json.loads((target / META_NAME).read_text())
        logger.info("Reusing the cached reference in %s (trained in %.0f s)", target, float(meta["seconds"]))
        return model_class.from_pretrained(target), float(meta["seconds"]), True
    start = f"fine-tuning {base_model}" if base_model is not None else "training from a random initialisation"
    logger.info("Retraining the reference: %s on %d retain examples", start, len(retain_dataset))
    torch.manual_seed(recipe.seed)
    if base_model is not None:
        model = model_class.from_pretrained(base_model, config=copy.deepcopy(config))
    else:
        model = model_class.from_config(copy.deepcopy(config))
    seconds = train_classifier(
        model,
        retain_dataset,
        recipe,
        output_dir=str(target or Path("outputs") / "retrain"),
        data_collator=data_collator,
        processing_class=processing_class,
        **({"disable_tqdm": False} if progress else {}),
        **(training_overrides or {}),
    )
    if target is not None:
        model.save_pretrained(target)
        meta = {
            "seconds": seconds,
            "key": key,
            "num_examples": len(retain_dataset),
            "recipe": asdict(recipe),
            "start": str(base_model) if base_model is not None else "random initialisation",
        }
        (target / META_NAME).write_text(json.dumps(meta, indent=2))
    return model, seconds, False
