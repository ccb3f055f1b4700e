"""Accuracy- and privacy-based unlearning metrics, each read beside a model retrained without the forget set.

UA = 100 − forget accuracy, RA and TA the retain and test accuracies, MIA-efficacy SalUn's share of forget
examples a confidence attacker calls non-members; Avg. Gap = the mean |metric − retrained metric| over the four.
Two retrained models with different seeds differ too: their mutual Avg. Gap is the noise floor no method can
beat, reported beside every comparison (docs/evaluation.md).

Two layers:

* functions on *outputs* — the ``{"logits", "labels"}`` mappings that
  :func:`~hf_unlearn.evaluation.predict.collect_outputs` returns — so that one pass per dataset
  feeds every metric (the suite in :mod:`hf_unlearn.evaluation.suite` relies on this);
* convenience functions on ``(model, dataset)`` that run that pass for you.

Accuracies and MIA-efficacy are in percent, as in the SalUn paper's tables, so that the Avg. Gap
over UA, RA, TA and MIA-efficacy is a mean of commensurable numbers. The loss-threshold AUC is in
[0, 1] (0.5 = forget examples look like unseen examples).

scikit-learn is imported inside the functions that need it: importing ``hf_unlearn.evaluation``
should not cost the second or so that sklearn takes to import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .predict import MissingLabelsError, collect_outputs

Outputs = Mapping[str, torch.Tensor]

ATTACK_FEATURES = ("confidence", "entropy", "m_entropy", "loss", "combined")
ATTACKERS = ("svc", "logistic")


# --------------------------------------------------------------------------------- on outputs
def _labels(outputs: Outputs) -> torch.Tensor:
    labels = outputs.get("labels")
    if labels is None:
        raise MissingLabelsError("These outputs carry no labels; accuracy and loss need them.")
    return torch.as_tensor(labels).long()


def accuracy_from_outputs(outputs: Outputs) -> float:
    """Top-1 accuracy in percent of ``outputs["logits"]`` against ``outputs["labels"]``."""
    logits = torch.as_tensor(outputs["logits"])
    labels = _labels(outputs)
    if logits.shape[0] == 0:
        raise ValueError("Cannot compute an accuracy on zero examples.")
    return 100.0 * (logits.argmax(-1) == labels).float().mean().item()


def kept_class_outputs(outputs: Outputs, forgotten_classes: Sequence[int]) -> dict[str, torch.Tensor]:
    """The rows of ``outputs`` whose label is not one of ``forgotten_classes`` (every per-row entry sliced alike).

    After a class removal the test examples of that class are misclassified by design, by a retrained model too;
    accuracy on the other classes' examples is what shows whether the rest of the model was kept.
    """
    labels = _labels(outputs)
    keep = ~torch.isin(labels, torch.as_tensor(list(forgotten_classes), dtype=labels.dtype))
    return {key: value[keep] if isinstance(value, torch.Tensor) and value.shape[:1] == keep.shape else value
            for key, value in outputs.items()}


def unlearning_accuracy_from_outputs(forget_outputs: Outputs) -> float:
    """UA = 100 − accuracy on the forget set (percent).

    Higher means more forgetting, but "more" is not "better": the target is the retrained
    model's UA, which for random forgetting is roughly its test error.
    """
    return 100.0 - accuracy_from_outputs(forget_outputs)


def per_example_loss_from_outputs(outputs: Outputs) -> torch.Tensor:
    """Cross-entropy (natural log) of every example, shape ``(n,)``, float64 on CPU.

    Computed in float64: a well-fitted model's training losses are often below float32's
    resolution near zero (1 − p rounds to 0), which would turn them into ties and blunt every
    loss- or confidence-based membership score.
    """
    logits = torch.as_tensor(outputs["logits"]).double()
    return nn.functional.cross_entropy(logits, _labels(outputs), reduction="none")


def attack_features(outputs: Outputs, kind: str = "confidence") -> np.ndarray:
    """Per-example features a confidence-based membership attacker sees, shape ``(n, d)``.

    ``kind``:

    * ``"confidence"`` — softmax probability of the true label (SalUn's reported MIA-efficacy);
    * ``"entropy"`` — entropy of the softmax output;
    * ``"m_entropy"`` — the modified entropy of Song & Mittal (2021), which uses the label:
      ``-(1-p_y) log p_y - Σ_{i≠y} p_i log(1-p_i)``;
    * ``"loss"`` — cross-entropy of the true label;
    * ``"combined"`` — confidence, entropy and modified entropy side by side.
    """
    if kind not in ATTACK_FEATURES:
        raise ValueError(f"Unknown attack feature {kind!r}; choose one of {ATTACK_FEATURES}.")
    logits = torch.as_tensor(outputs["logits"]).double()  # float64: see per_example_loss_from_outputs
    log_probs = torch.log_softmax(logits, dim=-1)
    probs = log_probs.exp()
    entropy = -(probs * log_probs).nan_to_num().sum(-1)
    if kind == "entropy":
        return entropy[:, None].numpy()
    labels = _labels(outputs)
    log_p_true = log_probs.gather(1, labels[:, None]).squeeze(1)
    if kind == "loss":
        return (-log_p_true)[:, None].numpy()
    p_true = log_p_true.exp()
    if kind == "confidence":
        return p_true[:, None].numpy()
    # modified entropy; log(1 - p) computed as log1p(-p), clamped away from log(0)
    log_one_minus = torch.log1p(-probs.clamp(max=1 - 1e-15))
    others = -(probs * log_one_minus)
    others = others.sum(-1) - others.gather(1, labels[:, None]).squeeze(1)
    m_entropy = -(1 - p_true) * log_p_true + others
    if kind == "m_entropy":
        return m_entropy[:, None].numpy()
    return torch.stack([p_true, entropy, m_entropy], dim=1).numpy()


def _as_2d(features) -> np.ndarray:
    array = np.asarray(features.numpy() if torch.is_tensor(features) else features, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"Attack features must be 1-D or 2-D, got shape {array.shape}.")
    return array


def _attacker(name: str):
    """SalUn's SVC (RBF, C=3, gamma="auto", raw features) or a standardised logistic regression."""
    if name == "svc":
        from sklearn.svm import SVC

        return SVC(C=3, gamma="auto", kernel="rbf")
    if name == "logistic":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression())
    raise ValueError(f"Unknown attacker {name!r}; choose one of {ATTACKERS}.")


