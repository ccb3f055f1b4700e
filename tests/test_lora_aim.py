"""A fresh LoRA adapter's A is aimed at the forget set's directions outside the retain space (lora_aim.py)."""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import default_data_collator

from hf_unlearn import CoreGradientSpace, UnlearningArguments, UnlearningTrainer
from hf_unlearn.core import collect_gram_matrices
from hf_unlearn.data.forget import indices_of_classes, split_forget_retain
from hf_unlearn.protection.lora_aim import aim_fresh_adapters

LAYER = "bert.encoder.layer.0.attention.self.query"


def _prepared(base_and_data, tmp_path, *, aim=True, alpha=8):
    base, train, validation = base_and_data
    base = copy.deepcopy(base)
    space = CoreGradientSpace.from_model(base, train, gamma=0.9, show_progress=False)
    config = LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=alpha, lora_dropout=0.0, target_modules=["query", "value"])
    lora = get_peft_model(base, config)
    peft_a = lora.base_model.model.bert.encoder.layer[0].attention.self.query.lora_A["default"].weight.detach().clone()
    forget, retain = split_forget_retain(train, indices_of_classes(train, [2]))
    batch = default_data_collator([validation[i] for i in range(32)])
    with torch.no_grad():
        before = lora(**{k: v for k, v in batch.items() if k != "labels"}).logits
    trainer = UnlearningTrainer(
        model=lora, args=UnlearningArguments(output_dir=str(tmp_path), disable_tqdm=True, logging_strategy="no",
                                             seed=0, gamma=0.9, lora_aim_at_forget=aim),
        forget_dataset=forget, retain_dataset=retain, eval_dataset=validation, core_gradient_space=space,
    )
    trainer.prepare_unlearning()
    with torch.no_grad():
        after = lora(**{k: v for k, v in batch.items() if k != "labels"}).logits
    module = lora.base_model.model.bert.encoder.layer[0].attention.self.query
    return trainer, lora, module, peft_a, (before, after), forget


def _forget_gram(trainer, forget):
    base = trainer.model.get_base_model()
    modules = {LAYER: dict(base.named_modules())[LAYER].base_layer}
    stats = collect_gram_matrices(base, forget.with_format("torch"), layers=modules, show_progress=False)
    return stats.grams[LAYER]


def test_a_fresh_adapter_points_at_the_top_forget_directions_outside_the_retain_space(base_and_data, tmp_path):
    trainer, lora, module, peft_a, (before, after), forget = _prepared(base_and_data, tmp_path)
    assert torch.allclose(before, after, atol=1e-6)  # B is zero: choosing A changes no prediction
    a = module.lora_A["default"].weight.detach().double() * module.scaling["default"]
    assert not torch.allclose(a, peft_a.double())
    basis = trainer.core_gradient_space.basis(LAYER)
    assert (a @ basis).norm() <= 1e-6 * a.norm()  # outside the retain space (float32 weights)
    assert torch.allclose(a @ a.T, torch.eye(4, dtype=torch.float64), atol=1e-6)  # orthonormal rows, scaled 1/s
    # the energy of the forget inputs along A's rows is the largest any 4 directions outside the space hold
    gram = _forget_gram(trainer, forget)
    outside = torch.eye(gram.shape[0], dtype=torch.float64) - basis @ basis.T
    best = torch.linalg.eigvalsh(outside @ gram @ outside).flip(0)[:4].sum()
    assert torch.trace(a @ gram @ a.T) == pytest.approx(float(best), rel=1e-5)


def test_a_step_on_b_moves_the_layer_as_a_full_projected_step_restricted_to_a(base_and_data, tmp_path):
    """ΔW = s·ΔB·A with ΔB = −lr·∂L/∂B equals −lr·G·P (G: the full weight's gradient, P onto A's rows), whatever α."""
    trainer, lora, module, *_ = _prepared(base_and_data, tmp_path, alpha=32)  # s = 8: the 1/s scaling matters
    _, train, _ = base_and_data
    batch = default_data_collator([train[i] for i in range(16)])
    module.base_layer.weight.requires_grad_(True)
    lora.zero_grad()
    lora(**batch).loss.backward()
    s, lr = module.scaling["default"], 0.25
    a = module.lora_A["default"].weight.detach().double()
    delta_w = s * (-lr * module.lora_B["default"].weight.grad.double()) @ a
    onto_rows = torch.linalg.pinv(a) @ a  # the orthogonal projector onto A's row space, whatever A's scale
    expected = -lr * module.base_layer.weight.grad.double() @ onto_rows
    assert delta_w.norm() > 0
    assert torch.allclose(delta_w, expected, atol=1e-9, rtol=1e-4)


def test_an_opt_out_keeps_peft_a_projected(base_and_data, tmp_path):
    trainer, _, module, peft_a, _, _ = _prepared(base_and_data, tmp_path, aim=False)
    basis = trainer.core_gradient_space.basis(LAYER).float()
    projected = peft_a - (peft_a @ basis) @ basis.T
    assert torch.allclose(module.lora_A["default"].weight.detach(), projected, atol=1e-6)


