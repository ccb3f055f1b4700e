"""Evaluation mode for the length of a block, whatever mode the model was in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block and back in its own mode after it, also on an error: a metric read in
    the middle of training must not leave dropout off, nor turn it on for a model the caller had in eval mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
