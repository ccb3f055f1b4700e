"""Every unlearning method on a small digits CNN (and a tiny BERT), with its default configuration.

One original model is trained per session; every test works on a copy. The main test forgets the
class "3" with each method's defaults and the library's default stop rule, and checks that forget
accuracy falls below a per-method bound while retain accuracy stays within a stated margin.
"""

from __future__ import annotations

import contextlib
import copy
from types import SimpleNamespace

import pytest
import torch
from digits_models import fit_small_cnn, make_args

import hf_unlearn.models  # noqa: F401  (registers the SmallCNN with the Auto classes)
from hf_unlearn.data.builtin import load_digits_dataset
from hf_unlearn.data.forget import indices_of_classes, random_indices, split_forget_retain
from hf_unlearn.evaluation.predict import collect_outputs
from hf_unlearn.methods import METHODS
from hf_unlearn.methods.base import cross_entropy
from hf_unlearn.methods.eupmu import EUPMU, EUPMUConfig
from hf_unlearn.methods.eupmu_explicit import EUPMUExplicit, EUPMUExplicitConfig, surgery_direction
from hf_unlearn.training.arguments import UnlearningArguments
from hf_unlearn.training.trainer import UnlearningTrainer

FORGET_CLASS = 3
NEEDS_CGS = {name for name, method in METHODS.items() if method.uses_projection}
BUILT_HERE = sorted(set(METHODS) - {"pgu"})  # PGU is covered by the trainer's own tests

# Forget accuracy (%) after forgetting class 3 with the defaults; the original model scores 100. Measured with the
# utility guard (2026-11-23): gradient_ascent 78.3, npo 78.3, fisher 84.6, ga_projected 63.6,
# scrub 16.8, random_labels 12.6, others <= 4.2. The guard holds retain accuracy within its 3-point tolerance
# (lowest measured: salun 98.1; random_labels was 95.8 before the guard, at forget 3.5).
# finetune forgets only by catastrophic forgetting, which depends on which retain examples it replays. Since the
# retain partners are drawn per batch (so a resumed run pairs exactly as an uninterrupted one), finetune measures
# 93.0-99.3 over 7 draws (seeds 0-3, three partner generators); the earlier 87.4 (81.1-90.9 over seeds 0-3) came
# from a partner generator seeded like the global RNG that seeds the sampler, i.e. correlated with the batch order.
# No bound on it would be both true and meaningful; its retain accuracy is still checked.
MAX_FORGET_ACCURACY = {
    "finetune": 100.0,
    "gradient_ascent": 90.0,
    "npo": 90.0,
    "fisher": 95.0,
    "ga_projected": 80.0,
    "scrub": 40.0,
}
DEFAULT_MAX_FORGET_ACCURACY = 15.0
# simnpo and rmu come from LLM unlearning: their recommended values are the published causal-LM ones (AdamW 1e-5),
# which barely move this CNN, so simnpo runs here at a classifier's rate. RMU steers a transformer layer's tokens:
# the CNN has no layer stack (refused with a message, tests/test_llm_methods.py); it runs on the tiny BERT below.
CLASSIFIER_VALUES = {"simnpo": {"learning_rate": 1e-3}}
ON_THE_CNN = [name for name in BUILT_HERE if name != "rmu"]
MIN_RETAIN_ACCURACY = 96.0  # the guard's 3 points below the original's 100, plus sample noise


def _args(tmp_path, method: str, **kwargs) -> UnlearningArguments:
    return make_args(tmp_path, method, logging_strategy="epoch", **kwargs)


def _accuracy(model, dataset) -> float:
    out = collect_outputs(model, dataset, batch_size=512)
    return 100.0 * (out["logits"].argmax(-1) == out["labels"]).float().mean().item()


@pytest.fixture(scope="module")
def digits():
    """All 80 % of digits for training (no validation carved out): the thresholds above were measured on it."""
    torch.set_num_threads(1)
    return load_digits_dataset().with_format("torch")


@pytest.fixture(scope="module")
def original(digits):
    """A SmallCNN trained on digits: 20 epochs of AdamW, lr 2e-3, batch 32 (about 2 s)."""
    train = digits["train"]
    return fit_small_cnn(train["pixel_values"], train["labels"], epochs=20, lr=2e-3)


@pytest.fixture(scope="module")
def class_split(digits):
    train = digits["train"]
    return split_forget_retain(train, indices_of_classes(train, [FORGET_CLASS]))


