"""Texts for a causal language model: which models are LMs, how their examples become token batches.

A causal LM unlearns documents, not labels: an example is a text (``text`` column) or a prompt and
its answer (``prompt``/``question`` + ``completion``/``answer``/``response``). Its labels are its
own token ids, shifted inside the model, with padding and (by default) the prompt's tokens set to
-100 so that only what the model should no longer say is forgotten. The same function tokenises the
training data, so a model fine-tuned with it and unlearned with the trainer sees identical tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from ..core.layers import is_peft_model

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # what transformers' causal-LM losses skip
TEXT_COLUMNS = ("text",)
PROMPT_COLUMNS = ("prompt", "question")
ANSWER_COLUMNS = ("completion", "answer", "response")


def is_causal_lm(model: nn.Module) -> bool:
    """A transformers causal LM (``AutoModelForCausalLM`` classes, GPT-2's ``LMHeadModel``), PEFT-wrapped or not."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if is_peft_model(model):
        model = model.get_base_model()
    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    return any(cls.__name__ in causal or cls.__name__.endswith("ForCausalLM") for cls in type(model).__mro__)


def text_columns(column_names) -> tuple[str | None, str] | None:
    """(prompt column or None, text/answer column) of a raw text dataset; None if it has none of them."""
    columns = list(column_names)
    prompt = next((c for c in PROMPT_COLUMNS if c in columns), None)
    answer = next((c for c in ANSWER_COLUMNS if c in columns), None)
    if prompt and answer:
        return prompt, answer
    text = next((c for c in TEXT_COLUMNS if c in columns), None)
    return (None, text) if text else None


def _ids(tokenizer, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def tokenize_example(
    tokenizer, text: str, prompt: str | None = None, *, mask_prompt: bool = True, max_length: int | None = None
) -> dict[str, list[int]]:
    """One example's ``input_ids``, ``attention_mask`` and ``labels`` (the prompt's labels -100 when masked).

    The answer is tokenised on its own and appended to the prompt's tokens, so the boundary between the
    two is exact; an end-of-sequence token closes the text when the tokenizer has one.
    """
    head = _ids(tokenizer, prompt, special=True) if prompt is not None else []
    body = _ids(tokenizer, text, special=prompt is None)
    eos = tokenizer.eos_token_id
    if eos is not None and (not body or body[-1] != eos):
        body.append(eos)
    ids = head + body
    labels = ([IGNORE_INDEX] * len(head) if mask_prompt else head) + body
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    if all(label == IGNORE_INDEX for label in labels[1:]):
        raise ValueError(
            f"An example keeps no token to learn or forget after the prompt (prompt {prompt!r}, "
            f"max_length {max_length}): raise max_length or shorten the prompt."
        )
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def tokenize_for_causal_lm(dataset, tokenizer, *, mask_prompt: bool = True, max_length: int | None = None):
    """``dataset`` with ``input_ids``, ``attention_mask`` and ``labels`` in place of its text columns.

    Use it for fine-tuning too: a forget set is recognised in the training data by its raw columns, and
    the model only unlearns tokens it was shown in the same way.
    """
    if dataset is None:
        return None
    found = text_columns(dataset.column_names)
    if found is None:
        raise ValueError(
            f"A causal LM unlearns texts: the dataset needs a 'text' column, or 'prompt'/'question' with "
            f"'completion'/'answer'/'response' (columns: {dataset.column_names}). Or tokenise it yourself into "
            "input_ids (and labels, -100 where nothing is to be learned)."
        )
    prompt_column, text_column = found

    def encode(batch):
        prompts = batch[prompt_column] if prompt_column else [None] * len(batch[text_column])
        rows = [
            tokenize_example(tokenizer, text, prompt, mask_prompt=mask_prompt, max_length=max_length)
            for text, prompt in zip(batch[text_column], prompts, strict=True)
        ]
        return {key: [row[key] for row in rows] for key in ("input_ids", "attention_mask", "labels")}

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="Tokenising texts")


def causal_lm_inputs(dataset, tokenizer, *, mask_prompt: bool = True, max_length: int | None = None):
    """A set ready for the LM: already tokenised ones get labels = input ids (padding masked by the collator)."""
    if dataset is None or not hasattr(dataset, "column_names"):
        return dataset
    if "input_ids" in dataset.column_names:
        if "labels" in dataset.column_names:
            return dataset
        return dataset.map(lambda batch: {"labels": batch["input_ids"]}, batched=True, desc="Adding labels")
    if tokenizer is None:
        raise ValueError(
            "These texts need a tokenizer: pass processing_class=tokenizer to the trainer (or tokenise them with "
            "hf_unlearn.data.causal_lm.tokenize_for_causal_lm)."
        )
    return tokenize_for_causal_lm(dataset, tokenizer, mask_prompt=mask_prompt, max_length=max_length)


class CausalLMCollator:
    """Right-pads ``input_ids`` (pad id), ``attention_mask`` (0) and ``labels`` (-100): padding is never a target."""

    def __init__(self, pad_token_id: int | None):
        self.pad_token_id = pad_token_id if pad_token_id is not None else 0

    @classmethod
    def for_tokenizer(cls, tokenizer) -> CausalLMCollator:
        pad = getattr(tokenizer, "pad_token_id", None)
        return cls(pad if pad is not None else getattr(tokenizer, "eos_token_id", None))

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        fill = {"input_ids": self.pad_token_id, "attention_mask": 0, "labels": IGNORE_INDEX}
        batch = {}
        for key, value in fill.items():
            if key == "attention_mask" and key not in features[0]:
                rows = [[1] * len(f["input_ids"]) for f in features]
            elif key in features[0]:
                rows = [list(f[key]) for f in features]
            else:
                continue
            batch[key] = torch.tensor([row + [value] * (width - len(row)) for row in rows], dtype=torch.long)
        if "labels" in batch:  # a pad token that is also a real token (GPT-2's eos) is a target only where real
            batch["labels"] = batch["labels"].masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)
        return batch


