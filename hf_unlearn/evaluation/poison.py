"""Poisoned training data and what it does: a label-flip attack, a backdoor, and the backdoor's success rate.

Removing poison is unlearning with a known forget set (the poisoned rows) and a known goal: a model
trained on clean data does not give those rows their poisoned labels, and does not obey the trigger.
These helpers build the two attacks of PGU's detoxification experiment on a ``datasets.Dataset`` and
measure them, so a run with ``scenario="poison"`` can be checked the way the benchmark checks it.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn

from ..data.columns import label_array
from .predict import collect_outputs


def stamp_patch(pixel_values: torch.Tensor, size: int = 2, value: float = 1.0) -> torch.Tensor:
    """Images (..., H, W) with a ``size`` x ``size`` square of ``value`` in the bottom-right corner."""
    stamped = pixel_values.clone()
    stamped[..., -size:, -size:] = value
    return stamped


def insert_token(text: str, token: str) -> str:
    """The text with a rare trigger word in front (the text backdoor's trigger)."""
    return f"{token} {text}"


def flip_labels(dataset, pairs: list[tuple[int, int]], per_class: int, seed: int = 0, label_column: str = "labels"):
    """``per_class`` examples of each class of every pair (a, b) relabelled as the other one.

    Returns the poisoned dataset and the poisoned rows (sorted).
    """
    classes = [c for pair in pairs for c in pair]
    if len(set(classes)) != len(classes):
        raise ValueError(f"The pairs {pairs} share a class: each class may be flipped in one pair only.")
    labels = label_array(dataset)
    rng = random.Random(seed)
    new_labels, rows = labels.copy(), []
    for a, b in pairs:
        for source, target in ((a, b), (b, a)):
            candidates = np.flatnonzero(labels == source).tolist()
            if len(candidates) < per_class:
                raise ValueError(f"Class {source} has {len(candidates)} examples; {per_class} were asked to flip.")
            chosen = rng.sample(candidates, per_class)
            new_labels[chosen] = target
            rows += chosen
    return _with_labels(dataset, new_labels, label_column), sorted(rows)


def plant_backdoor(dataset, count: int, target: int, seed: int = 0, *, column: str = "pixel_values",
                   trigger=None, label_column: str = "labels"):
    """``count`` examples of other classes with the trigger added and their label set to ``target``.

    ``trigger`` maps one value of ``column`` to its triggered form (default: a corner patch of 1.0, white
    for pixels in [0, 1]; pass ``lambda t: insert_token(t, "zqx")`` for a raw text column and tokenise
    afterwards — token ids already in the dataset are not changed). Returns the dataset and the rows.
    """
    labels = label_array(dataset)
    candidates = np.flatnonzero(labels != target).tolist()
    if len(candidates) < count:
        raise ValueError(f"Only {len(candidates)} examples are not of class {target}; {count} were asked for.")
    rows = sorted(random.Random(seed).sample(candidates, count))
    chosen = set(rows)
    trigger = trigger or (lambda value: stamp_patch(torch.as_tensor(value)).tolist())
    new_labels = labels.copy()
    new_labels[rows] = target
    formatted = dataset.format

    def poison(example, index):
        if index in chosen:
            example[column] = trigger(example[column])
        return example

    poisoned = dataset.with_format(None).map(poison, with_indices=True)
    poisoned = _with_labels(poisoned, new_labels, label_column)
    return poisoned.with_format(formatted["type"], columns=formatted["columns"]), rows


def _with_labels(dataset, labels: np.ndarray, label_column: str):
    feature = dataset.features[label_column]
    return dataset.remove_columns(label_column).add_column(label_column, labels.tolist(), feature=feature)


def attack_success_rate(model: nn.Module, triggered, target: int, *, collate_fn=None, batch_size: int = 256) -> float:
    """Percent of ``triggered`` examples whose true class is not ``target`` that the model puts in ``target``.

    ``triggered`` carries the trigger and the *true* labels (e.g. a test set passed through the trigger).
    """
    out = collect_outputs(model, triggered, collate_fn=collate_fn, batch_size=batch_size)
    other = out["labels"] != target
    if not bool(other.any()):
        raise ValueError(f"Every triggered example is of class {target}: there is no attack to measure.")
    return 100.0 * float((out["logits"].argmax(-1)[other] == target).float().mean())
