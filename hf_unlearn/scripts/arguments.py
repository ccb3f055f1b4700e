"""The recipe's arguments: where the model and data are, which examples to forget, and the parse.

Parsing is two-phase so every method's hyperparameters are reachable and documented from the
command line and YAML without a shared list of prefixed fields: the method is read first (from
``--method`` or the YAML file, default ``pgu``), then its ``MethodConfig`` joins the parser, so
``--help`` shows exactly the options that run takes. A YAML file gives typed parser defaults
(command-line flags still win, see yaml_config.py), and a key no dataclass knows is refused by name.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser, TrainingArguments

from ..exact import TrainingRecipe
from ..methods import METHODS, get_method
from ..training.arguments import UnlearningArguments
from .lora import LoraArguments
from .user_errors import parse_known_flags
from .yaml_config import apply_yaml_defaults, load_yaml_config


@dataclass
class ScriptArguments:
    _argument_group_name = "model and data"

    model_name_or_path: str = field(metadata={"help": "A local model folder or a Hub id."})
    task: str = field(
        default="auto",
        metadata={
            "help": "'classification', 'causal_lm' (texts or prompt/answer pairs are forgotten token by token), or "
            "'auto': causal_lm when the model's config names a causal-LM architecture."
        },
    )
    gguf_file: str | None = field(
        default=None, metadata={"help": "Causal LMs: a GGUF file in the model folder to load (dequantised to float32)."}
    )
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Hub id, local dataset folder, or 'digits' / 'mnist5k' / 'fictitious_facts' (embedded)."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Dataset configuration name."})
    data_files: list[str] | None = field(default=None, metadata={"help": "Local csv/json/parquet training files."})
    train_split: str = field(default="train", metadata={"help": "Split the model was trained on."})
    eval_split: str | None = field(
        default=None, metadata={"help": "Held-out split; unset: the dataset's validation split, else its test split."}
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "A held-out csv/json/parquet file (with --data_files): drives the stop rule."}
    )
    validation_split_percentage: float | None = field(
        default=None,
        metadata={
            "help": "Carve this percent of the training data as validation when the dataset has no held-out split "
            "(only if the model was not trained on it). Default: no carving, and no validation set."
        },
    )
    label_column: str = field(default="labels", metadata={"help": "Label column."})
    text_column: str | None = field(default=None, metadata={"help": "Text column (text models)."})
    image_column: str | None = field(default=None, metadata={"help": "Image column (raw images to preprocess)."})
    max_length: int | None = field(
        default=None,
        metadata={"help": "Token limit for text models (as the model was trained); unset: the limit the model's saved "
                  "Core Gradient Space was built with, else 128. A space records it: a different one is refused."},
    )
    split_seed: int = field(default=0, metadata={"help": "Seed of the split for datasets without a held-out split."})
    core_gradient_space: str | None = field(
        default=None,
        metadata={
            "help": "A saved Core Gradient Space folder for the model (it must exist, unless "
            "--build_core_gradient_space). Default: the one saved with the model, else built from the training set."
        },
    )
    build_core_gradient_space: bool = field(
        default=False,
        metadata={"help": "Build the space from the training set and write it to --core_gradient_space first."},
    )
    compare_with_retrain: bool = field(
        default=False, metadata={"help": "Also retrain from scratch without the forget set and write a report."}
    )
    retrain_epochs: float = field(default=40.0, metadata={"help": "Epochs of the original recipe (for retraining)."})
    retrain_learning_rate: float = field(default=2e-3, metadata={"help": "Learning rate of the original recipe."})
    retrain_batch_size: int = field(
        default=32,
        metadata={"help": "Batch size of the original recipe: what one optimizer step saw, split over the processes."},
    )
    retrain_weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay of the original recipe."})
    retrain_label_smoothing: float = field(
        default=0.0, metadata={"help": "label_smoothing_factor of the original recipe (e.g. 0.1 for many ViT recipes)."}
    )
    retrain_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where retrained references are cached; unset: $HF_UNLEARN_HOME/references "
                  "(~/.cache/hf_unlearn/references), outside the output folder."},
    )
    reference_model: str | None = field(
        default=None,
        metadata={
            "help": "With --compare_with_retrain: an existing model retrained without the forget set (folder or Hub "
            "id) to compare with, instead of retraining one. Its training time is unknown, so no speed-up is shown."
        },
    )
    mia_draws: int = field(
        default=10,
        metadata={
            "help": "The comparison's MIA-efficacy: mean over this many balanced attacker draws (1 = SalUn's single "
            "draw, which can flip a model's reading between ~2 and ~100 percent on one request; docs/evaluation.md)."
        },
    )
    push_dry_run: str | None = field(
        default=None,
        metadata={
            "help": "Instead of pushing, write exactly what --push_to_hub would upload (files, card, and the space "
            "with --push_core_gradient_space) to this folder and list it."
        },
    )
    retrain_base_model: str | None = field(
        default=None,
        metadata={
            "help": "The pretrained checkpoint the original was fine-tuned from (folder or Hub id): the reference "
            "is then fine-tuned from it on the retain set. Without it the reference starts from random weights, "
            "which for a fine-tuned model gives a reference that may only predict the majority class."
        },
    )

    def __post_init__(self):
        if self.task not in ("auto", "classification", "causal_lm"):
            raise ValueError(f"task must be 'auto', 'classification' or 'causal_lm', got {self.task!r}")
        if self.mia_draws < 1:
            raise ValueError(f"mia_draws must be at least 1, got {self.mia_draws}")
        if self.reference_model and not self.compare_with_retrain:
            raise ValueError("--reference_model is the reference of the comparison: add --compare_with_retrain true.")
        if self.reference_model and self.reference_model.startswith((".", "/", "~")):
            if not Path(self.reference_model).expanduser().is_dir():
                raise ValueError(f"--reference_model {self.reference_model}: no such folder.")


@dataclass
class ForgetSetArguments:
    """Which training examples the request names (exactly one way)."""

    _argument_group_name = "forget set"

    forget_index_file: str | None = field(
        default=None, metadata={"help": "File of training-set row indices to forget (one per line, or JSON list)."}
    )
    forget_class: list[str] | None = field(
        default=None, metadata={"help": "Forget every example of these labels: ids (3) or names (spam)."}
    )
    forget_fraction: float | None = field(default=None, metadata={"help": "Forget a random fraction of training."})
    forget_seed: int = field(default=0, metadata={"help": "Seed of the random forget fraction."})
    forget_filter: str | None = field(
        default=None,
        metadata={
            "help": "Forget rows where COLUMN==VALUE (also !=, <, <=, >, >=, in), or text: "
            "'text contains \"555-0199\"' (substring), 'text matches \"\\d{3}-\\d{4}\"' (regular expression)."
        },
    )
    num_requests: int = field(
        default=1,
        metadata={
            "help": "Serve the forget set as N deletion requests, one after another on the same model (one class "
            "each when --forget_class names N classes, else N random parts): output_dir/request-NNNN per request; "
            "the same command resumes after a crash."
        },
    )

    def __post_init__(self):
        if self.forget_class:  # ids stay ids; names are resolved once the model and data are loaded
            self.forget_class = [int(c) if str(c).lstrip("-").isdigit() else c for c in self.forget_class]
        if self.forget_fraction is not None and not 0.0 < self.forget_fraction < 1.0:
            raise ValueError(f"forget_fraction must lie in (0, 1), got {self.forget_fraction}")
        chosen = [
            n for n in ("forget_index_file", "forget_class", "forget_fraction", "forget_filter") if getattr(self, n)
        ]
        if len(chosen) > 1:
            raise ValueError(f"Choose the forget set one way only; got {chosen}.")
        if self.num_requests < 1:
            raise ValueError(f"num_requests must be at least 1, got {self.num_requests}")

    def selection(self) -> dict:
        """Keyword arguments of ``data.forget.select_forget_indices``."""
        return dict(
            index_file=self.forget_index_file,
            classes=self.forget_class,
            fraction=self.forget_fraction,
            seed=self.forget_seed,
            filter_expression=self.forget_filter,
        )


def reference_recipe(script_args: ScriptArguments, world_size: int, seed: int) -> TrainingRecipe:
    """The original's recipe as the ``--retrain_*`` flags give it, for the reference trained without the forget set."""
    return TrainingRecipe(
        num_train_epochs=script_args.retrain_epochs,
        learning_rate=script_args.retrain_learning_rate,
        per_device_train_batch_size=per_process_batch(script_args.retrain_batch_size, world_size),
        weight_decay=script_args.retrain_weight_decay,
        label_smoothing_factor=script_args.retrain_label_smoothing,
        seed=seed,
    )


