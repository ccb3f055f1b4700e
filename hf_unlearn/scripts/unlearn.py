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
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, NamedTuple

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

from .. import models  # noqa: F401  (registers the small CNN with the Auto classes)
from ..cards.model_card import public_name
from ..core import CoreGradientSpace
from ..core.processing import is_tokenizer
from ..core.space_io import CONFIG_NAME
from ..data.causal_lm import CausalLMCollator, causal_lm_inputs, is_causal_lm
from ..data.columns import keep_model_columns
from ..data.forget import indices_from_file, select_forget_indices, split_forget_retain
from ..data.label_names import class_ids, encode_labels
from ..data.loading import (
    ensure_splits,
    file_rows_to_train_rows,
    load_raw,
    process_images,
    rename_label,
    tokenize,
)
from ..data.streams import collator_for
from ..data.tokenization import check_tokenizer, recorded_tokenization, resolve_max_length, tokenization_record
from ..evaluation import evaluate_unlearning, per_example_loss, write_report
from ..exact import retrain_from_scratch
from ..exact.retrain import default_reference_cache
from ..models.adapters import is_adapter_folder, load_merged_adapter, model_config_path, processor_path
from ..models.causal_lm import load_causal_lm
from ..protection import CGS_DIR, SpaceProtection, SpaceSettings
from ..training.arguments import UnlearningArguments
from ..training.trainer import UnlearningTrainer
from ..utils.zero3 import loading_whole
from .arguments import (
    ForgetSetArguments,
    ScriptArguments,
    parse_args,
    per_process_batch,
    reference_recipe,
    reference_recipe_words,
)
from .lora import with_fresh_adapter
from .sequential import run_sequential
from .text_column import infer_text_column, model_positions

logger = logging.getLogger(__name__)


class LoadedTask(NamedTuple):
    model: Any
    data: Any
    eval_split: str | None
    processing_class: Any
    kept_rows: list[int] | None  # the training file's rows that ``train`` kept (None: all of them)
    label_names: dict[str, int] | None = None  # name -> id when the files name their labels


def load_classifier(path: str, auto_class):
    """A saved classifier, or a LoRA adapter folder merged into its base (models/adapters.py)."""
    return load_merged_adapter(path, auto_class) if is_adapter_folder(path) else auto_class.from_pretrained(path)


def load_model_and_data(script_args: ScriptArguments) -> LoadedTask:
    seed = script_args.split_seed
    data = load_raw(
        script_args.dataset_name,
        script_args.dataset_config,
        script_args.data_files,
        seed,
        validation_file=script_args.validation_file,
    )
    causal_lm = is_causal_lm_task(script_args)
    if not causal_lm:  # an LM's targets are its texts' tokens
        data = rename_label(data, script_args.label_column)
    data, kept_rows = ensure_splits(data, script_args.eval_split, seed, script_args.validation_split_percentage)
    processing_class = None
    if causal_lm:  # texts stay raw: the trainer tokenises them, the ledger fingerprints the rows as given
        model, processing_class = load_causal_lm(script_args.model_name_or_path, script_args.gguf_file)
        eval_split = script_args.eval_split or next((s for s in ("validation", "test") if s in data), None)
        return LoadedTask(model, data, eval_split, processing_class, kept_rows)
    text_column = script_args.text_column or (
        None if script_args.image_column else infer_text_column(data, script_args.model_name_or_path))
    if text_column:
        processing_class = AutoTokenizer.from_pretrained(processor_path(script_args.model_name_or_path))
        data = tokenize(data, processing_class, text_column, script_args.max_length)
        model = load_classifier(script_args.model_name_or_path, AutoModelForSequenceClassification)
    else:
        if script_args.image_column:
            processing_class = AutoImageProcessor.from_pretrained(processor_path(script_args.model_name_or_path))
            data = process_images(data, processing_class, script_args.image_column)
        model = load_classifier(script_args.model_name_or_path, AutoModelForImageClassification)
    data, label_names = encode_labels(data, model.config)  # "ham"/"spam" in a csv become the model's ids
    eval_split = script_args.eval_split or next((s for s in ("validation", "test") if s in data), None)
    return LoadedTask(model, data.with_format("torch"), eval_split, processing_class, kept_rows, label_names)


def refuse_under_zero3(script_args: ScriptArguments, forget_args: ForgetSetArguments, args) -> None:
    """What the recipe cannot run on ZeRO-3's partitioned weights, said before anything loads."""
    plugin = getattr(args, "deepspeed_plugin", None)
    if plugin is None or plugin.zero_stage != 3:
        return
    if forget_args.num_requests > 1:
        raise ValueError("--num_requests > 1 is not supported under DeepSpeed ZeRO-3 (each request would start from "
                         "partitioned weights). Use ZeRO-2 or serve one request per run.")


