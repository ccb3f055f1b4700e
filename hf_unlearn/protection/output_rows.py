"""Class removal: the output rows of the forgotten classes are what must change, on every input.

The space protects a layer's outputs on kept inputs. For the layer that produces the logits, the
outputs of a forgotten class are the exception: a model retrained without that class never predicts
it, so its logit is *meant* to fall on kept inputs too, and protecting that row only blocks the
removal (fidelity suite: on a BatchNorm ResNet and a ViT, fully projected PGU lost several points of kept
accuracy before the class was gone). Lowering only the forgotten classes' logits cannot change which
kept class wins on a kept input; everything else stays projected.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..core.labels import LABEL_KEYS

logger = logging.getLogger(__name__)


@torch.no_grad()
def find_output_layer(model: nn.Module, candidates: dict[str, nn.Module], inputs: dict) -> str | None:
    """The name of the candidate layer whose output *is* the model's logits (one forward pass), or None."""
    outputs: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(lambda _m, _i, out, name=name: outputs.__setitem__(name, out))
        for name, module in candidates.items()
    ]
    training = model.training
    model.eval()
    try:
        features = {k: v for k, v in inputs.items() if k not in LABEL_KEYS}
        logits = model(**features).logits
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    matches = [n for n, out in outputs.items() if _gives_logits(out, logits)]
    return matches[-1] if matches else None


def _gives_logits(output, logits: torch.Tensor) -> bool:
    """The logits are this output, or one of its positions per example (GPT-2 classifies at the last token)."""
    if not torch.is_tensor(output) or output.shape[0] != logits.shape[0] or output.shape[-1] != logits.shape[-1]:
        return False
    if output.shape == logits.shape:
        return output is logits or torch.equal(output, logits)
    if output.dim() < logits.dim():
        return False
    positions = output.reshape(output.shape[0], -1, output.shape[-1])
    return bool((positions == logits.reshape(logits.shape[0], 1, -1)).all(-1).any(-1).all())


def forgotten_output_rows(
    model: nn.Module, candidates: dict[str, nn.Module], inputs: dict, classes: list[int]
) -> tuple[str, list[int]] | None:
    """(output layer, rows of the forgotten classes) when the logits come straight from a protected layer."""
    layer = find_output_layer(model, candidates, inputs)
    if layer is None:
        logger.info("Class removal: no protected layer outputs the logits directly; every row stays projected.")
        return None
    logger.info(
        "Class removal: rows %s of %s (the forgotten classes' logits) are not projected; every other update is.",
        classes,
        layer,
    )
    return layer, list(classes)


@torch.no_grad()
def mean_input(model: nn.Module, layer: nn.Module, inputs: dict) -> torch.Tensor:
    """The mean input vector of ``layer`` over a batch (every position of a sequence counts once)."""
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach()))
    training = model.training
    model.eval()
    try:
        features = {k: v for k, v in inputs.items() if k not in LABEL_KEYS}
        model(**features)
    finally:
        handle.remove()
        model.train(training)
    values = seen[0]
    return values.reshape(-1, values.shape[-1]).double().mean(0)