def reference_recipe_words(script_args: ScriptArguments) -> str:
    """The reference's recipe in words, for the log, the card and the report."""
    words = (f"for {script_args.retrain_epochs:g} epochs at learning rate {script_args.retrain_learning_rate:g}, "
             f"batch {script_args.retrain_batch_size}")
    if script_args.retrain_weight_decay:
        words += f", weight decay {script_args.retrain_weight_decay:g}"
    if script_args.retrain_label_smoothing:
        words += f", label smoothing {script_args.retrain_label_smoothing:g}"
    return words


def per_process_batch(total: int, world_size: int) -> int:
    """Each of ``world_size`` processes' share of the original recipe's batch (the reference must take as many
    optimizer steps as the original did: 2 processes of 16 each would halve them, and under-train it)."""
    per, rest = divmod(total, world_size)
    if rest or per == 0:
        raise ValueError(
            f"--retrain_batch_size {total} cannot be split evenly over {world_size} processes: the reference is "
            f"trained with the original recipe's batch per optimizer step. Use a multiple of {world_size}, or fewer "
            "processes."
        )
    return per


def _option(argv: list[str], name: str) -> str | None:
    for i, token in enumerate(argv):
        if token == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
        if token.startswith(f"--{name}="):
            return token.split("=", 1)[1]
    return None