def refuse_for_causal_lm(script_args: ScriptArguments, forget_args: ForgetSetArguments, args) -> None:
    """What the recipe does not do for causal LMs yet, said before anything runs; the token limit carried over."""
    if script_args.compare_with_retrain:
        raise ValueError(
            "--compare_with_retrain is for classifiers; for a causal LM measure the unlearned model against one "
            "fine-tuned without the forget texts with hf_unlearn.evaluation.lm (see benchmarks/lm_facts.py)."
        )
    if forget_args.num_requests > 1:
        raise ValueError("--num_requests > 1 is for classifiers; serve a causal LM's requests one recipe run each.")
    if args.lm_max_length is None:
        args.lm_max_length = script_args.max_length


def is_causal_lm_task(script_args: ScriptArguments) -> bool:
    """``--task``, or for ``auto`` whether the model's config names a causal-LM architecture."""
    if script_args.task != "auto":
        return script_args.task == "causal_lm"
    if script_args.gguf_file:
        return True
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    architectures = AutoConfig.from_pretrained(model_config_path(script_args.model_name_or_path)).architectures or []
    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    return any(a in causal or a.endswith("ForCausalLM") for a in architectures)


def main(argv: list[str] | None = None) -> dict:
    """Parse the command line (and ``--config``), then run the recipe."""
    return run(*parse_args(argv))


def run(script_args: ScriptArguments, forget_args: ForgetSetArguments, args: UnlearningArguments) -> dict:
    logging.basicConfig(level=logging.INFO if args.should_log else logging.WARNING)
    logger.info("Unlearning with %d process(es) on %s", args.world_size, args.device)
    refuse_under_zero3(script_args, forget_args, args)
    recorded, where = saved_tokenization(script_args)  # texts are cut as when the space was built
    script_args.max_length = resolve_max_length(script_args.max_length, recorded, where,
                                                model_positions(script_args.model_name_or_path))
    with loading_whole():  # ZeRO-3 partitions the weights when training starts, after the checks that read them
        model, data, eval_split, processing_class, kept_rows, label_names = load_model_and_data(script_args)
    if is_tokenizer(processing_class):
        check_tokenizer(recorded, processing_class, where)
    if is_causal_lm(model):
        refuse_for_causal_lm(script_args, forget_args, args)
    if forget_args.forget_class:  # names ("spam") as well as ids
        forget_args.forget_class = class_ids(forget_args.forget_class, label_names, model.config)
    if script_args.compare_with_retrain:
        per_process_batch(script_args.retrain_batch_size, args.world_size)  # refused before anything runs
    train = data[script_args.train_split]
    indices = forget_rows(script_args, forget_args, data, eval_split, kept_rows, label_names)
    forget, retain = split_forget_retain(train, indices)
    test = data[eval_split] if eval_split else None
    if test is None:
        logger.warning(
            "No held-out split: unlearning runs without a validation set (the sample-removal stop rule is off). "
            "Give --validation_file, or --validation_split_percentage if the model was not trained on all rows."
        )
    if script_args.compare_with_retrain and test is None:
        raise ValueError("--compare_with_retrain needs a held-out split to measure test accuracy on.")
    space = named_space(script_args, args, model, train, processing_class)
    if forget_args.num_requests > 1:  # a model's life of requests, served one after another
        if getattr(getattr(script_args, "lora", None), "use_peft", False):
            raise ValueError("--num_requests > 1 with --use_peft: a series reloads each request's model whole; "
                             "serve the requests without --use_peft, or one request per run on the adapter.")
        return run_sequential(script_args, forget_args, args, model=model, train=train, test=test, indices=indices,
                              processing_class=processing_class, space=space, collate_fn=collator_for(processing_class))
    original = copy.deepcopy(model) if script_args.compare_with_retrain else None
    lora = getattr(script_args, "lora", None)
    if lora is not None and lora.use_peft:  # after every check that reads the model: the space is the base model's
        model = with_fresh_adapter(model, lora)
    trainer = UnlearningTrainer(
        model=model,
        args=args,
        forget_dataset=forget,
        retain_dataset=retain,
        eval_dataset=test,
        original_dataset=train if space is None else None,
        core_gradient_space=space,
        processing_class=processing_class,
    )
    if script_args.dataset_name:  # the card names it in its metadata when it is a Hub id
        trainer.card_datasets = (script_args.dataset_name,)
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    # saved first: a failure in the comparison or the push below must never lose the unlearned model
    trainer.save_model(_internal_call=True)  # model, core_gradient_space/ and the model card
    metrics = trainer.evaluate()
    if trainer.is_world_process_zero():
        Path(args.output_dir, "unlearning_metrics.json").write_text(json.dumps(metrics, indent=2))
    if script_args.compare_with_retrain:
        with loading_whole():  # the reference is built and trained whole, like the original was loaded
            trainer.comparison = compare_with_retrain(script_args, trainer, original, forget, retain, test)
        trainer.create_model_card()  # the card now shows the measured comparison
    publish(trainer, script_args.push_dry_run)
    return metrics