def mia_efficacy_from_features(
    member_features,
    non_member_features,
    forget_features,
    *,
    attacker: str = "svc",
    seed: int = 0,
) -> float:
    """Share (percent) of forget examples that a trained attacker calls non-members.

    The attacker learns members (label 1: retain examples, which the model was trained on) against
    non-members (label 0: test examples). The larger group is subsampled, with ``seed``, to the
    size of the smaller one: a balanced attacker has no prior towards either answer, so its call on
    a forget example reflects only how the model treats it. A model that never saw the forget set
    makes forget examples look like test examples, so a higher value means less membership leakage;
    the target is the retrained model's value, not 100.

    With a model that generalises well (digits: ~98 % test accuracy) train and test confidences
    both saturate near 1, so the attacker can only call low-confidence examples non-members and
    the retrained model's value sits near its forget error (a few percent), not SalUn's ~13 %.
    """
    members, non_members, forget = (
        _as_2d(x) for x in (member_features, non_member_features, forget_features)
    )
    if len(members) == 0 or len(non_members) == 0 or len(forget) == 0:
        raise ValueError("MIA-efficacy needs at least one member, one non-member and one forget example.")
    if not members.shape[1] == non_members.shape[1] == forget.shape[1]:
        raise ValueError("Member, non-member and forget features must have the same width.")
    rng = np.random.default_rng(seed)
    n = min(len(members), len(non_members))
    members = members[np.sort(rng.choice(len(members), n, replace=False))]
    non_members = non_members[np.sort(rng.choice(len(non_members), n, replace=False))]
    x = np.concatenate([members, non_members])
    y = np.concatenate([np.ones(n), np.zeros(n)])
    clf = _attacker(attacker)
    clf.fit(x, y)
    return 100.0 * float(np.mean(clf.predict(forget) == 0))


def mia_efficacy_from_outputs(
    retain_outputs: Outputs,
    test_outputs: Outputs,
    forget_outputs: Outputs,
    *,
    feature: str = "confidence",
    attacker: str = "svc",
    seed: int = 0,
) -> float:
    """MIA-efficacy (percent) from the three outputs; see :func:`mia_efficacy_from_features`."""
    return mia_efficacy_from_features(
        attack_features(retain_outputs, feature),
        attack_features(test_outputs, feature),
        attack_features(forget_outputs, feature),
        attacker=attacker,
        seed=seed,
    )


