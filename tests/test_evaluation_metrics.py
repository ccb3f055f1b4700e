"""Unlearning metrics: hand-computed cases, bad input, and the expected direction on real digits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from datasets import Dataset
from digits_models import fit_small_cnn
from torch import nn
from transformers.modeling_outputs import ImageClassifierOutput

from hf_unlearn.data.builtin import load_digits_dataset
from hf_unlearn.evaluation import (
    MissingLabelsError,
    accuracy,
    accuracy_from_outputs,
    activation_distance,
    activation_distance_from_logits,
    attack_features,
    collect_outputs,
    evaluate_unlearning,
    js_divergence,
    js_divergence_from_logits,
    js_divergence_from_probs,
    loss_threshold_auc,
    metric_path,
    mia_efficacy,
    mia_efficacy_from_features,
    mia_efficacy_from_outputs,
    per_example_loss_from_outputs,
    retain_accuracy,
    unlearning_accuracy,
    unlearning_accuracy_from_outputs,
)
from hf_unlearn.evaluation import test_accuracy as ta_metric
from hf_unlearn.models import SmallCNNConfig, SmallCNNForImageClassification


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The models here are tiny: intra-op threads only add overhead, badly so on a busy 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- fixed outputs
class LookupModel(nn.Module):
    """Returns the ``scores`` column as its logits: predictions fixed by the data."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, scores, **kwargs):
        return ImageClassifierOutput(logits=scores + 0 * self.anchor)


def lookup_dataset(predictions, labels, num_classes=3):
    logits = torch.full((len(predictions), num_classes), -5.0)
    logits[torch.arange(len(predictions)), torch.tensor(predictions)] = 5.0
    return Dataset.from_dict({"scores": logits.tolist(), "labels": labels}).with_format("torch")


def test_accuracies_on_fixed_predictions():
    model = LookupModel()
    forget = lookup_dataset([0, 1, 2, 0], [0, 1, 2, 1])  # 3 of 4 right
    retain = lookup_dataset([0, 1, 2, 2, 1], [0, 1, 2, 2, 1])  # all right
    test = lookup_dataset([0, 0, 0, 0, 1], [0, 1, 2, 0, 1])  # 3 of 5 right
    assert unlearning_accuracy(model, forget) == pytest.approx(25.0)
    assert retain_accuracy(model, retain) == pytest.approx(100.0)
    assert ta_metric(model, test) == pytest.approx(60.0)
    out = collect_outputs(model, forget)
    assert accuracy_from_outputs(out) == pytest.approx(accuracy(model, forget))
    assert unlearning_accuracy_from_outputs(out) == pytest.approx(25.0)


def test_per_example_loss_and_attack_features_by_hand():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    out = {"logits": logits, "labels": torch.tensor([0, 1])}
    # p = (1/2, 1/2) and (3/4, 1/4)
    assert per_example_loss_from_outputs(out).tolist() == pytest.approx([math.log(2), math.log(4)])
    assert attack_features(out, "confidence")[:, 0] == pytest.approx([0.5, 0.25])
    entropy_2 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert attack_features(out, "entropy")[:, 0] == pytest.approx([math.log(2), entropy_2])
    # modified entropy, example 2 (y = 1, p_y = 1/4): -(3/4) log(1/4) - (3/4) log(1/4)
    assert attack_features(out, "m_entropy")[1, 0] == pytest.approx(-1.5 * math.log(0.25))
    assert attack_features(out, "combined").shape == (2, 3)
    with pytest.raises(ValueError, match="Unknown attack feature"):
        attack_features(out, "margin")


# -------------------------------------------------------------------------------- loss AUC
@pytest.mark.parametrize(
    "forget, test, expected",
    [
        ([0.1, 0.2], [0.5, 0.6], 1.0),  # every forget loss below every test loss
        ([0.5, 0.6], [0.1, 0.2], 0.0),  # reversed
        ([0.1, 0.4], [0.2, 0.5], 0.75),  # pairs (f < t): 0.1<0.2, 0.1<0.5, 0.4<0.5; not 0.4<0.2
        ([0.3], [0.3], 0.5),  # a tie counts one half
    ],
)
def test_loss_threshold_auc_hand_computed(forget, test, expected):
    assert loss_threshold_auc(np.array(forget), np.array(test)) == pytest.approx(expected)


