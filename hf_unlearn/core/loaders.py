"""DataLoaders for read-only passes (checks, feature reads, statistics) that leave the global random stream alone."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader


def read_loader(dataset, batch_size: int, collate_fn: Callable | None = None) -> DataLoader:
    """``dataset`` in order, in batches, drawing nothing from the global random stream.

    Iterating a DataLoader draws a worker seed from the global generator even without shuffling (from its own
    generator when it has one). A run's checks and feature reads would otherwise shift the data order and the
    dropout of every step after them, so a seeded run's trajectory would depend on how often it is checked: on
    TREC, reading the same kept examples once instead of twice took a request from 6 steps to 12.
    """
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn,
                      generator=torch.Generator())
