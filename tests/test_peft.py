"""PGU through PEFT: LoRA A rows stay orthogonal to the protected space, so B·A·x = 0 for kept x."""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from hf_unlearn import CoreGradientSpace, UnlearningArguments, UnlearningTrainer
from hf_unlearn.data.forget import indices_of_classes, split_forget_retain


def _lora_run(base_and_data, tmp_path, projected: bool):
    base, train, validation = base_and_data
    base = copy.deepcopy(base)
    space = CoreGradientSpace.from_model(base, train, gamma=0.9, show_progress=False)  # from the base model
    original = {n: p.detach().clone() for n, p in base.named_parameters()}
    lora = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, lora_dropout=0.0,
                                           target_modules=["query", "value", "dense"]))
    forget, retain = split_forget_retain(train, indices_of_classes(train, [2]))
    trainer = UnlearningTrainer(
        # gradient ascent with PGU's projection (AdamW): its gradients do not saturate, so A really moves
        model=lora, args=UnlearningArguments(output_dir=str(tmp_path), disable_tqdm=True, logging_strategy="no",
                                             seed=0, gamma=0.9, method="ga_projected", num_train_epochs=3,
                                             stop_rule="none"),
        forget_dataset=forget, retain_dataset=retain, eval_dataset=validation, core_gradient_space=space,
    )
    trainer.prepare_unlearning()
    lora_b = {n: p.detach().clone() for n, p in lora.named_parameters() if "lora_B" in n}
    if not projected:
        trainer.protection.projection = None  # negative control: same run, updates not projected after the first
    trainer.train()
    return trainer, lora, original, lora_b


def _a_leak(trainer, weights):
    """max over LoRA A matrices of ‖A·M‖ / ‖A‖ (M: the layer's protected basis)."""
    leaks = []
    for key, weight in weights.items():
        if "#lora_A." in key:
            basis = trainer.core_gradient_space.basis(key.split("#")[0]).double()
            leaks.append(((weight.detach().double() @ basis).norm() / weight.norm()).item())
    return max(leaks), len(leaks)


def test_lora_a_rows_stay_orthogonal_to_the_space_and_only_adapters_move(base_and_data, tmp_path):
    trainer, lora, original, lora_b = _lora_run(base_and_data, tmp_path / "projected", projected=True)
    leak, count = _a_leak(trainer, trainer.projection.weights)
    assert count == 11  # query, value, 3 dense per layer × 2 layers, and the pooler's dense
    assert leak <= 1e-6
    assert any(not torch.equal(p, lora_b[n]) for n, p in lora.named_parameters() if "lora_B" in n)
    for name, param in lora.named_parameters():
        if param.requires_grad:
            assert any(part in name for part in ("lora_A", "lora_B", "modules_to_save")), name
        if name.endswith("base_layer.weight"):  # the base model never moves
            original_name = name.removeprefix("base_model.model.").replace(".base_layer", "")
            assert torch.equal(param, original[original_name]), name


def test_without_the_projection_lora_a_leaks_into_the_space(base_and_data, tmp_path):
    controlled, *_ = _lora_run(base_and_data, tmp_path / "projected", projected=True)
    weights = controlled.projection.weights  # the A matrices of the projected run, for their names
    trainer, lora, *_ = _lora_run(base_and_data, tmp_path / "plain", projected=False)
    params = dict(lora.named_parameters())
    plain = {key: params["base_model.model." + key.split("#")[0] + ".lora_A.default.weight"]
             for key in weights if "#lora_A." in key}
    leak, _ = _a_leak(controlled, plain)
    assert leak > 1e-3  # SGD steps on A re-enter the protected directions when nobody projects them


def test_the_space_of_a_lora_run_serves_the_same_adapter_and_the_merged_model(base_and_data, tmp_path):
    trainer, lora, *_ = _lora_run(base_and_data, tmp_path / "run", projected=True)
    assert trainer.outcome.unlearned
    trainer.save_model()
    saved = tmp_path / "run" / "core_gradient_space"
    space = CoreGradientSpace.from_pretrained(saved)
    space.check_model(lora, modules=trainer.protection.peft.stats_modules)  # the same adapter: accepted
    merged = copy.deepcopy(lora).merge_and_unload()
    assert any(not torch.equal(p, q) for p, q in zip(merged.parameters(), base_and_data[0].parameters()))
    CoreGradientSpace.from_pretrained(saved, merged)  # the merged model: accepted
    with pytest.raises(Exception, match="not the one this cache was built"):
        CoreGradientSpace.from_pretrained(saved, base_and_data[0])  # the model before the request: refused
    # a follow-up request on the merged model adds to the same ledger
    _, train, validation = base_and_data
    forget, retain = split_forget_retain(train, indices_of_classes(train, [1])[:6])
    follow = UnlearningTrainer(
        model=merged, args=UnlearningArguments(output_dir=str(tmp_path / "next"), disable_tqdm=True, seed=0,
                                               logging_strategy="no", method="pgu", max_steps=2, stop_rule="none"),
        forget_dataset=forget, retain_dataset=retain, eval_dataset=validation,
        core_gradient_space=CoreGradientSpace.from_pretrained(saved, merged),
    )
    follow.train()
    assert follow.outcome.unlearned and len(follow.core_gradient_space.ledger) == 2


def test_an_adapter_that_is_not_lora_is_refused_by_name(base_and_data):
    from peft import PromptTuningConfig

    from hf_unlearn.core import CGSMismatchError
    from hf_unlearn.core.fingerprint import model_fingerprint

    base, train, _ = base_and_data
    prompt = get_peft_model(copy.deepcopy(base), PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=2))
    with pytest.raises(CGSMismatchError, match=r"Only LoRA adapters.*PROMPT_TUNING"):
        model_fingerprint(prompt, ["bert.pooler.dense"])


def test_only_the_layers_a_lora_run_moves_are_decomposed(base_and_data, tmp_path):
    """LoRA on query and value: the frozen layers (key, attention output, intermediate, output) need no projector,
    so their Grams are never decomposed; the moving ones get the projectors a full decomposition gives."""
    base, train, validation = base_and_data
    base = copy.deepcopy(base)
    space = CoreGradientSpace.from_model(base, train, gamma=0.9, show_progress=False)
    lora = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, lora_dropout=0.0,
                                           target_modules=["query", "value"]))
    forget, retain = split_forget_retain(train, indices_of_classes(train, [2]))
    trainer = UnlearningTrainer(
        model=lora, args=UnlearningArguments(output_dir=str(tmp_path), disable_tqdm=True, logging_strategy="no",
                                             seed=0, gamma=0.9, method="ga_projected", stop_rule="none"),
        forget_dataset=forget, retain_dataset=retain, eval_dataset=validation, core_gradient_space=space,
    )
    trainer.prepare_unlearning()
    moving = {key.split("#")[0] for key in trainer.projection.weights}
    assert moving and all(n.endswith((".query", ".value")) or n.startswith("classifier") for n in moving)
    used = trainer.core_gradient_space
    assert set(used._values) == moving  # nothing else was decomposed
    full = copy.deepcopy(used)
    full.clear_decompositions()
    everything = full.projectors()
    assert len(everything) > len(moving)
    for key, projector in trainer.projection.projectors.items():
        assert torch.equal(projector.basis, everything[key.split("#")[0]].basis.to(projector.basis))