def test_loss_threshold_auc_accepts_outputs():
    confident = {"logits": torch.tensor([[9.0, 0.0], [8.0, 0.0]]), "labels": torch.tensor([0, 0])}
    unsure = {"logits": torch.tensor([[0.5, 0.0], [0.0, 0.2]]), "labels": torch.tensor([0, 0])}
    assert loss_threshold_auc(confident, unsure) == 1.0
    assert loss_threshold_auc(unsure, confident) == 0.0


# ------------------------------------------------------------------------------ MIA-efficacy
def test_mia_efficacy_hand_computed():
    members, non_members = np.ones((4, 1)), np.zeros((4, 1))
    forget = np.array([[0.95], [0.05], [0.9], [0.1]])  # two look like members, two do not
    for attacker in ("svc", "logistic"):
        assert mia_efficacy_from_features(members, non_members, forget, attacker=attacker) == 50.0
    # balancing: 40 members vs 4 non-members is subsampled to 4 vs 4 — the answer does not move
    assert mia_efficacy_from_features(np.ones((40, 1)), non_members, forget) == 50.0
    with pytest.raises(ValueError, match="Unknown attacker"):
        mia_efficacy_from_features(members, non_members, forget, attacker="forest")


def test_mia_efficacy_from_outputs_by_confidence():
    sure = torch.tensor([[8.0, -8.0]] * 6)
    unsure = torch.tensor([[-0.5, 0.5]] * 6)
    zeros = torch.zeros(6, dtype=torch.long)
    retain, test = {"logits": sure, "labels": zeros}, {"logits": unsure, "labels": zeros}
    forget = {"logits": torch.cat([sure[:1], unsure[:3]]), "labels": zeros[:4]}
    assert mia_efficacy_from_outputs(retain, test, forget) == 75.0


# ------------------------------------------------------------------------- distances, tensors
def test_js_divergence_tensor_cases():
    assert js_divergence_from_probs([[1.0, 0.0]], [[0.0, 1.0]]) == pytest.approx(math.log(2))
    p, q = torch.tensor([[0.5, 0.5]]), torch.tensor([[0.9, 0.1]])
    m = (p + q) / 2
    by_hand = 0.5 * (p * (p / m).log()).sum() + 0.5 * (q * (q / m).log()).sum()
    assert js_divergence_from_probs(p, q) == pytest.approx(by_hand.item())
    logits = torch.randn(50, 10, generator=torch.Generator().manual_seed(0)) * 30
    per_example = js_divergence_from_logits(logits, logits.flip(0), reduction="none")
    assert per_example.shape == (50,)
    assert ((per_example >= 0) & (per_example <= math.log(2))).all()
    assert js_divergence_from_logits(logits, logits) == pytest.approx(0.0, abs=1e-12)
    assert activation_distance_from_logits(torch.tensor([[50.0, 0]]), torch.tensor([[0, 50.0]])) == (
        pytest.approx(math.sqrt(2))
    )
    with pytest.raises(ValueError, match="different label spaces"):
        js_divergence_from_logits(torch.zeros(3, 10), torch.zeros(3, 5))


# ---------------------------------------------------------------------------- trained digits
def _fit(x: torch.Tensor, y: torch.Tensor, seed: int) -> SmallCNNForImageClassification:
    """SGD with momentum, 20 epochs, batch 128: ~100 % train and ~98 % test accuracy in seconds."""
    return fit_small_cnn(x, y, epochs=20, seed=seed, batch_size=128, optimizer="sgd", lr=0.05)


