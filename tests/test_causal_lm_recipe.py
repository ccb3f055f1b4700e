"""Causal LMs through the recipe, the invented-people data, LM fine-tuning, and GGUF-loaded weights."""

import copy
import json

import pytest
import torch
from lm_fixtures import fit, tiny_gpt2, word_tokenizer
from peft import LoraConfig
from transformers.trainer_utils import validate_quantization_for_training

from hf_unlearn.data.causal_lm import CausalLMCollator, tokenize_for_causal_lm
from hf_unlearn.data.fictitious_facts import fictitious_facts, load_fictitious_facts_dataset
from hf_unlearn.exact import TrainingRecipe, fine_tune_causal_lm
from hf_unlearn.models.causal_lm import drop_dequantised_marker
from hf_unlearn.scripts.unlearn import main


@pytest.fixture(scope="module")
def saved_lm(tmp_path_factory):
    """A tiny GPT-2 and its tokenizer that know the embedded dataset's training people, saved to a folder."""
    torch.set_num_threads(1)
    splits = load_fictitious_facts_dataset(test_size=0.2, validation_size=0.1, seed=0)
    everything = fictitious_facts(40, seed=0)
    tokenizer = word_tokenizer(list(everything["question"]) + list(everything["answer"]))
    model = fit(tiny_gpt2(len(tokenizer)), splits["train"], tokenizer, epochs=50)
    folder = tmp_path_factory.mktemp("lm") / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_invented_people_are_reproducible_and_split_by_person():
    first, again = fictitious_facts(12, seed=3), fictitious_facts(12, seed=3)
    assert first.to_list() == again.to_list() and len(first) == 60
    assert len(set(first["question"])) == 60  # every question names its person
    assert all(row["fact"] in row["answer"] for row in first)
    splits = load_fictitious_facts_dataset(test_size=0.2, validation_size=0.1, seed=0)
    people = {name: set(split["person"]) for name, split in splits.items()}
    assert [len(people[n]) for n in ("train", "validation", "test")] == [28, 4, 8]
    assert not people["train"] & people["validation"] and not people["train"] & people["test"]


def test_the_recipe_forgets_people_from_a_causal_lm(saved_lm, tmp_path):
    out = tmp_path / "run"
    metrics = main(["--model_name_or_path", str(saved_lm), "--dataset_name", "fictitious_facts",
                    "--forget_filter", "person < 2", "--output_dir", str(out), "--disable_tqdm", "true",
                    "--logging_strategy", "no"])
    assert metrics["eval_forget_accuracy"] <= metrics["eval_test_accuracy"] + 5.0  # like people never shown
    assert "eval_retain_perplexity" in metrics and metrics["eval_retain_accuracy"] >= 95.0
    saved = json.loads((out / "core_gradient_space" / "cgs_config.json").read_text())
    assert [r["num_examples"] for r in saved["ledger"]] == [10]  # five answers about each of two people
    card = (out / "README.md").read_text()
    assert "next-token accuracy" in card and "`pgu_retain`" in card
    with pytest.raises(ValueError, match="compare_with_retrain is for classifiers"):
        main(["--model_name_or_path", str(saved_lm), "--dataset_name", "fictitious_facts", "--forget_filter",
              "person < 2", "--output_dir", str(tmp_path / "no"), "--compare_with_retrain", "true"])


def test_lm_fine_tuning_with_lora_returns_a_plain_model_and_leaves_the_base_alone(tmp_path):
    torch.set_num_threads(1)
    facts = fictitious_facts(4, seed=0)
    tokenizer = word_tokenizer(list(facts["question"]) + list(facts["answer"]))
    base = tiny_gpt2(len(tokenizer))
    before = copy.deepcopy(base.state_dict())
    recipe = TrainingRecipe(num_train_epochs=30, per_device_train_batch_size=8, learning_rate=3e-2)
    lora = LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["c_attn", "c_fc"])
    tuned, seconds = fine_tune_causal_lm(base, facts, tokenizer, recipe, str(tmp_path), lora_config=lora)
    assert type(tuned).__name__ == "GPT2LMHeadModel" and seconds > 0
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in before.items())
    batch = CausalLMCollator.for_tokenizer(tokenizer)(list(tokenize_for_causal_lm(facts, tokenizer)))
    base.eval()
    with torch.no_grad():  # from chance (log 59 = 4.08 nats) down: the adapter learned and was merged in
        assert tuned(**batch).loss < base(**batch).loss - 0.5


class _GGUFQuantizer:
    """What transformers attaches to a model loaded from a GGUF file (a method that cannot train)."""

    is_trainable = False
    is_qat_trainable = False

    class quantization_config:  # noqa: N801  (mirrors the attribute transformers reads)
        quant_method = "gguf"


def test_the_gguf_loader_is_exported_for_a_plain_trainer():
    import hf_unlearn
    from hf_unlearn.models import causal_lm

    assert hf_unlearn.load_causal_lm is causal_lm.load_causal_lm and "load_causal_lm" in hf_unlearn.__all__


def test_dequantised_gguf_weights_train_once_the_marker_is_dropped():
    model = tiny_gpt2(20)
    model.hf_quantizer, model.is_quantized = _GGUFQuantizer(), True
    model.config.quantization_config = {"quant_method": "gguf"}
    with pytest.raises(ValueError, match="quantized"):
        validate_quantization_for_training(model)  # what Trainer(...) runs first
    drop_dequantised_marker(model)
    validate_quantization_for_training(model)
    assert getattr(model.config, "quantization_config", None) is None
    model.transformer.wte.weight = torch.nn.Parameter(torch.zeros(20, 64, dtype=torch.int8), requires_grad=False)
    with pytest.raises(ValueError, match="still quantized"):
        drop_dequantised_marker(model)