def _losses(x) -> np.ndarray:
    if isinstance(x, Mapping):
        return per_example_loss_from_outputs(x).numpy()
    array = np.asarray(x.numpy() if torch.is_tensor(x) else x, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"Per-example losses must be 1-D, got shape {array.shape}.")
    return array


def loss_threshold_auc(
    forget_outputs: Outputs | Sequence[float], test_outputs: Outputs | Sequence[float]
) -> float:
    """ROC AUC of the loss-threshold attack (Yeom et al. 2018) on forget (positive) vs test.

    The membership score is the negated cross-entropy — training examples tend to have lower loss —
    so the AUC is the probability that a random forget example has a lower loss than a random test
    example (ties count one half). 0.5: the forget set looks unseen, as after retraining on random
    forget sets; towards 1: the model still treats it as training data.

    Each argument is either outputs (``{"logits", "labels"}``) or a 1-D array of per-example losses.
    """
    from sklearn.metrics import roc_auc_score

    forget, test = _losses(forget_outputs), _losses(test_outputs)
    if len(forget) == 0 or len(test) == 0:
        raise ValueError("The loss-threshold AUC needs at least one forget and one test example.")
    y = np.concatenate([np.ones(len(forget)), np.zeros(len(test))])
    return float(roc_auc_score(y, -np.concatenate([forget, test])))


# ------------------------------------------------------------------------ on (model, dataset)
def _outputs(model: nn.Module, dataset, collate_fn, batch_size, device) -> dict[str, torch.Tensor]:
    return collect_outputs(model, dataset, collate_fn=collate_fn, batch_size=batch_size, device=device)


def unlearning_accuracy(
    model: nn.Module,
    forget,
    *,
    collate_fn: Callable | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> float:
    """UA (percent) of ``model`` on the forget set: 100 − its accuracy there."""
    return unlearning_accuracy_from_outputs(_outputs(model, forget, collate_fn, batch_size, device))


def retain_accuracy(
    model: nn.Module,
    retain,
    *,
    collate_fn: Callable | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> float:
    """RA (percent): accuracy on the retain set — what unlearning must not damage."""
    return accuracy_from_outputs(_outputs(model, retain, collate_fn, batch_size, device))


def test_accuracy(
    model: nn.Module,
    test,
    *,
    collate_fn: Callable | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> float:
    """TA (percent): accuracy on held-out data — the model's generalisation after unlearning."""
    return accuracy_from_outputs(_outputs(model, test, collate_fn, batch_size, device))


test_accuracy.__test__ = False  # its name starts with "test": keep pytest from collecting it


def mia_efficacy(
    model: nn.Module,
    forget,
    retain,
    test,
    *,
    feature: str = "confidence",
    attacker: str = "svc",
    seed: int = 0,
    collate_fn: Callable | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> float:
    """SalUn's MIA-efficacy (percent) of ``model`` on ``forget``.

    An attacker (by default SalUn's RBF SVC on the softmax probability of the true label) is
    trained on retain examples as members and test examples as non-members, balanced by
    subsampling; the result is the share of forget examples it calls non-members.
    """
    args = (collate_fn, batch_size, device)
    return mia_efficacy_from_outputs(
        _outputs(model, retain, *args),
        _outputs(model, test, *args),
        _outputs(model, forget, *args),
        feature=feature,
        attacker=attacker,
        seed=seed,
    )


# ------------------------------------------------------------------------ evaluate modules
METRICS_DIR = Path(__file__).resolve().parent / "evaluate_modules"


def metric_path(name: str) -> str:
    """Absolute path of one of the package's ``evaluate`` modules, for ``evaluate.load(path)``.

    The modules ship inside the package (``hf_unlearn/evaluation/evaluate_modules/<name>/<name>.py``), so they load
    offline (``HF_HUB_OFFLINE=1``) from wherever ``hf_unlearn`` is installed.
    """
    available = sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").is_file())
    if name not in available:
        raise ValueError(f"No evaluate module named {name!r} in hf_unlearn; available: {available}.")
    return str(METRICS_DIR / name)