# the TrainingArguments an unlearning run commonly sets; ``--help_all`` lists the other hundred-odd
COMMON_TRAINING_OPTIONS = frozenset(
    {
        "seed",
        "per_device_eval_batch_size",
        "gradient_accumulation_steps",
        "weight_decay",
        "max_grad_norm",
        "lr_scheduler_type",
        "logging_steps",
        "save_strategy",
        "save_steps",
        "save_total_limit",
        "resume_from_checkpoint",
        "overwrite_output_dir",
        "push_to_hub",
        "hub_model_id",
        "hub_private_repo",
        "report_to",
        "use_cpu",
        "bf16",
        "fp16",
        "dataloader_num_workers",
        "deepspeed",
    }
)


def build_parser(method: str, show_all: bool = False) -> HfArgumentParser:
    """The recipe's parser for ``method``: its hyperparameters join the script and training options.

    ``--help`` lists, in this order: model and data, the forget set, the unlearning options (the
    method, the space, the guard and stop rules), the method's hyperparameters, and only then
    the TrainingArguments a run commonly sets (``--help_all`` lists all of them).
    """
    config_class = get_method(method).config_class
    config_class._argument_group_name = f"{method} hyperparameters"
    parser = HfArgumentParser(
        (ScriptArguments, ForgetSetArguments, LoraArguments, config_class, UnlearningArguments),
        description="Make a classifier or a causal LM forget part of its training data. Methods: "
        f"{', '.join(['auto', *METHODS])} (hf-unlearn methods NAME). Options can also come from "
        "--config FILE.yaml (option: value pairs; ./ and ../ paths are relative to the file; flags win).",
    )
    training_fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    own = {f.name for f in dataclasses.fields(UnlearningArguments)} - training_fields
    own |= {"learning_rate", "optim", "num_train_epochs", "per_device_train_batch_size", "output_dir"}
    unlearning = parser.add_argument_group("unlearning (UnlearningArguments)")
    for group in parser._action_groups:
        if group is unlearning:
            continue
        for action in [a for a in group._group_actions if a.dest in own]:
            group._group_actions.remove(action)
            unlearning._group_actions.append(action)
    parser._action_groups.remove(unlearning)
    method_group = next(g for g in parser._action_groups if g.title == config_class._argument_group_name)
    parser._action_groups.insert(parser._action_groups.index(method_group), unlearning)
    parser.usage = (
        f"{program_name()} [--config FILE.yaml] --model_name_or_path MODEL (--dataset_name NAME | --data_files F) "
        "(--forget_class C | --forget_fraction P | --forget_filter EXPR | --forget_index_file F) [--method NAME] "
        "[options]"
    )
    model_group = next(g for g in parser._action_groups if g.title == "model and data")
    model_group.add_argument(
        "--config", help="A YAML file of option: value pairs (./ and ../ paths relative to it; flags win)."
    )
    training = next(g for g in parser._action_groups if g.title == "options")
    training.title = "training (TrainingArguments; the unlearning defaults above replace some of them)"
    parser._action_groups.remove(training)
    parser._action_groups.append(training)
    if not show_all:
        hidden = [a for a in training._group_actions if a.dest not in COMMON_TRAINING_OPTIONS]
        for action in hidden:
            action.help = argparse.SUPPRESS
        training.title += f"; {len(hidden)} more with --help_all"
    model_group.add_argument("--help_all", action="help", help="Show every option, all TrainingArguments included.")
    return parser


def program_name() -> str:
    """How this run was started, for the usage line: the console command or the script's path."""
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "hf-unlearn unlearn" if script in ("hf-unlearn", "cli.py", "") else sys.argv[0]


def parse_args(argv: list[str] | None = None):
    """``(script_args, forget_args, args)`` from flags, optionally on top of ``--config file.yaml``; the LoRA options
    ride on ``script_args.lora``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    values: dict = {}
    config_path = _option(argv, "config")
    if config_path is not None:
        values = load_yaml_config(config_path)
        argv = [
            t
            for i, t in enumerate(argv)
            if t != "--config" and not t.startswith("--config=") and not (i > 0 and argv[i - 1] == "--config")
        ]
    method = _option(argv, "method") or values.get("method", "auto")
    parser = build_parser(method, show_all="--help_all" in argv or "--help-all" in argv)
    if values:
        apply_yaml_defaults(parser, values, f"--config {config_path}", method)
    script_args, forget_args, lora_args, method_config, args, *_ = parse_known_flags(parser, argv)
    script_args.lora = lora_args  # read with getattr: a ScriptArguments made in Python has none
    # named flags (--pgu_delta) win over --method_kwargs JSON, which wins over the method's defaults
    defaults = type(method_config)().to_dict()
    merged = args.method_config.to_dict()
    merged.update({k: v for k, v in method_config.to_dict().items() if v != defaults[k]})
    args.set_method_config(merged)
    return script_args, forget_args, args