def forget_rows(script_args: ScriptArguments, forget_args: ForgetSetArguments, data, eval_split, kept_rows,
                label_names) -> list[int]:
    """The training rows the request names: by class, fraction, filter, or an index file (whose row numbers refer to
    the user's file, before rows were dropped or split off)."""
    train = data[script_args.train_split]
    selection = forget_args.selection()
    if selection["index_file"] and kept_rows is not None:
        file_rows = indices_from_file(selection["index_file"], len(kept_rows) + len(data[eval_split]))
        return file_rows_to_train_rows(file_rows, kept_rows)
    return select_forget_indices(train, **selection, label_names=label_names, label_column=script_args.label_column)


def publish(trainer: UnlearningTrainer, dry_run: str | None) -> None:
    """``--push_dry_run DIR``: stage what ``--push_to_hub`` would upload and list it; else push when asked."""
    if dry_run:
        files = trainer.stage_for_hub(dry_run)
        if trainer.is_world_process_zero():
            listing = "\n".join(f"  {f} ({Path(dry_run, f).stat().st_size:,} bytes)" for f in files)
            print(f"Dry run: --push_to_hub would upload these {len(files)} files (written to {dry_run}):\n{listing}")
    elif trainer.args.push_to_hub:
        trainer.push_to_hub()


def saved_tokenization(script_args: ScriptArguments) -> tuple[dict | None, str]:
    """The tokenisation recorded by the space this run will use (``--core_gradient_space``, else the model
    folder's), read before anything loads, and that space's folder."""
    if script_args.build_core_gradient_space:
        return None, ""
    folder = script_args.core_gradient_space or str(Path(script_args.model_name_or_path, CGS_DIR))
    return recorded_tokenization(folder), folder


def named_space(script_args: ScriptArguments, args: UnlearningArguments, model, train, processing_class):
    """The space ``--core_gradient_space`` names: loaded (it must exist), or built and written there first.

    A mistyped folder used to be ignored and the space silently rebuilt, bypassing its ledger.
    """
    folder = script_args.core_gradient_space
    if folder is None:
        if script_args.build_core_gradient_space:
            raise ValueError("--build_core_gradient_space needs --core_gradient_space DIR: where to write it.")
        return None  # the trainer uses the space saved with the model, or builds one from the training set
    if Path(folder, CONFIG_NAME).is_file():
        if script_args.build_core_gradient_space:
            raise ValueError(f"{folder} already holds a Core Gradient Space: drop --build_core_gradient_space.")
        return CoreGradientSpace.from_pretrained(folder, model)
    if not script_args.build_core_gradient_space:
        raise FileNotFoundError(
            f"--core_gradient_space {folder}: no saved Core Gradient Space there ({CONFIG_NAME} missing). Check the "
            "path, or add --build_core_gradient_space true to build it from the training set and write it there."
        )
    logger.info("Building the Core Gradient Space from %d training examples into %s", len(train), folder)
    collate = collator_for(processing_class)
    inputs = train
    if is_causal_lm(model):  # the space of the tokens the trainer will feed, fingerprints of the rows as given
        options = {"mask_prompt": args.lm_mask_prompt, "max_length": args.lm_max_length or script_args.max_length}
        inputs, collate = causal_lm_inputs(train, processing_class, **options), CausalLMCollator.for_tokenizer(
            processing_class
        )
    protection = SpaceProtection(
        SpaceSettings.from_args(args), original_dataset=train, collate_fn=collate,
        world_size=args.world_size, process_index=args.process_index,
    )
    space = protection.build(model, keep_model_columns(model, inputs))
    if is_tokenizer(processing_class):  # later runs cut texts as this build did
        limit = args.lm_max_length or script_args.max_length if is_causal_lm(model) else script_args.max_length
        space.provenance["tokenization"] = tokenization_record(processing_class, limit)
    if args.process_index == 0:
        space.save_pretrained(folder)
    return space


