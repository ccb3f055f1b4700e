"""One batched, device-aware pass that returns a model's logits and the labels of a dataset.

Every metric in this package starts from these two tensors, so each dataset is run through the
model once per evaluation, in eval mode and without gradients.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..core.labels import LABEL_KEYS
from ..core.loaders import read_loader
from ..data.columns import label_array, label_column
from ..data.requests import refuse_label_names
from ..data.streams import collator_for
from ..data.text_lengths import check_text_lengths


class MissingLabelsError(ValueError):
    """A dataset handed to a metric has no label column."""


def _label_key(batch: dict) -> str:
    for key in LABEL_KEYS:
        if key in batch:
            return key
    raise MissingLabelsError(
        f"The dataset has no label column (looked for {LABEL_KEYS}; found {sorted(batch)}). "
        "Metrics compare predictions with labels: add a 'labels' column."
    )


def _last_hidden(hidden_states: tuple, inputs: dict) -> torch.Tensor:
    """The last hidden representation, flattened to one row per example."""
    hidden = hidden_states[-1]
    return hidden.flatten(1) if hidden.dim() > 2 else hidden


@torch.no_grad()
def collect_outputs(
    model: nn.Module,
    dataset,
    *,
    collate_fn: Callable | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    output_hidden_states: bool = False,
    features: Callable[[tuple, dict], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Logits (float32, CPU) and labels for every example of ``dataset``, in order.

    With ``output_hidden_states=True`` the last hidden representation fed to the classifier head is
    returned too (``"features"``), for activation distances; ``features(hidden_states, inputs)`` chooses
    another representation per batch (one row per example).
    """
    if dataset is None or len(dataset) == 0:
        raise ValueError("Cannot evaluate on an empty dataset.")
    check_text_lengths(model, evaluated=dataset)
    if hasattr(dataset, "select_columns") and (column := label_column(dataset)) is not None:  # tensors hold ids already
        refuse_label_names("evaluated", label_array(dataset), column)
    loader_collate = collate_fn or collator_for()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dataset = _without_text(dataset)
    order = length_order(dataset)
    if order is not None:  # texts of similar length batched together: far less padding to run through
        dataset = dataset.select(order)
    loader = _unpadded_texts_named(read_loader(dataset, batch_size, loader_collate), given=collate_fn is not None)
    was_training = model.training
    model.eval()
    pick = features or (_last_hidden if output_hidden_states else None)
    logits, labels, picked = [], [], []
    try:
        for batch in loader:
            key = _label_key(batch)
            labels.append(batch[key].cpu())
            inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items() if k not in LABEL_KEYS}
            out = model(**inputs, output_hidden_states=True) if pick is not None else model(**inputs)
            logits.append(out.logits.float().cpu())
            if pick is not None:
                picked.append(pick(out.hidden_states, inputs).float().cpu())
    finally:
        model.train(was_training)
    result = {"logits": torch.cat(logits), "labels": torch.cat(labels).long()}
    if pick is not None:
        result["features"] = torch.cat(picked)
    if order is not None:  # back to the dataset's order
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        result = {k: v[inverse] for k, v in result.items()}
    return result


def _without_text(dataset):
    """``dataset`` without its string columns (the raw ``text`` a tokenized set keeps beside its ids): no model reads
    them and no collator can batch them, while the trainer accepts such a set as it is."""
    features = getattr(dataset, "features", None)
    strings = [c for c, f in (features or {}).items()
               if getattr(f, "dtype", None) in ("string", "large_string") and c not in LABEL_KEYS]
    return dataset.remove_columns(strings) if strings else dataset


def _unpadded_texts_named(loader, given: bool):
    """``loader``'s batches; without a collator of the caller's, token rows of different lengths cannot be stacked,
    and PyTorch's error about it does not say what to pass."""
    try:
        yield from loader
    except ValueError as error:
        if given or "expected sequence of length" not in str(error):
            raise
        raise ValueError("these rows hold token ids of different lengths, which need padding to form a batch: pass "
                         "collate_fn=DataCollatorWithPadding(tokenizer) (transformers)") from error


@torch.no_grad()
def collect_token_outcomes(
    model: nn.Module,
    dataset,
    *,
    collate_fn: Callable,
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """A causal LM's verdict on every target token of ``dataset`` (labels ≠ -100), flattened in dataset order.

    ``correct`` (the greedy next token is the target), ``p_true`` and ``loss`` (of the target) and
    ``example`` (the row each token belongs to). Logits over a vocabulary are never kept: 200 texts of
    32 tokens would be 1.2 GB of them for a 49k-token vocabulary.
    """
    if dataset is None or len(dataset) == 0:
        raise ValueError("Cannot evaluate on an empty dataset.")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    order = length_order(dataset)  # None: already in order (one row, held in memory as tensors, has no select)
    rows = dataset.select(order) if order is not None else dataset
    order = order or list(range(len(dataset)))
    loader = read_loader(rows, batch_size, collate_fn)
    was_training = model.training
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {"correct": [], "p_true": [], "loss": [], "example": []}
    try:
        for start, batch in zip(range(0, len(order), batch_size), loader):
            labels = batch["labels"][:, 1:].to(device)
            inputs = {k: v.to(device) for k, v in batch.items() if k not in LABEL_KEYS and torch.is_tensor(v)}
            log_probs = torch.log_softmax(model(**inputs).logits[:, :-1].float(), dim=-1)
            keep = labels != -100
            target = log_probs.gather(2, labels.clamp(min=0)[..., None]).squeeze(2)
            rows = torch.tensor(order[start : start + len(labels)], device=device)[:, None].expand_as(labels)
            parts["correct"].append((log_probs.argmax(-1) == labels)[keep].cpu())
            parts["p_true"].append(target[keep].exp().cpu())
            parts["loss"].append((-target[keep]).cpu())
            parts["example"].append(rows[keep].cpu())
    finally:
        model.train(was_training)
    result = {k: torch.cat(v) for k, v in parts.items()}
    by_row = torch.sort(result["example"], stable=True).indices  # back to the dataset's order
    return {k: v[by_row] for k, v in result.items()}


def length_order(dataset) -> list[int] | None:
    """Example indices by token count for a ragged tokenised ``datasets.Dataset``; None when nothing to gain."""
    if not hasattr(dataset, "with_format") or "input_ids" not in getattr(dataset, "column_names", ()):
        return None
    lengths = [len(ids) for ids in dataset.with_format(None)["input_ids"]]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return None if order == list(range(len(lengths))) else order


def accuracy(model: nn.Module, dataset, **kwargs) -> float:
    """Top-1 accuracy in percent."""
    out = collect_outputs(model, dataset, **kwargs)
    return 100.0 * (out["logits"].argmax(-1) == out["labels"]).float().mean().item()
