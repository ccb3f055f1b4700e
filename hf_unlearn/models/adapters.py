"""A classifier fine-tuned with LoRA and saved as a PEFT adapter folder, unlearned as the model it stands for.

An adapter folder holds ``adapter_config.json`` and the adapter's weights, not a model: what the user's
model knows lives in base and adapter together. The adapter is merged into its base
(``merge_and_unload``) and the merged weights are what the space describes and the run changes, so the
output is a full model. Training the adapter itself is no alternative: the trainer keeps a *fresh*
adapter's ``lora_A`` orthogonal to the space by projecting it at the start, which on a trained adapter
would change the model's predictions before the first step.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

from torch import nn

logger = logging.getLogger(__name__)
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"  # PEFT's default; an older .bin adapter loads without the head's size


def is_adapter_folder(path: str | Path) -> bool:
    """A local folder with a PEFT adapter and no model of its own."""
    folder = Path(path)
    return (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file()


def adapter_base(path: str | Path) -> str:
    """The base checkpoint the adapter was trained on (a Hub id or a local path), as PEFT recorded it."""
    config = json.loads((Path(path) / ADAPTER_CONFIG).read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{Path(path) / ADAPTER_CONFIG} names no base_model_name_or_path: cannot tell what it adapts.")
    return str(base)


def _saved_head_labels(path: Path) -> int | None:
    """How many labels the adapter's saved classifier head predicts (its ``modules_to_save`` copy), if saved."""
    weights = path / ADAPTER_WEIGHTS
    if not weights.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as handle:
        heads = [k for k in handle.keys() if "lora_" not in k and k.endswith(("classifier.weight", "score.weight"))]
        if heads:
            return int(handle.get_slice(heads[0]).get_shape()[0])
    return None


def load_merged_adapter(path: str | Path, auto_class) -> nn.Module:
    """Base (from the adapter's record) + adapter, merged into plain weights; ``name_or_path`` names the adapter."""
    if importlib.util.find_spec("peft") is None:
        raise ImportError(f"{path} is a PEFT adapter folder; loading it needs peft: pip install peft")
    from peft import PeftModel

    folder = Path(path)
    base_name = adapter_base(folder)
    num_labels = _saved_head_labels(folder)
    # the adapter's own head replaces the base's, whose size may differ (a pretrained base has none of the task)
    options = {"num_labels": num_labels, "ignore_mismatched_sizes": True} if num_labels else {}
    base = auto_class.from_pretrained(base_name, **options)
    merged = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    merged.requires_grad_(True)  # PEFT loads an adapter for inference: every base weight frozen
    merged.config._name_or_path = str(folder)  # the card names what the user gave, not only its base
    merged.name_or_path = str(folder)
    merged.merged_adapter_base = base_name  # the card says what was merged into what
    logger.warning(
        "%s is a LoRA adapter of %s: merged into the base for unlearning. The space, the run and the saved result "
        "are the merged full model (build the space with the same command: the merge is repeated the same way).",
        folder, base_name,
    )
    return merged


def processor_path(path: str | Path) -> str:
    """Where to load the tokenizer or image processor from: the adapter folder when it saved one, else its base."""
    folder = Path(path)
    if not is_adapter_folder(folder):
        return str(path)
    saved = any((folder / name).is_file() for name in ("tokenizer_config.json", "preprocessor_config.json"))
    return str(folder) if saved else adapter_base(folder)


def model_config_path(path: str | Path) -> str:
    """Where the model's config lives: an adapter folder's base, else the folder itself."""
    return adapter_base(path) if is_adapter_folder(path) else str(path)
