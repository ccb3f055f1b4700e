"""Refuse token rows the model cannot read before any weight moves: longer than its position table, or of different
lengths with nothing to pad them into batches.

A BERT-style classifier reads positions from a learned table of fixed size; a longer row fails inside the
embedding layer ("The expanded size of the tensor (75) must match the existing size (64)"). The checks read small
samples, so such a row in the retain set surfaced only when the repair read every kept example: after the
forgetting steps had changed the weights. The limit comes from the model itself (its position-embedding table), so
models with relative or rotary positions, which have no such table, are not limited here.
"""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
from torch import nn

POSITION_TABLES = ("position_embeddings", "wpe", "embed_positions")  # BERT / RoBERTa / ELECTRA, GPT-2, BART


def position_limit(model: nn.Module) -> int | None:
    """How many tokens the model's learned position table can place, or None when it has none.

    RoBERTa-style tables start counting after the padding index (514 rows place 512 tokens); BART-style ones
    carry an ``offset``.
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) and name.rsplit(".", 1)[-1] in POSITION_TABLES:
            padding = module.padding_idx
            offset = padding + 1 if padding is not None else int(getattr(module, "offset", 0) or 0)
            return module.num_embeddings - offset
    return None


def token_counts(dataset) -> np.ndarray | None:
    """Tokens per row of a tokenised ``datasets.Dataset`` (its ``input_ids`` lengths, read from Arrow at once)."""
    if "input_ids" not in getattr(dataset, "column_names", ()) or not hasattr(dataset, "data"):
        return None
    lengths = pc.list_value_length(dataset.data.table.column("input_ids")).to_numpy(zero_copy_only=False)
    indices = getattr(dataset, "_indices", None)
    return lengths[indices.column(0).to_numpy()] if indices is not None else lengths


def check_text_lengths(model: nn.Module, **datasets) -> None:
    """Every row of every set fits the model's position table; else a ValueError naming the set, the row and the
    fix (tokenise with the ``max_length`` the model was trained with)."""
    counted = {name: token_counts(dataset) for name, dataset in datasets.items() if dataset is not None}
    counted = {name: counts for name, counts in counted.items() if counts is not None and len(counts)}
    limit = position_limit(model) if counted else None  # images, raw rows: no module scan at every read
    if limit is None:
        return
    for name, counts in counted.items():
        if int(counts.max()) <= limit:
            continue
        longest = int(np.argmax(counts))
        too_long = int((counts > limit).sum())
        raise ValueError(
            f"The {name} set has {too_long} of {len(counts)} rows longer than the {limit} positions "
            f"{type(model).__name__} can read (row {longest}: {int(counts[longest])} tokens). Tokenise with "
            f"truncation=True, max_length={limit} (or the max_length the model was trained with), as for training."
        )


def check_padding(collator, **datasets) -> None:
    """Token rows of different lengths need a collator that pads them; transformers' default one only stacks, and
    its error ("expected sequence of length 5 at dim 1 (got 6)") came from the first check, naming neither the set
    nor the fix. A ValueError before anything runs instead."""
    from transformers import default_data_collator

    if collator is not default_data_collator:
        return
    for name, dataset in datasets.items():
        counts = token_counts(dataset) if dataset is not None else None
        if counts is not None and len(counts) and counts.min() != counts.max():
            raise ValueError(
                f"The {name} set's token rows have {int(counts.min())} to {int(counts.max())} tokens, and nothing pads "
                "them into batches: pass processing_class=tokenizer (it pads each batch, as transformers' Trainer "
                "does) or data_collator=DataCollatorWithPadding(tokenizer)."
            )


def check_token_rows(model: nn.Module, collator, **datasets) -> None:
    """What the trainer asks of every token set before anything runs: rows the model can place, batches it can form."""
    check_text_lengths(model, **datasets)
    check_padding(collator, **datasets)
