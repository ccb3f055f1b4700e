"""Fine-tuning a causal LM on texts the way users do (plain ``Trainer``, optionally LoRA, merged after).

The same function makes the original and the reference a forgetting run is compared with: the
reference is the base model fine-tuned with the same recipe on the retain texts only, which is what
"retrained without the forget set" means for a pretrained LM.
"""

from __future__ import annotations

import copy
import time

from torch import nn
from transformers import Trainer

from ..data.causal_lm import CausalLMCollator, tokenize_for_causal_lm
from .retrain import TrainingRecipe


def fine_tune_causal_lm(
    base: nn.Module,
    texts,
    tokenizer,
    recipe: TrainingRecipe,
    output_dir: str,
    *,
    lora_config=None,
    mask_prompt: bool = True,
    max_length: int | None = None,
) -> tuple[nn.Module, float]:
    """A copy of ``base`` fine-tuned on ``texts`` (``text`` or prompt/answer columns); seconds it took.

    With ``lora_config`` (a ``peft.LoraConfig``) only the adapter trains and is merged into the returned
    plain model. ``base`` is never modified.
    """
    model = copy.deepcopy(base)
    if lora_config is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config)
    rows = tokenize_for_causal_lm(texts, tokenizer, mask_prompt=mask_prompt, max_length=max_length)
    args = recipe.training_arguments(output_dir, disable_tqdm=False, logging_strategy="epoch")
    collate = CausalLMCollator.for_tokenizer(tokenizer)
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    if lora_config is not None:
        model = model.merge_and_unload()
    return model.eval(), seconds
