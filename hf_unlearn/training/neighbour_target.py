"""The sample-removal target read from the validation examples most like the forget set, not from all of them.

A model retrained without the forget set treats each forgotten example as it treats held-out examples *like it*.
Compared with the whole validation set, a request made of examples the model would get right anyway (one user's
questions that all start "Who ...", a cluster of look-alike images) is pushed down to the average held-out
confidence, far below where retraining leaves it: on TREC questions the default path left one user's 20 "Who"
questions 80 points of MIA-efficacy away from the retrained model, which still answered every one of them with
confidence. The target here is the whole validation sample's accuracy and true-label probability, moved by how
far the forget examples' ``k`` nearest validation examples (under the original model) read from those of kept
training examples. The default (``sample_removal_target="cautious"``) takes the higher of that and the whole
sample's: on the memorization scenarios the neighbours alone sometimes read a look-alike cluster as harder than
the validation sample and pushed it past where retraining leaves it (docs/fidelity.md, "Sample-removal target").

"Nearest" is measured on a middle layer's representation (the hidden state halfway through, pooled over positions
or tokens, ``models/hidden_features.py``), which still describes the input rather than the label.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.utils.data import Subset

from ..core.labels import LABEL_KEYS
from ..core.loaders import read_loader
from ..data.causal_lm import IGNORE_INDEX
from ..evaluation.predict import collect_outputs
from ..methods.neighbour_weights import BANK_SIZE, RetainNeighbours
from ..methods.token_weights import (
    MIN_COPY_RATE,
    TOKEN_BANK_SIZE,
    RetainTokenNeighbours,
    answer_token_states,
    copies,
)
from ..models.hidden_features import middle_layer, nearest

logger = logging.getLogger(__name__)
NEIGHBOURS = 10  # validation examples per forget example


def middle_features(model: nn.Module, dataset, collate_fn: Callable, device, batch_size: int = 64) -> dict | None:
    """Pooled middle-layer features, labels, correctness and true-label probability of every example; None when
    the model gives no hidden states or more than one label per example."""
    try:
        out = collect_outputs(model, dataset, collate_fn=collate_fn, batch_size=batch_size, device=device,
                              features=middle_layer)
    except TypeError:  # no ``output_hidden_states`` argument, or no hidden states returned
        return None
    labels = out["labels"]
    if labels.dim() != 1:
        return None
    probs = out["logits"].softmax(-1)
    return {"features": out["features"], "labels": labels, "correct": (probs.argmax(-1) == labels).float(),
            "p_true": probs.gather(1, labels[:, None]).squeeze(1)}


def neighbour_targets(
    model: nn.Module, forget, validation, collate_fn: Callable, device, k: int = NEIGHBOURS, kept=None,
    kept_features: dict | None = None,
) -> dict[str, float]:
    """``validation_accuracy_neighbours`` (%) and ``validation_probability_neighbours``: the whole validation
    sample's accuracy and mean true-label probability, moved by how much the forget examples' ``k`` nearest
    validation examples (cosine similarity of middle-layer features) differ from those of ``kept`` training
    examples (a retain sample, or its ``middle_features`` already read as ``kept_features``; without either, the
    validation examples' own nearest others). Empty when the model gives no hidden states.

    The correction compares like with like. Nearest-neighbour picks favour central, easy examples, and a model
    places its training examples, memorized or not, in the dense, well-learned parts of its feature space: the
    neighbours of any training example read easier than the validation set. Against the neighbours of kept
    training examples a forget set drawn at random gets about the validation sample's own target, and a cluster
    of easy (or hard) examples a higher (lower) one.
    """
    if forget is None or validation is None or len(forget) == 0 or len(validation) < 2:
        return {}
    held_out = middle_features(model, validation, collate_fn, device)
    query = middle_features(model, forget, collate_fn, device) if held_out is not None else None
    if query is None:
        logger.info("The model returns no hidden states: the sample-removal target is the whole validation sample.")
        return {}
    picked = nearest(query["features"], held_out["features"], k)
    if kept_features is None and kept is not None and len(kept):
        kept_features = middle_features(model, kept, collate_fn, device)
    if kept_features is not None:
        baseline = nearest(kept_features["features"], held_out["features"], k)
    else:
        baseline = nearest(held_out["features"], held_out["features"], k, exclude_self=True)
    targets = {}
    for name, key, scale, top in (("accuracy", "correct", 100.0, 100.0), ("probability", "p_true", 1.0, 1.0)):
        values = held_out[key]
        shift = float(values[picked].mean()) - float(values[baseline].mean())
        targets[f"validation_{name}_neighbours"] = min(top, max(0.0, scale * (float(values.mean()) + shift)))
    return targets


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
                                trainer.args.device, kept_features=kept_bank_features(trainer, model))
    if mode == "cautious":
        targets = {k: max(v, known.get(k.removesuffix("_neighbours"), v)) for k, v in targets.items()}
    return targets


def _kept_sample(kept, seed: int):
    """The kept examples the neighbour readings use: all of them, or a seeded ``BANK_SIZE`` of a larger set."""
    if len(kept) <= BANK_SIZE:
        return kept
    if hasattr(kept, "shuffle"):  # a datasets.Dataset
        return kept.shuffle(seed=seed).select(range(BANK_SIZE))
    order = torch.randperm(len(kept), generator=torch.Generator().manual_seed(seed))
    return Subset(kept, order[:BANK_SIZE].tolist())


def kept_bank_features(trainer, model: nn.Module) -> dict | None:
    """``middle_features`` of a seeded sample of at most ``BANK_SIZE`` kept examples under ``model``, read once per
    model: the target's correction compares the forget set's neighbours with theirs, and the forget-loss weights
    (``retain_neighbours``) read the same sample. None without a retain set or hidden states.

    The guard's 128-example retain sample was the first comparison: on random 10 % requests its neighbours alone
    moved the target 1-2.5 points above the whole validation sample's, where 1 800-6 000 kept examples move it by
    0.1-1.3 (docs/fidelity.md, "Kept examples behind the target")."""
    kept = trainer.retain_dataset
    if kept is None or len(kept) == 0:
        return None
    read = trainer.__dict__.setdefault("_kept_bank_features", {})
    if id(model) not in read:
        kept = _kept_sample(kept, trainer.args.seed)
        weights = ("the forget loss weighs each forgotten example by how few of its nearest kept examples share its "
                   "label, and " if trainer.method.wants_retain_neighbours() else "")
        logger.info("Reading %d kept examples' middle-layer features: %sthe target compares the forget set's nearest "
                    "validation examples with theirs", len(kept), weights)
        read[id(model)] = middle_features(model, kept, trainer.base_collator, trainer.args.device)
    return read[id(model)]


def _lm_batches(model: nn.Module, dataset, collate_fn: Callable, device, batch_size: int) -> Iterator[tuple]:
    """(model inputs, labels) of every batch on ``device``, with ``model`` in eval mode and no gradient (its mode
    comes back afterwards)."""
    loader = read_loader(dataset, batch_size, collate_fn)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                inputs = {k: v.to(device) for k, v in batch.items() if k not in LABEL_KEYS and torch.is_tensor(v)}
                yield inputs, batch["labels"].to(device)
    finally:
        model.train(was_training)


def answer_token_features(model: nn.Module, dataset, collate_fn: Callable, device, batch_size: int = 16) -> dict:
    """A causal LM's hidden state (``TOKEN_LAYER`` of the way through) at every position that predicts a target
    token of ``dataset``, and the token (``methods/token_weights.answer_token_states``), batch by batch."""
    features, tokens = [], []
    for inputs, labels in _lm_batches(model, dataset, collate_fn, device, batch_size):
        rows, targets = answer_token_states(model(**inputs, output_hidden_states=True).hidden_states, labels)
        features.append(rows.cpu())
        tokens.append(targets.cpu())
    return {"features": torch.cat(features), "labels": torch.cat(tokens)}


def copy_rate(model: nn.Module, dataset, collate_fn: Callable, device, bank: RetainTokenNeighbours,
              batch_size: int = 16) -> float | None:
    """The share of held-out answer tokens copied from their prompt (``token_weights.copies``) that ``model``
    predicts greedily; None when no answer copies its prompt."""
    hits = []
    for inputs, labels in _lm_batches(model, dataset, collate_fn, device, batch_size):
        predicted = model(**inputs).logits[:, :-1].argmax(-1)
        correct = (predicted == labels[:, 1:])[labels[:, 1:] != IGNORE_INDEX].cpu()
        hits.append(correct[copies(bank, inputs, labels).cpu()])
    hits = torch.cat(hits) if hits else torch.zeros(0, dtype=torch.bool)
    return float(hits.float().mean()) if len(hits) else None


def _answer_token_bank(trainer, model: nn.Module, kept) -> dict | None:
    """A causal LM's kept answer tokens (at most ``TOKEN_BANK_SIZE``, seeded) and their hidden states."""
    kept = _kept_sample(kept, trainer.args.seed)
    logger.info("Reading %d kept texts' answer tokens: the forget loss weighs each answer token by how few of "
                "the nearest kept answer tokens are the same token", len(kept))
    try:
        found = answer_token_features(model, kept, trainer.base_collator, trainer.args.device)
    except TypeError:  # no ``output_hidden_states`` argument, or no hidden states returned
        return None
    if len(found["labels"]) > TOKEN_BANK_SIZE:
        picked = torch.randperm(len(found["labels"]), generator=torch.Generator().manual_seed(trainer.args.seed))
        found = {k: v[picked[:TOKEN_BANK_SIZE]] for k, v in found.items()}
    return found


def retain_neighbours(trainer) -> RetainNeighbours | None:
    """The kept examples (a seeded sample of at most ``BANK_SIZE``) whose labels weigh the forget loss
    (``methods/neighbour_weights.py``), read under the model before any step: per example for a classifier, per
    answer token for a causal LM (at most ``TOKEN_BANK_SIZE``, ``methods/token_weights.py``). None unless the method
    asks for them and the run is a sample removal with a retain set, or when the model gives no hidden states."""
    kept = trainer.retain_dataset
    if (not trainer.method.wants_retain_neighbours() or trainer.scenario != "samples"
            or kept is None or len(kept) == 0):
        return None
    model = trainer.accelerator.unwrap_model(trainer.model)
    if trainer.causal_lm:
        found = _answer_token_bank(trainer, model, kept)
    else:
        found = kept_bank_features(trainer, model)  # already read for the target, under the same weights
        trainer.__dict__.pop("_kept_bank_features", None)
    if found is None or len(found["labels"]) == 0:
        logger.info("The model returns no hidden states: every forgotten example weighs the same in the forget loss.")
        return None
    if trainer.causal_lm:
        bank = RetainTokenNeighbours(found["features"], found["labels"], tokenizer=trainer.processing_class)
        validation = trainer._check_samples()[2]
        rate = copy_rate(model, trainer._memory(validation), trainer.base_collator, trainer.args.device, bank) \
            if len(validation) else None
        if rate is not None and rate < MIN_COPY_RATE:  # without held-out texts the model is taken to copy
            logger.info("On held-out texts the model predicts %.0f %% of the answer tokens its prompt gives (below "
                        "%.0f %%): a model fine-tuned without the forget texts would not keep their names either, so "
                        "every answer token weighs the same in the forget loss", 100 * rate, 100 * MIN_COPY_RATE)
            return None
        return bank
    return RetainNeighbours(found["features"], found["labels"])