def _unlearn(model, args, forget, retain, eval_dataset=None, original_dataset=None):
    from transformers.trainer_callback import PrinterCallback

    trainer = UnlearningTrainer(
        model, args, forget_dataset=forget, retain_dataset=retain, eval_dataset=eval_dataset,
        original_dataset=original_dataset,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return trainer


@pytest.mark.parametrize("method", ON_THE_CNN)
def test_forgets_a_class_and_keeps_the_rest(method, tmp_path, digits, original, class_split):
    torch.set_num_threads(1)
    train, test = digits["train"], digits["test"]
    forget, retain = class_split
    assert _accuracy(original, forget) == 100.0 and _accuracy(original, retain) == 100.0
    model = copy.deepcopy(original)
    trainer = _unlearn(
        model, _args(tmp_path, method, **CLASSIFIER_VALUES.get(method, {})), forget, retain, eval_dataset=test,
        original_dataset=train if method in NEEDS_CGS else None,
    )
    forget_acc, retain_acc = _accuracy(model, forget), _accuracy(model, retain)
    print(f"{method}: forget {forget_acc:.1f} retain {retain_acc:.1f} epochs {trainer.state.epoch:.1f}")
    assert forget_acc <= MAX_FORGET_ACCURACY.get(method, DEFAULT_MAX_FORGET_ACCURACY)
    assert retain_acc >= MIN_RETAIN_ACCURACY
    history = trainer.state.log_history
    if method == "eupmu_explicit":  # the surgery was active on some steps
        assert any(log.get("surgery_active", 0.0) > 0 for log in history)
    if method == "eupmu":
        assert any("eupmu_multiplier" in log for log in history)
    if method in ("scrub", "npo"):  # the teacher / reference copy never moves
        frozen = trainer.method.teacher if method == "scrub" else trainer.method.reference
        for (name, p), q in zip(original.named_parameters(), frozen.parameters()):
            assert torch.equal(p, q), name


def test_eupmu_keeps_retain_accuracy_without_a_stop_rule(tmp_path, digits, original):
    """10 % random forgetting, all epochs, no eval set: the multiplier alone protects the retain set."""
    torch.set_num_threads(1)
    train = digits["train"]
    forget, retain = split_forget_retain(train, random_indices(len(train), 0.1, seed=0))
    model = copy.deepcopy(original)
    trainer = _unlearn(model, _args(tmp_path, "eupmu", eval_strategy="no"), forget, retain)
    assert _accuracy(model, retain) >= 98.0  # measured 99.3
    logged = [log["eupmu_multiplier"] for log in trainer.state.log_history if "eupmu_multiplier" in log]
    assert logged and all(w >= 0 for w in logged)


def _fake_trainer():
    """What ``compute_loss``/``after_optimizer_step`` read from the Trainer, to drive single steps by hand."""
    return SimpleNamespace(
        args=SimpleNamespace(device=torch.device("cpu")), compute_loss_context_manager=contextlib.nullcontext
    )


def _batch(dataset, rows):
    part = dataset[list(rows)]
    return {"pixel_values": part["pixel_values"], "labels": part["labels"]}


def test_eupmu_multiplier_rises_when_the_retain_loss_rises(tmp_path, original, class_split):
    """Drive single steps by hand: the weights before and after each "optimizer step" are chosen."""
    torch.set_num_threads(1)
    forget, retain = class_split
    model = copy.deepcopy(original).train()
    good = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        model.classifier.weight.mul_(-0.5)  # a step that wrecks the retain batch
    bad = copy.deepcopy(model.state_dict())
    trainer = _fake_trainer()
    batch = {"forget": _batch(forget, range(32)), "retain": _batch(retain, range(32))}

    def step(method, before, after):
        model.load_state_dict(before)
        method.compute_loss(trainer, model, batch)
        model.load_state_dict(after)
        method.after_optimizer_step(trainer, model)
        return method.w

    method = EUPMU(EUPMUConfig())
    assert method.w == 0.0  # w0 = 0: the first step is pure forgetting
    rising = [step(method, good, bad) for _ in range(3)]  # the retain loss rises at every step
    assert 0.0 < rising[0] < rising[1] < rising[2]
    assert method.logs()["eupmu_multiplier"] == pytest.approx(sum(rising) / 3)
    falling = [step(method, bad, good) for _ in range(60)]  # now every step repairs it by far more than epsilon
    assert min(falling) >= 0.0 and falling[-1] < rising[-1]
    assert falling[-1] == 0.0  # the dual ascent drives w back to its floor, never below

    fresh = EUPMU(EUPMUConfig())
    assert step(fresh, bad, good) == 0.0 and fresh.multiplier.item() == 0.0  # clamped at 0


def test_surgery_direction_bound_on_random_gradients():
    generator = torch.Generator().manual_seed(0)
    for epsilon in (0.0, 0.1):
        for _ in range(50):
            g_f = [torch.randn(7, 3, generator=generator), torch.randn(5, generator=generator)]
            g_r = [torch.randn(7, 3, generator=generator), torch.randn(5, generator=generator)]
            d, lam = surgery_direction(g_f, g_r, epsilon)
            inner = sum((r * x).sum() for r, x in zip(g_r, d)).item()
            assert inner >= -epsilon - 1e-4
            if lam > 0:
                assert inner == pytest.approx(-epsilon, abs=1e-4)
            else:
                assert all(torch.equal(a, b) for a, b in zip(d, g_f))


def test_explicit_surgery_writes_the_bounded_direction_into_grad(tmp_path, original, class_split):
    torch.set_num_threads(1)
    forget, retain = class_split
    model = copy.deepcopy(original).train()
    method = EUPMUExplicit(EUPMUExplicitConfig())  # epsilon = 0: <g_r, d> >= 0
    batch = {"forget": _batch(forget, range(32)), "retain": _batch(retain, range(32))}
    params = list(model.parameters())
    loss = method.compute_loss(_fake_trainer(), model, batch)
    loss.backward()  # what the Trainer does with the returned loss
    g_r = torch.autograd.grad(cross_entropy(model, batch["retain"]), params)
    inner = sum((r * p.grad).sum() for r, p in zip(g_r, params)).item()
    norms = (sum(r.pow(2).sum() for r in g_r) * sum(p.grad.pow(2).sum() for p in params)).sqrt().item()
    assert inner >= -1e-5 * norms
    assert method.retain_alignment == pytest.approx(inner, abs=1e-5 * norms)


def test_salun_moves_only_the_salient_half(tmp_path, digits, original, class_split):
    torch.set_num_threads(1)
    forget, retain = class_split
    model = copy.deepcopy(original)
    trainer = _unlearn(model, _args(tmp_path, "salun", num_train_epochs=1, eval_strategy="no"), forget, retain)
    masks = trainer.method.masks
    kept = sum(int(m.sum()) for _, m in masks) / sum(m.numel() for _, m in masks)
    assert kept == pytest.approx(0.5, abs=0.01)
    before = dict(original.named_parameters())
    names = {id(p): n for n, p in model.named_parameters()}
    for param, mask in masks:
        moved = param.detach() != before[names[id(param)]]
        assert not moved[~mask].any()
        assert moved[mask].any()


def test_unknown_method_and_missing_retain_set_are_clear_errors(tmp_path, digits, original, class_split):
    with pytest.raises(ValueError, match="Unknown unlearning method 'nope'.*eupmu"):
        _args(tmp_path, "nope")
    forget, _ = class_split
    for name, method in METHODS.items():
        if method.needs_retain:
            with pytest.raises(ValueError, match=f"{name}.*needs a retain set"):
                UnlearningTrainer(copy.deepcopy(original), _args(tmp_path, name, eval_strategy="no"), forget)


def test_method_defaults_fill_only_unset_fields(tmp_path):
    for name, method in METHODS.items():
        args = _args(tmp_path, name)
        for field, value in method.config_class.training_defaults.items():
            assert getattr(args, field) == value, (name, field)
    # a value the user passes is kept even when it equals another method's recommendation (PGU's 0.5)
    args = _args(tmp_path, "eupmu", learning_rate=0.5)
    assert args.learning_rate == 0.5 and args.num_train_epochs == 5.0
    assert "learning_rate" not in args.method_defaults_applied
    args = _args(tmp_path, "eupmu", learning_rate=0.123, optim="sgd")
    assert args.learning_rate == 0.123 and args.optim == "sgd"
    with pytest.raises(ValueError, match="salun_mask_ratio"):
        _args(tmp_path, "salun", salun_mask_ratio=0.0)
    with pytest.raises(ValueError, match="npo_beta"):
        _args(tmp_path, "npo", npo_beta=0.0)


def test_method_hyperparameters_are_the_methods_own(tmp_path):
    args = _args(tmp_path, "scrub", scrub_alpha=0.5)
    assert args.method_config.scrub_alpha == 0.5 and args.method_kwargs["scrub_alpha"] == 0.5
    assert not any(f.startswith(("scrub_", "pgu_", "eupmu_", "npo_")) for f in UnlearningArguments.__dataclass_fields__)
    with pytest.raises(ValueError, match="no hyperparameter scrub_alpha.*belongs to scrub"):
        UnlearningArguments(output_dir=str(tmp_path), method="pgu", method_kwargs={"scrub_alpha": 1.0})
    from_json = UnlearningArguments(output_dir=str(tmp_path), method="npo", method_kwargs='{"npo_beta": 0.3}')
    assert from_json.method_config.npo_beta == 0.3
    with pytest.raises(TypeError, match="takes a NPOConfig"):
        UnlearningArguments(output_dir=str(tmp_path), method="npo", method_kwargs=EUPMUConfig())


def test_every_method_runs_on_a_text_classifier(tmp_path):
    """A tiny BERT (with dropout) through each method: dict inputs, attention masks, no pixel_values."""
    from datasets import Dataset
    from transformers import BertConfig, BertForSequenceClassification
    from transformers.trainer_callback import PrinterCallback

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    rows = 48
    data = Dataset.from_dict(
        {
            "input_ids": torch.randint(1, 60, (rows, 8), generator=generator).tolist(),
            "attention_mask": torch.ones(rows, 8, dtype=torch.long).tolist(),
            "labels": torch.randint(0, 3, (rows,), generator=generator).tolist(),
        }
    )
    forget, retain = split_forget_retain(data, list(range(8)))
    config = BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16, num_labels=3,
    )
    for name in BUILT_HERE:
        torch.manual_seed(0)
        model = BertForSequenceClassification(config)
        start = {n: p.detach().clone() for n, p in model.named_parameters()}
        args = _args(
            tmp_path, name, max_steps=2, per_device_train_batch_size=4, eval_strategy="no", learning_rate=1e-2,
            utility_tolerance=100.0,  # random labels: this test checks the plumbing, not the guard
            **({"fisher_num_samples": 8} if name == "fisher" else {}),
        )
        trainer = UnlearningTrainer(
            model, args, forget_dataset=forget, retain_dataset=retain,
            original_dataset=data if name in NEEDS_CGS else None,
        )
        trainer.remove_callback(PrinterCallback)
        output = trainer.train()
        assert torch.isfinite(torch.tensor(output.training_loss)), name
        assert any(not torch.equal(p, start[n]) for n, p in model.named_parameters()), name


