"""Input-embedding rows that only forget examples read: free to move, because no kept example can see them.

The Core Gradient Space protects Linear and Conv layers; an embedding table is frozen with everything else the
space does not describe. That is exact for the kept data but leaves a text model no way to forget what it stored
in a token's own row: a model trained on words or short strings (names, codes, one user's vocabulary) memorizes
them there. A token that occurs in forget examples and in no retain example is read by no kept input, so its
row can take the raw update while every kept example's forward pass stays bit for bit what it was, the same
argument as the free output rows of class removal (``output_rows.py``).

Every other row is held exactly: its gradient is masked to zero (no optimizer state, no share of the clipped
norm), which SGD, momentum and Adam-style updates turn into no change at all. Decoupled weight decay shrinks
every row of a parameter with a gradient, so with ``weight_decay > 0`` the rows are also put back to their
values at the start after each optimizer step, at the price of one copy of the table for the run.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)


def token_ids(dataset) -> set[int]:
    """Every token id in ``dataset``'s ``input_ids`` column."""
    return {int(t) for ids in dataset["input_ids"] for t in ids}


def free_token_rows(forget, retain) -> list[int]:
    """Token ids that occur in ``forget`` and in no row of ``retain`` (the kept training data)."""
    return sorted(token_ids(forget) - token_ids(retain))


def input_embedding(model: nn.Module) -> nn.Embedding | None:
    """The model's input-embedding table, unless it is tied to the output layer (a row there is also a logit row
    that every kept input reads) or the model has none."""
    try:  # transformers raises NotImplementedError for a model without a token table (vision)
        embedding = model.get_input_embeddings()
        output = model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if not isinstance(embedding, nn.Embedding):
        return None
    if output is not None and getattr(output, "weight", None) is embedding.weight:
        return None
    return embedding


class FreeEmbeddingRows:
    """Lets ``rows`` of ``embedding`` learn while the rest stays at its starting values."""

    def __init__(self, embedding: nn.Embedding, rows: list[int], decays: bool = False):
        self.weight = embedding.weight
        self.rows = torch.tensor(rows, dtype=torch.long, device=self.weight.device)
        mask = torch.zeros(self.weight.shape[0], 1, dtype=self.weight.dtype, device=self.weight.device)
        mask[self.rows] = 1.0
        self.start = self.weight.detach().clone() if decays else None  # only weight decay moves a zero-grad row
        self.weight.requires_grad_(True)
        self.hook = self.weight.register_hook(lambda grad: grad * mask)

    def restore_kept_rows(self) -> None:
        """After an optimizer step under weight decay: every row but the free ones back to its starting value."""
        if self.start is None:
            return
        with torch.no_grad():
            moved = self.weight.index_select(0, self.rows)
            self.weight.copy_(self.start)
            self.weight.index_copy_(0, self.rows, moved)

    def detach(self) -> None:
        """End of the run: the table frozen again, its hook and the starting copy dropped."""
        self.hook.remove()
        self.weight.requires_grad_(False)
        self.start = None

    def describe(self) -> str:
        return f"{len(self.rows)} input-embedding rows of tokens no retain example uses were left free"


def free_embedding_rows(model: nn.Module, forget, retain, decays: bool = False) -> FreeEmbeddingRows | None:
    """The free rows of ``model``'s input embedding for this request, or None when there are none to free;
    ``decays``: the optimizer applies weight decay (the kept rows are then restored after every step)."""
    embedding = input_embedding(model)
    if embedding is None or retain is None or len(retain) == 0 or "input_ids" not in retain.column_names:
        return None
    rows = free_token_rows(forget, retain)
    if not rows:
        return None
    logger.info("%d input-embedding rows are read only by forget examples: they move unprojected", len(rows))
    return FreeEmbeddingRows(embedding, rows, decays)