def causal_lm_collator(tokenizer, given: Callable | None) -> Callable:
    """The user's collator when given, else one that pads token ids, the mask and the labels correctly."""
    return given if given is not None else CausalLMCollator.for_tokenizer(tokenizer)


def prepare_causal_lm_sets(method, args, tokenizer, collator: Callable | None, **sets) -> tuple[dict, Callable]:
    """Refuse what a causal LM cannot do, then tokenise every given set and pick the token collator.

    Raises before anything is tokenised: a method whose loss is per example only, or class removal (an
    LM has no classes; forget the texts of a class as samples instead).
    """
    if not method.causal_lm:
        raise ValueError(
            f"Method {method.name!r} does not unlearn causal language models (its loss reads one label per "
            "example). Use pgu, pgu_retain, ga_projected, gradient_ascent, neggrad_plus, npo, simnpo, rmu, eupmu, "
            "eupmu_explicit, random_labels or finetune."
        )
    if args.scenario == "class":
        raise ValueError("A causal LM has no classes to remove: use scenario='samples' (or 'auto') for its texts.")
    options = {"mask_prompt": args.lm_mask_prompt, "max_length": args.lm_max_length}
    tokenised = {name: causal_lm_inputs(dataset, tokenizer, **options) for name, dataset in sets.items()}
    return tokenised, causal_lm_collator(tokenizer, collator)


def causal_lm_space(model: nn.Module, texts, tokenizer, *, mask_prompt: bool = True, max_length: int | None = None,
                    **space_options):
    """The Core Gradient Space of a causal LM's training texts, as the trainer would build it.

    The texts are tokenised as the trainer tokenises them (answer tokens as targets, padding masked) and
    fingerprinted as given, so later forget requests of raw rows are recognised by the ledger.
    """
    from ..core import CoreGradientSpace

    inputs = causal_lm_inputs(texts, tokenizer, mask_prompt=mask_prompt, max_length=max_length)
    return CoreGradientSpace.from_model(model, inputs, collate_fn=CausalLMCollator.for_tokenizer(tokenizer),
                                        fingerprint_data=texts, **space_options)