def test_the_default_path_adds_a_retain_loss_only_when_a_retain_set_is_given(tmp_path, digits, original, class_split):
    forget, retain = class_split
    args = UnlearningArguments(output_dir=str(tmp_path), report_to="none")
    assert args.method == "auto" and args.learning_rate == 0.25  # PGU's training values either way
    trainer = UnlearningTrainer(copy.deepcopy(original), args, forget, retain, original_dataset=digits["train"])
    assert args.method == "pgu_retain" and trainer.method.needs_retain and trainer.method.uses_projection
    alone = UnlearningArguments(output_dir=str(tmp_path), report_to="none", method_kwargs={"pgu_delta": 0.1})
    trainer = UnlearningTrainer(copy.deepcopy(original), alone, forget, original_dataset=digits["train"])
    assert alone.method == "pgu" and not trainer.method.needs_retain and trainer.method.config.pgu_delta == 0.1
    weighted = UnlearningArguments(output_dir=str(tmp_path), report_to="none", method_kwargs={"pgu_retain_weight": 2})
    with pytest.raises(ValueError, match="pgu_retain_weight was set, but there is no retain set"):
        UnlearningTrainer(copy.deepcopy(original), weighted, forget, original_dataset=digits["train"])
    distilled = UnlearningArguments(output_dir=str(tmp_path), report_to="none", method_kwargs={"pgu_retain_distill": 1})
    with pytest.raises(ValueError, match="pgu_retain_distill was set, but there is no retain set"):
        UnlearningTrainer(copy.deepcopy(original), distilled, forget, original_dataset=digits["train"])


def test_the_methods_command_says_which_methods_grow_a_stalled_step():
    from hf_unlearn.scripts.methods import describe

    assert "grows a stalled sample removal's step (--step_growth, unless set): x2" in describe("pgu")
    assert "x2" in describe("pgu_retain").splitlines()[3]  # inherited from PGU
    assert "no (step_growth=1)" in describe("gradient_ascent")