@pytest.fixture(scope="module")
def forget_split_models():
    """A model trained with a 10 % random forget set, and one retrained without it."""
    data = load_digits_dataset().with_format("torch")
    train, test = data["train"], data["test"]
    order = np.random.default_rng(0).permutation(len(train))
    forget_idx, retain_idx = np.sort(order[: len(train) // 10]), np.sort(order[len(train) // 10 :])
    columns = train[:]
    x, y = columns["pixel_values"], columns["labels"]
    return {
        "forget": train.select(forget_idx),
        "retain": train.select(retain_idx),
        "test": test,
        "original": _fit(x, y, seed=0),
        "retrained": _fit(x[retain_idx], y[retain_idx], seed=0),
    }


def test_original_model_remembers_the_forget_set(forget_split_models):
    forget, retain, test = forget_split_models["forget"], forget_split_models["retain"], forget_split_models["test"]
    original, retrained = forget_split_models["original"], forget_split_models["retrained"]
    loss = {
        name: per_example_loss_from_outputs(collect_outputs(forget_split_models[name], forget)).mean().item()
        for name in ("original", "retrained")
    }
    # measured: ~0.003 vs ~0.09 — trained-on examples are fitted far more tightly
    assert loss["original"] < loss["retrained"] / 5
    assert unlearning_accuracy(original, forget) <= unlearning_accuracy(retrained, forget)
    # measured: 0.0 % vs 5.6 %. On digits the model generalises (TA ~98 %), so train and test
    # confidences both saturate near 1 and membership shows only in the low-confidence tail: the
    # attacker calls "non-member" only for forget examples the model is unsure about, which the
    # original model (trained on them) never is.
    mia_original = mia_efficacy(original, forget, retain, test)
    mia_retrained = mia_efficacy(retrained, forget, retain, test)
    assert mia_original < mia_retrained
    assert mia_original <= 1.0 and mia_retrained >= 2.0


def test_distances_between_digit_models(forget_split_models):
    test, original, retrained = (
        forget_split_models["test"],
        forget_split_models["original"],
        forget_split_models["retrained"],
    )
    assert js_divergence(original, original, test) == pytest.approx(0.0, abs=1e-9)
    assert activation_distance(original, original, test) == pytest.approx(0.0, abs=1e-9)
    assert activation_distance(original, original, test, on="features") == pytest.approx(0.0, abs=1e-6)
    torch.manual_seed(123)
    fresh = SmallCNNForImageClassification(SmallCNNConfig())
    js_fresh = js_divergence(original, fresh, test)
    assert 0.0 < js_fresh <= math.log(2)
    assert 0.0 < activation_distance(original, fresh, test) <= math.sqrt(2)
    assert activation_distance(original, fresh, test, on="features") > 0.0
    # two models trained on nearly the same data are closer than a trained and an untrained one
    assert js_divergence(original, retrained, test) < js_fresh


def test_evaluate_unlearning_runs_each_dataset_once(forget_split_models):
    forget, retain, test = forget_split_models["forget"], forget_split_models["retain"], forget_split_models["test"]
    original, retrained = forget_split_models["original"], forget_split_models["retrained"]
    seen = {"original": 0, "retrained": 0}
    hooks = [
        m.register_forward_hook(
            lambda mod, args, kwargs, out, name=name: seen.__setitem__(
                name, seen[name] + kwargs["pixel_values"].shape[0]
            ),
            with_kwargs=True,
        )
        for name, m in (("original", original), ("retrained", retrained))
    ]
    try:
        result = evaluate_unlearning(
            original, forget, retain, test, reference_model=retrained, retain_eval_samples=300, run_time=2.5
        )
    finally:
        for hook in hooks:
            hook.remove()
    assert seen == {"original": len(forget) + 300 + len(test), "retrained": len(forget)}
    assert set(result) == {"UA", "RA", "TA", "MIA", "loss_AUC", "JS", "act_dist", "time"}
    assert result["UA"] == pytest.approx(unlearning_accuracy(original, forget))
    assert result["TA"] == pytest.approx(ta_metric(original, test))
    # the retain subsample is drawn with the seed, reproducibly; RA and the attacker's members use it
    subsample = retain.select(np.sort(np.random.default_rng(0).choice(len(retain), 300, replace=False)))
    assert result["RA"] == pytest.approx(retain_accuracy(original, subsample))
    assert result["MIA"] == pytest.approx(mia_efficacy(original, forget, subsample, test))
    assert result["loss_AUC"] == pytest.approx(
        loss_threshold_auc(collect_outputs(original, forget), collect_outputs(original, test))
    )
    assert result["JS"] == pytest.approx(js_divergence(original, retrained, forget))
    assert result["act_dist"] == pytest.approx(activation_distance(original, retrained, forget))
    assert result["time"] == 2.5
    same = evaluate_unlearning(retrained, forget, retain, test, reference_model=retrained)
    assert same["JS"] == pytest.approx(0.0, abs=1e-9) and same["act_dist"] == pytest.approx(0.0, abs=1e-9)


def test_mia_draws_average_the_attacker_over_balanced_draws():
    """When train and test confidences look alike, the draw of the attacker's members decides its verdict
    on a whole forget set at once (SMS spam: one model read 1.8 to 100 %); ``mia_draws`` averages seeds
    seed … seed + draws − 1."""
    rng = np.random.default_rng(0)

    def scores(margins):  # two classes, label 0, the margin of class 0 over class 1
        return Dataset.from_dict(
            {"scores": [[float(m), 0.0] for m in margins], "labels": [0] * len(margins)}
        ).with_format("torch")

    # members and non-members alike (as on a model that generalises); the forget set where the attacker's
    # boundary falls, which moves with the draw of 100 of the 600 members
    retain, test = scores(rng.uniform(0.0, 2.0, 600)), scores(rng.uniform(0.0, 2.0, 100))
    forget = scores([0.84] * 50)
    model = LookupModel()
    outputs = [collect_outputs(model, d) for d in (retain, test, forget)]
    per_draw = [mia_efficacy_from_outputs(*outputs, seed=s) for s in range(0, 10)]
    assert set(per_draw) == {0.0, 100.0}  # the same model: all forget examples flip together, both ways
    result = evaluate_unlearning(model, forget, retain, test, seed=0, mia_draws=10)
    assert result["MIA"] == pytest.approx(float(np.mean(per_draw)))
    assert evaluate_unlearning(model, forget, retain, test, seed=1)["MIA"] == pytest.approx(per_draw[1])
    with pytest.raises(ValueError, match="mia_draws must be at least 1"):
        evaluate_unlearning(model, forget, retain, test, mia_draws=0)


def test_mia_is_undefined_when_the_attacker_saw_one_class_only(forget_split_models):
    """Class removal on a binary task: members and non-members are all the kept class; MIA is NaN."""
    original = forget_split_models["original"]
    data = forget_split_models["test"]
    labels = np.asarray(data["labels"])
    kept = data.select(np.flatnonzero(labels == 0).tolist())
    removed = data.select(np.flatnonzero(labels == 3).tolist())
    result = evaluate_unlearning(original, removed, kept, kept)
    assert math.isnan(result["MIA"]) and not math.isnan(result["UA"])
    # a second kept class gives the attacker something to learn from: a number again
    two = data.select(np.flatnonzero((labels == 0) | (labels == 1)).tolist())
    assert not math.isnan(evaluate_unlearning(original, removed, two, two)["MIA"])
    # forget examples of a class the attacker did see are not an extrapolation either
    assert not math.isnan(evaluate_unlearning(original, kept, kept, kept)["MIA"])


# -------------------------------------------------------------------------------- bad input
def test_missing_labels_raise(forget_split_models):
    unlabeled = forget_split_models["test"].remove_columns("labels")
    model = forget_split_models["original"]
    with pytest.raises(MissingLabelsError):
        unlearning_accuracy(model, unlabeled)
    with pytest.raises(MissingLabelsError):
        mia_efficacy(model, unlabeled, forget_split_models["retain"], forget_split_models["test"])
    with pytest.raises(MissingLabelsError):
        evaluate_unlearning(model, unlabeled, forget_split_models["retain"], forget_split_models["test"])
    with pytest.raises(MissingLabelsError):
        loss_threshold_auc({"logits": torch.zeros(2, 3)}, np.zeros(2))


def test_label_names_from_a_csv_are_refused_with_how_to_map_them(forget_split_models):
    test = forget_split_models["test"].select(range(8))
    names = [f"digit {label}" for label in test["labels"]]
    named = test.remove_columns("labels").add_column("labels", names)
    with pytest.raises(ValueError, match=r"labels are names \(e.g. 'digit \d'\).*label2id"):
        accuracy(forget_split_models["original"], named)
    assert 0.0 <= accuracy(forget_split_models["original"], test) <= 100.0  # ids: read as before


def test_reference_with_another_label_space_raises(forget_split_models):
    model, test = forget_split_models["original"], forget_split_models["test"]
    five_classes = SmallCNNForImageClassification(SmallCNNConfig(num_labels=5))
    for fn in (js_divergence, activation_distance):
        with pytest.raises(ValueError, match="different label spaces"):
            fn(model, five_classes, test)
    with pytest.raises(ValueError, match="different label spaces"):
        evaluate_unlearning(
            model, forget_split_models["forget"], forget_split_models["retain"], test, reference_model=five_classes
        )
    names = [str(i) for i in range(10)]
    named = SmallCNNForImageClassification(SmallCNNConfig(id2label=dict(enumerate(names))))
    shuffled = SmallCNNForImageClassification(SmallCNNConfig(id2label=dict(enumerate(names[::-1]))))
    with pytest.raises(ValueError, match="id2label differ"):
        js_divergence(named, shuffled, test)
    js_divergence(named, model, test)  # default LABEL_i names match anything of the same size


# ------------------------------------------------------------------------- evaluate modules
def test_evaluate_modules_load_offline_and_match(forget_split_models, tmp_path, monkeypatch):
    evaluate = pytest.importorskip("evaluate")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    forget, retain, test = forget_split_models["forget"], forget_split_models["retain"], forget_split_models["test"]
    original, retrained = forget_split_models["original"], forget_split_models["retrained"]
    f_out, r_out, t_out = (collect_outputs(original, d) for d in (forget, retain, test))
    ref_out = collect_outputs(retrained, forget)

    ua = evaluate.load(metric_path("unlearning_accuracy"), cache_dir=str(tmp_path))
    got = ua.compute(predictions=f_out["logits"].argmax(-1).tolist(), references=f_out["labels"].tolist())
    assert got["unlearning_accuracy"] == pytest.approx(unlearning_accuracy_from_outputs(f_out))
    assert got["accuracy"] == pytest.approx(accuracy_from_outputs(f_out))

    js = evaluate.load(metric_path("js_divergence"), cache_dir=str(tmp_path))
    expected = js_divergence_from_logits(f_out["logits"], ref_out["logits"])
    got = js.compute(predictions=f_out["logits"].tolist(), references=ref_out["logits"].tolist())
    assert got["js_divergence"] == pytest.approx(expected, rel=1e-6)
    got = js.compute(
        predictions=f_out["logits"].softmax(-1).tolist(),
        references=ref_out["logits"].softmax(-1).tolist(),
        inputs="probabilities",
    )
    assert got["js_divergence"] == pytest.approx(expected, rel=1e-4, abs=1e-9)

    mia = evaluate.load(metric_path("mia_efficacy"), cache_dir=str(tmp_path))
    groups = ["member"] * len(retain) + ["non_member"] * len(test) + ["forget"] * len(forget)
    for name in ("original", "retrained"):
        r, t, f = (collect_outputs(forget_split_models[name], d) for d in (retain, test, forget))
        scores = np.concatenate([attack_features(o, "confidence") for o in (r, t, f)]).tolist()
        got = mia.compute(scores=scores, group=groups, seed=3)
        assert got["mia_efficacy"] == pytest.approx(mia_efficacy_from_outputs(r, t, f, seed=3))
    # scalar scores (one loss per example) and the logistic attacker
    losses = torch.cat([per_example_loss_from_outputs(o) for o in (r_out, t_out, f_out)]).tolist()
    got = mia.compute(scores=losses, group=groups, attacker="logistic")
    assert got["mia_efficacy"] == pytest.approx(
        mia_efficacy_from_outputs(r_out, t_out, f_out, feature="loss", attacker="logistic")
    )
    with pytest.raises(ValueError, match="No evaluate module"):
        metric_path("rouge")