def test_an_adapter_that_learned_is_not_aimed(base_and_data, tmp_path):
    trainer, lora, module, _, _, forget = _prepared(base_and_data, tmp_path)
    grams = {LAYER: _forget_gram(trainer, forget)}
    with torch.no_grad():
        module.lora_A["default"].weight.fill_(0.5)
        module.lora_B["default"].weight.fill_(0.01)  # B ≠ 0: A now shapes the predictions
    assert aim_fresh_adapters(lora, trainer.core_gradient_space, grams) == []
    assert bool((module.lora_A["default"].weight == 0.5).all())
    with torch.no_grad():
        module.lora_B["default"].weight.zero_()
    assert aim_fresh_adapters(lora, trainer.core_gradient_space, grams) == [f"{LAYER}#default"]
    assert not bool((module.lora_A["default"].weight == 0.5).any())


def test_a_peft_model_made_without_a_task_type_takes_its_base_models_inputs(base_and_data, tmp_path):
    """get_peft_model without task_type gives a PeftModel whose forward is (*args, **kwargs)."""
    base, train, validation = base_and_data
    base = copy.deepcopy(base)
    space = CoreGradientSpace.from_model(base, train, gamma=0.9, show_progress=False)
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["query", "value"], modules_to_save=["classifier"]))
    forget, retain = split_forget_retain(train, indices_of_classes(train, [2]))
    trainer = UnlearningTrainer(
        model=lora, args=UnlearningArguments(output_dir=str(tmp_path), disable_tqdm=True, logging_strategy="no",
                                             seed=0, gamma=0.9, max_steps=3, stop_rule="none"),
        forget_dataset=forget.add_column("note", ["x"] * len(forget)), retain_dataset=retain,
        eval_dataset=validation, core_gradient_space=space,
    )
    assert set(trainer.forget_dataset.column_names) == set(train.column_names)  # the raw column pruned
    trainer.train()
    assert trainer.outcome.steps == 3


def test_class_removal_through_peft_frees_the_forgotten_rows_of_the_heads_copy(base_and_data, tmp_path):
    base, train, validation = base_and_data
    base = copy.deepcopy(base)
    space = CoreGradientSpace.from_model(base, train, gamma=0.9, show_progress=False)
    lora = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"]))
    forget, retain = split_forget_retain(train, indices_of_classes(train, [2]))
    trainer = UnlearningTrainer(
        model=lora, args=UnlearningArguments(output_dir=str(tmp_path), disable_tqdm=True, logging_strategy="no",
                                             seed=0, gamma=0.9, max_steps=4, stop_rule="none"),
        forget_dataset=forget, retain_dataset=retain, eval_dataset=validation, core_gradient_space=space,
    )
    trainer.prepare_unlearning()
    key = "classifier#modules_to_save.default"
    assert trainer.projection.free_rows[key].tolist() == [2]
    head = trainer.projection.weights[key]
    projection, steps = trainer.projection, []
    snapshot, project = projection.snapshot, projection.project

    def recording_snapshot(*args):
        gradient = head.grad[:2].double().norm().item()  # raw: SGD may take its step on the projected gradient
        snapshot(*args)
        steps.append([head.detach()[:2].double().clone(), gradient])

    def recording_project():
        before, gradient = steps[-1]
        step = trainer.optimizer.param_groups[0]["lr"] * gradient  # the optimizer's raw step (plain SGD)
        steps[-1] = [before, max(step, (head.detach()[:2].double() - before).norm().item())]
        project()
        steps[-1].append(head.detach()[:2].double().norm().item())

    projection.snapshot, projection.project = recording_snapshot, recording_project
    before = head.detach().clone().double()
    trainer.train()
    moved = head.detach().double() - before
    basis = trainer.core_gradient_space.basis("classifier")
    assert (moved[2] @ basis).norm() > 1e-3 * moved[2].norm() > 0  # the forgotten row: raw updates
    # Kept rows: projected in float32. What float32 guarantees whatever the BLAS: each step stores the
    # new weights rounded (at most u = 2⁻²⁴ of their norm, which can land in the space), and projects
    # the raw step δ with two products of inner sizes d and k against a float32 copy of the basis
    # (at most about (d + 2k + 4)·k·u·‖δ‖). The summed bound, not one machine's round-off.
    unit, (dim, rank) = 2.0**-24, basis.shape
    bound = sum(unit * (stored + (dim + 2 * rank + 4) * rank * raw) for _, raw, stored in steps)
    assert len(steps) == 4 and moved[:2].norm() > 1e3 * bound
    assert (moved[:2] @ basis).norm() <= bound
    assert "of `classifier` (its PEFT copy) were left unprojected" in trainer._projection_summary()