def untouched_retrain_recipe(script_args) -> bool:
    """Whether the reference's recipe (epochs, learning rate, batch) is the arguments' defaults, i.e. likely unset."""
    defaults = {f.name: f.default for f in dataclasses.fields(script_args)}
    names = ("retrain_epochs", "retrain_learning_rate", "retrain_batch_size")
    return all(getattr(script_args, name) == defaults[name] for name in names)


def given_reference(path: str, original):
    """A reference the user trained: the original's class, refused when its labels differ from the original's."""
    reference = type(original).from_pretrained(path)
    ours, theirs = getattr(original.config, "num_labels", None), getattr(reference.config, "num_labels", None)
    if ours != theirs:
        raise ValueError(f"--reference_model {path} has {theirs} labels, the unlearned model {ours}: not a reference.")
    return reference


def retrained_reference(script_args, trainer, original, retain):
    """The original's recipe run on the retain set (cached; a bar with an ETA while it trains)."""
    recipe = reference_recipe(script_args, trainer.args.world_size, trainer.args.seed)
    cache = script_args.retrain_cache_dir or str(default_reference_cache())
    base = script_args.retrain_base_model
    overrides = {}
    if trainer.args.ddp_find_unused_parameters is not None:
        overrides["ddp_find_unused_parameters"] = trainer.args.ddp_find_unused_parameters
    retrained, seconds, _ = retrain_from_scratch(
        original.config,
        retain,
        recipe,
        cache_dir=cache,
        processing_class=trainer.processing_class,
        base_model=base,
        training_overrides=overrides,
        progress=trainer.is_world_process_zero(),
    )
    start = f"fine-tuned from `{public_name(base)}`" if base else "trained from a random initialisation"
    return retrained, seconds, start + f" {reference_recipe_words(script_args)}"


def compare_with_retrain(script_args, trainer, original, forget, retain, test) -> dict[str, dict[str, float]]:
    """Retrain without the forget set (cached), evaluate original / retrain / unlearned, write the report."""
    if script_args.reference_model:
        retrained, seconds = given_reference(script_args.reference_model, original), None
        start = f"given by --reference_model (`{public_name(script_args.reference_model)}`)"
    else:
        retrained, seconds, start = retrained_reference(script_args, trainer, original, retain)
    logger.info("Reference: %s on the retain set", start)
    if not script_args.reference_model and untouched_retrain_recipe(script_args):
        # a new user's ResNet trained 5 epochs was compared with a 40-epoch reference: Avg. Gap 2.11 "farther than
        # the original's 1.62"; with its own recipe (5 epochs, batch 64) the same unlearned model read 0.59 vs 2.96
        logger.warning(
            "The reference uses the recipe defaults (--retrain_epochs %g --retrain_learning_rate %g "
            "--retrain_batch_size %d). If the original was trained otherwise, pass its recipe: a reference trained "
            "longer or shorter than the original moves every gap in this report.",
            script_args.retrain_epochs, script_args.retrain_learning_rate, script_args.retrain_batch_size,
        )
    trainer.comparison_reference = start
    collate = trainer.base_collator
    # the model sees only its input columns (raw text would reach it otherwise)
    forget, retain, test = (keep_model_columns(trainer.model, d) for d in (forget, retain, test))
    results = {}
    forgotten = trainer.forgotten_classes  # class removal: TA on the kept classes, for every model alike
    for name, model, time_s in (
        ("original", original, None),
        ("retrain", retrained, seconds),
        (trainer.args.method, trainer.model, trainer.unlearning_seconds),
    ):
        logger.info("Evaluating the %s model on forget, retain and test sets for the report", name)
        results[name] = evaluate_unlearning(
            model,
            forget,
            retain,
            test,
            collate_fn=collate,
            reference_model=retrained,
            run_time=time_s,
            seed=trainer.args.seed,
            mia_draws=script_args.mia_draws,
            forgotten_classes=forgotten,
        )
    histograms = {  # every process runs these passes: under ZeRO-3 a forward gathers weights from all of them
        f"forget ({trainer.args.method})": per_example_loss(trainer.model, forget, collate_fn=collate),
        f"test ({trainer.args.method})": per_example_loss(trainer.model, test, collate_fn=collate),
        "forget (retrain)": per_example_loss(retrained, forget, collate_fn=collate),
    }
    if trainer.is_world_process_zero():
        write_report(
            results,
            trainer.args.output_dir,
            loss_histograms=histograms,
            title=f"{trainer.args.method} vs retraining (reference {start} on the retain set)",
        )
    return results


if __name__ == "__main__":
    main()
