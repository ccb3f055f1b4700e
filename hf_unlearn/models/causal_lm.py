"""Loading a causal LM to unlearn, GGUF checkpoints included.

transformers dequantises a GGUF file to ordinary float32 weights but still marks the model as
"quantized with GGUF", and ``Trainer`` then refuses to train it. The weights are plain tensors, so
the marker is dropped here (and said in the log): the model trains and saves like any other.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)


def load_causal_lm(
    path: str, gguf_file: str | None = None, dtype: torch.dtype = torch.float32
) -> tuple[nn.Module, object]:
    """The model (in ``dtype``) and its tokenizer from a folder or Hub id, optionally from ``gguf_file`` in it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .adapters import is_adapter_folder, load_merged_adapter, processor_path

    options = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(processor_path(path), **options)
    if is_adapter_folder(path) and not gguf_file:  # a LoRA adapter: merged into its base (models/adapters.py)
        return load_merged_adapter(path, AutoModelForCausalLM).to(dtype), tokenizer
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **options)
    if gguf_file:
        drop_dequantised_marker(model)
    return model, tokenizer


def drop_dequantised_marker(model: nn.Module) -> None:
    """Forget that the weights came from a GGUF file: they are dequantised, ordinary trainable tensors."""
    if any(p.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64) for p in model.parameters()):
        raise ValueError("Some weights are still quantized: only dequantised GGUF checkpoints can be unlearned.")
    model.hf_quantizer = None
    model.is_quantized = False
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    logger.info("GGUF checkpoint dequantised to %s: training it like any float model", next(model.parameters()).dtype)