def test_the_recipe_unlearns_a_class_through_a_fresh_adapter_with_the_space_of_the_model_folder(tmp_path):
    import json

    from text_fixtures import save_text_model, write_messages

    import recipes.unlearn as recipe
    from hf_unlearn.cli import main as cli

    train = write_messages(tmp_path / "train.csv")
    model = save_text_model(tmp_path / "model", train)
    validation = write_messages(tmp_path / "validation.csv", n=60, seed=1)
    # as the README says: the space built once into the model folder, which the recipe then uses
    cli(["cgs", "build", "--model_name_or_path", str(model), "--data_files", str(train), "--text_column", "text",
         "--label_column", "label"])
    common = ["--model_name_or_path", str(model), "--data_files", str(train), "--validation_file", str(validation),
              "--text_column", "text", "--label_column", "label", "--forget_class", "1", "--use_peft", "true",
              "--lora_r", "4", "--disable_tqdm", "true", "--logging_strategy", "no"]
    with pytest.raises(ValueError, match="--num_requests > 1 with --use_peft"):
        recipe.main([*common, "--num_requests", "2", "--output_dir", str(tmp_path / "series")])
    out = tmp_path / "run"
    metrics = recipe.main([*common, "--output_dir", str(out)])
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    card = (out / "README.md").read_text()
    assert "library_name: peft" in card and "trained into a LoRA adapter (r=4, alpha 16, on query, value)" in card
    ledger = json.loads((out / "core_gradient_space" / "cgs_config.json").read_text())["ledger"]
    assert [entry["num_examples"] for entry in ledger] == [80]  # every spam row of the 160
    assert metrics["eval_forget_accuracy"] == 0.0 and metrics["eval_test_accuracy_kept_classes"] >= 90.0


def test_a_head_saved_whole_around_the_protected_layer_is_found():
    """modules_to_save=["classifier"] on an HF ResNet wraps Sequential(Flatten, Linear): the layer is classifier.1."""
    from transformers import ResNetConfig, ResNetForImageClassification

    from hf_unlearn.protection.peft import peft_targets

    model = ResNetForImageClassification(
        ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=4)
    )
    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["convolution"], modules_to_save=["classifier"]))
    stem = "resnet.embedder.embedder.convolution"
    targets = peft_targets(lora, ["classifier.1", stem])
    head = lora.base_model.model.classifier
    assert targets.stats_modules["classifier.1"] is head.original_module[1]
    assert targets.updates["classifier.1#modules_to_save.default"][1] is head.modules_to_save["default"][1].weight
    assert f"{stem}#lora_A.default" in targets.updates


def test_the_recipes_adapter_takes_the_task_of_the_loaded_head_and_warns_of_a_frozen_image_head(caplog):
    import logging

    from lm_fixtures import tiny_gpt2
    from transformers import BertConfig, BertForSequenceClassification, ResNetConfig, ResNetForImageClassification

    from hf_unlearn.scripts.lora import LoraArguments, task_type_of, with_fresh_adapter

    bert = BertForSequenceClassification(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
                                                    num_attention_heads=2, intermediate_size=32))
    resnet = ResNetForImageClassification(ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8],
                                                       depths=[1], num_labels=3))
    resnet_again = copy.deepcopy(resnet)  # get_peft_model below wraps its model in place
    assert [task_type_of(m) for m in (tiny_gpt2(30), bert, resnet)] == ["CAUSAL_LM", "SEQ_CLS", None]
    with caplog.at_level(logging.WARNING):
        with_fresh_adapter(resnet, LoraArguments(use_peft=True, lora_target_modules=["convolution"]))
    assert "--lora_modules_to_save" in caplog.text
    with pytest.raises(ValueError, match="lora_r >= 1"):
        LoraArguments(lora_r=0)
    with pytest.raises(ValueError, match="no default LoRA targets for ResNetForImageClassification.*convolution"):
        with_fresh_adapter(resnet_again, LoraArguments(use_peft=True))  # PEFT knows no targets for it


@pytest.mark.parametrize("low_rank", [False, True])
def test_the_forget_directions_hold_the_top_forget_energy_outside_the_space_dense_or_low_rank(base_and_data, low_rank):
    from hf_unlearn.protection.lora_aim import forget_directions

    base, train, _ = base_and_data
    space = CoreGradientSpace.from_model(copy.deepcopy(base), train, gamma=0.9, show_progress=False)
    if low_rank:
        space.compress(rank=24)  # of 32: only the kept directions are stored, the complement is not
    forget = train.select(indices_of_classes(train, [2]))
    gram = collect_gram_matrices(base, forget, layers={LAYER: dict(base.named_modules())[LAYER]},
                                 show_progress=False).grams[LAYER]
    directions = forget_directions(space, LAYER, gram, 4)
    basis = space.basis(LAYER).double()
    assert directions.shape == (32, 4)
    assert torch.allclose(directions.T @ directions, torch.eye(4, dtype=torch.float64), atol=1e-6)
    assert (directions.T @ basis).norm() <= 1e-6
    outside = torch.eye(32, dtype=torch.float64) - basis @ basis.T
    best = torch.linalg.eigvalsh(outside @ gram @ outside).flip(0)[:4].sum()
    assert torch.trace(directions.T @ gram @ directions) == pytest.approx(float(best), rel=1e-6)
