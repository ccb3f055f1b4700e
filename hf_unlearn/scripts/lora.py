"""The recipe's LoRA options: unlearn through a fresh PEFT adapter instead of the model's own weights.

The flags are TRL's (``--use_peft --lora_r 8 --lora_alpha 16 --lora_target_modules q_proj v_proj``), so a
user of TRL's scripts already knows them. The adapter is made after every check that reads the model (the
space is the base model's), and the run saves the adapter with its card; ``merge_and_unload`` or the
recipe's adapter-folder loading gives the full unlearned model (docs/quickstart.md §4).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from torch import nn

logger = logging.getLogger(__name__)


@dataclass
class LoraArguments:
    _argument_group_name = "LoRA (PEFT)"

    use_peft: bool = field(
        default=False,
        metadata={
            "help": "Unlearn through a fresh LoRA adapter (PGU aims its A at the forget inputs outside the retain "
            "space); the output folder holds the adapter. Needs peft."
        },
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (the adapter's output is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Module names (or 'all-linear') to adapt. Default: PEFT's choice for the architecture."},
    )
    lora_modules_to_save: list[str] | None = field(
        default=None,
        metadata={
            "help": "Modules trained whole beside the adapter (an image classifier's head: classifier). Text "
            "classifiers and causal LMs get PEFT's default for their task."
        },
    )

    def __post_init__(self):
        if self.lora_r < 1 or self.lora_alpha <= 0 or not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(
                f"LoRA needs lora_r >= 1, lora_alpha > 0 and 0 <= lora_dropout < 1; got {self.lora_r}, "
                f"{self.lora_alpha}, {self.lora_dropout}"
            )


def task_type_of(model: nn.Module) -> str | None:
    """PEFT's task type for the model's head: CAUSAL_LM, SEQ_CLS, or None (image classifiers: PEFT has none)."""
    name = type(model).__name__  # the class loaded, not the config's record of the one saved
    if name.endswith(("ForCausalLM", "LMHeadModel")):
        return "CAUSAL_LM"
    if name.endswith("ForSequenceClassification"):
        return "SEQ_CLS"
    return None


def with_fresh_adapter(model: nn.Module, options: LoraArguments) -> nn.Module:
    """``model`` wrapped in a new LoRA adapter as ``options`` say (B starts at zero: no prediction changes)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:
        raise ImportError("--use_peft needs peft: pip install 'peft>=0.13'") from error
    task = task_type_of(model)
    to_save = options.lora_modules_to_save
    if task is None and not to_save:
        logger.warning(
            "--use_peft on a model with no PEFT task type (%s): its head stays frozen unless you name it with "
            "--lora_modules_to_save (usually classifier)", type(model).__name__
        )
    config = LoraConfig(
        task_type=task, r=options.lora_r, lora_alpha=options.lora_alpha, lora_dropout=options.lora_dropout,
        target_modules=options.lora_target_modules, modules_to_save=to_save,
    )
    try:
        adapted = get_peft_model(model, config)
    except ValueError as error:
        if options.lora_target_modules is not None:
            raise
        ends = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))})
        raise ValueError(
            f"PEFT has no default LoRA targets for {type(model).__name__}: name them with --lora_target_modules "
            f"(its Linear / Conv2d layers are named ... {', '.join(ends)}), or all-linear."
        ) from error
    trainable, total = adapted.get_nb_trainable_parameters()
    logger.info("Unlearning through a fresh LoRA adapter: %d of %d parameters trainable", trainable, total)
    return adapted
