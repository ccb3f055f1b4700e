"""The sample-removal target read from the validation examples most like the forget set, not from all of them.

A model retrained without the forget set treats each forgotten example as it treats held-out examples *like it*.
Compared with the whole validation set, a request made of examples the model would get right anyway (one user's
questions that all start "Who ...", a cluster of look-alike images) is pushed down to the average held-out
confidence, far below where retraining leaves it: on TREC questions the default path left one user's 20 "Who"
questions 80 points of MIA-efficacy away from the retrained model, which still answered every one of them with
confidence. The target here is, for each forget example, the accuracy and true-label probability of its ``k``
nearest validation examples under the original model, averaged over the forget sample. The default
(``sample_removal_target="cautious"``) takes the higher of that and the whole sample's: on small image models
the nearest examples were sometimes harder than the request and the neighbours alone pushed a look-alike cluster
past where retraining leaves it (docs/fidelity.md, "Sample-removal target").

"Nearest" is measured on a middle layer's representation (the hidden state halfway through, pooled over positions
or tokens): the last layers of a model that memorized its training rows place a memorized example among its own
class's easy examples whatever it looks like, while the middle still describes the input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..core.labels import LABEL_KEYS

logger = logging.getLogger(__name__)
NEIGHBOURS = 10  # validation examples per forget example


def _pooled(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """One vector per example: a feature map averaged over its positions, a sequence over its real tokens."""
    if hidden.dim() == 4:  # (batch, channels, height, width)
        return hidden.mean(dim=(2, 3))
    if hidden.dim() == 3:  # (batch, tokens, width)
        if mask is not None and mask.shape == hidden.shape[:2]:
            weights = mask.to(hidden.dtype)[..., None]
            return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return hidden.mean(1)
    return hidden.flatten(1)


@torch.no_grad()
def middle_features(model: nn.Module, dataset, collate_fn: Callable, device, batch_size: int = 64) -> dict | None:
    """Pooled middle-layer features, correctness and true-label probability of every example; None when the model
    does not return hidden states."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
    was_training = model.training
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {"features": [], "correct": [], "p_true": []}
    try:
        for batch in loader:
            labels = next(batch[k] for k in LABEL_KEYS if k in batch).to(device)
            inputs = {k: v.to(device) for k, v in batch.items() if k not in LABEL_KEYS and torch.is_tensor(v)}
            try:
                out = model(**inputs, output_hidden_states=True)
            except TypeError:
                return None
            hidden = getattr(out, "hidden_states", None)
            if not hidden:
                return None
            middle = hidden[len(hidden) // 2]
            parts["features"].append(_pooled(middle.float(), inputs.get("attention_mask")).cpu())
            probs = out.logits.float().softmax(-1)
            parts["correct"].append((probs.argmax(-1) == labels).float().cpu())
            parts["p_true"].append(probs.gather(1, labels[:, None]).squeeze(1).cpu())
    finally:
        model.train(was_training)
    return {k: torch.cat(v) for k, v in parts.items()}


def neighbour_targets(
    model: nn.Module, forget, validation, collate_fn: Callable, device, k: int = NEIGHBOURS
) -> dict[str, float]:
    """``validation_accuracy_neighbours`` (%) and ``validation_probability_neighbours``: the accuracy and mean
    true-label probability of each forget example's ``k`` nearest validation examples (cosine similarity of
    middle-layer features), averaged over the forget examples. Empty when the model gives no hidden states."""
    if forget is None or validation is None or len(forget) == 0 or len(validation) == 0:
        return {}
    held_out = middle_features(model, validation, collate_fn, device)
    query = middle_features(model, forget, collate_fn, device) if held_out is not None else None
    if query is None:
        logger.info("The model returns no hidden states: the sample-removal target is the whole validation sample.")
        return {}
    similarity = nn.functional.normalize(query["features"], dim=1) @ nn.functional.normalize(
        held_out["features"], dim=1
    ).T
    nearest = similarity.topk(min(k, similarity.shape[1]), dim=1).indices
    return {
        "validation_accuracy_neighbours": 100.0 * float(held_out["correct"][nearest].mean()),
        "validation_probability_neighbours": float(held_out["p_true"][nearest].mean()),
    }


def sample_removal_targets(trainer, known: dict[str, float], model: nn.Module | None = None) -> dict[str, float]:
    """The neighbour targets of ``trainer``'s check samples under ``model`` (default: the trainer's), when its run
    is a classifier's sample removal that asked for them; empty otherwise (the whole validation sample rules).
    ``"cautious"``: each the higher of the neighbours' and the whole sample's (``known``, the control metrics)."""
    mode, rule = trainer.args.sample_removal_target, getattr(trainer.control_callback.settings, "rule", None)
    if mode == "validation" or trainer.causal_lm or rule != "forget_below_validation":
        return {}
    forget, _, validation = trainer._check_samples()
    model = model if model is not None else trainer.accelerator.unwrap_model(trainer.model)
    targets = neighbour_targets(model, trainer._memory(forget), trainer._memory(validation), trainer.base_collator,
                                trainer.args.device)
    if mode == "cautious":
        targets = {k: max(v, known.get(k.removesuffix("_neighbours"), v)) for k, v in targets.items()}
    return targets
