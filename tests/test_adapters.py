"""A classifier saved as a LoRA adapter folder: merged into its base, unlearned as the full model it stands for."""

import csv
import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

import hf_unlearn.models.adapters as adapters
from hf_unlearn.models.adapters import is_adapter_folder, load_merged_adapter, processor_path


def _adapter(tmp_path, num_labels: int = 2):
    """A weak base (one epoch) that a LoRA adapter with its own classifier head taught the task."""
    from text_fixtures import save_text_model, write_messages

    messages = write_messages(tmp_path / "train.csv")
    base = save_text_model(tmp_path / "base", messages, epochs=1)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=num_labels,
                                                               ignore_mismatched_sizes=True)
    lora = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"]))
    tokenizer = AutoTokenizer.from_pretrained(base)
    rows = list(csv.DictReader(open(messages)))
    batch = tokenizer([r["text"] for r in rows], padding=True, return_tensors="pt")
    labels = torch.tensor([int(r["label"]) for r in rows])
    optimizer = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-2)
    torch.manual_seed(0)
    for _ in range(20):
        loss = lora(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    lora.save_pretrained(tmp_path / "adapter")
    tokenizer.save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter", base, messages, batch


def test_the_merged_model_predicts_what_base_plus_adapter_predicts_and_trains_every_weight(tmp_path):
    folder, base, _, batch = _adapter(tmp_path, num_labels=3)  # a head the base's config does not have
    assert is_adapter_folder(folder) and not is_adapter_folder(base)
    merged = load_merged_adapter(folder, AutoModelForSequenceClassification)
    assert merged.config.num_labels == 3 and not [n for n, _ in merged.named_parameters() if "lora" in n]
    assert all(p.requires_grad for p in merged.parameters())  # PEFT loads for inference, everything frozen
    reference = PeftModel.from_pretrained(
        AutoModelForSequenceClassification.from_pretrained(base, num_labels=3, ignore_mismatched_sizes=True), folder
    ).eval()
    inputs = {k: batch[k][:8] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        torch.testing.assert_close(merged.eval()(**inputs).logits, reference(**inputs).logits, rtol=1e-5, atol=1e-5)
    assert merged.merged_adapter_base == str(base) and processor_path(folder) == str(folder)


def test_an_adapter_folder_without_peft_installed_says_what_to_install(tmp_path, monkeypatch):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "some/base"}))
    monkeypatch.setattr(adapters.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="PEFT adapter folder; loading it needs peft: pip install peft"):
        load_merged_adapter(tmp_path, AutoModelForSequenceClassification)


def test_the_recipe_unlearns_an_adapter_folder_and_saves_the_merged_model(tmp_path):
    from text_fixtures import write_messages

    import recipes.unlearn as recipe
    from hf_unlearn.cli import main as cli

    folder, _, messages, _ = _adapter(tmp_path)
    validation = write_messages(tmp_path / "validation.csv", n=60, seed=1)
    common = ["--model_name_or_path", str(folder), "--data_files", str(messages), "--text_column", "text",
              "--label_column", "label"]
    cli(["cgs", "build", *common])  # the space of the merged model, saved in the adapter folder
    out = tmp_path / "run"
    recipe.main([*common, "--validation_file", str(validation), "--forget_filter", 'text contains "prize"',
                 "--output_dir", str(out), "--disable_tqdm", "true", "--logging_strategy", "no"])
    saved = AutoModelForSequenceClassification.from_pretrained(out)  # a full model now, no adapter
    assert not [n for n, _ in saved.named_parameters() if "lora" in n] and (out / "model.safetensors").is_file()
    ledger = json.loads((out / "core_gradient_space" / "cgs_config.json").read_text())["ledger"]
    wanted = sum("prize" in line for line in messages.read_text().splitlines()[1:])
    assert [entry["num_examples"] for entry in ledger] == [wanted]  # the saved space matched the merged weights
    assert "The LoRA adapter was merged into its base, a local model (base)" in (out / "README.md").read_text()


def test_an_adapter_injected_by_transformers_is_refused_with_the_way_to_merge_it(tmp_path):
    """transformers loads an adapter folder into the plain model class (LoRA layers, no PeftModel): its space could
    not describe the weights the model predicts with, so it is refused and the merge is named."""
    from datasets import Dataset

    from hf_unlearn import CoreGradientSpace
    from hf_unlearn.core import CGSMismatchError

    folder, _, _, batch = _adapter(tmp_path)
    injected = AutoModelForSequenceClassification.from_pretrained(folder)
    assert type(injected).__name__ == "BertForSequenceClassification" and hasattr(injected, "peft_config")
    data = Dataset.from_dict({"input_ids": batch["input_ids"][:16].tolist(),
                              "attention_mask": batch["attention_mask"][:16].tolist(), "labels": [0, 1] * 8})
    with pytest.raises(CGSMismatchError, match="carries adapters.*load_merged_adapter"):
        CoreGradientSpace.from_model(injected, data, show_progress=False)


def test_a_causal_lm_adapter_folder_loads_merged_with_the_tokenizer_it_saved(tmp_path):
    from lm_fixtures import facts_and_tokenizer, tiny_gpt2

    from hf_unlearn.models.causal_lm import load_causal_lm

    _, tokenizer = facts_and_tokenizer()
    config = LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["c_attn"], init_lora_weights=False)
    built = tiny_gpt2(len(tokenizer))
    built.save_pretrained(tmp_path / "base")
    get_peft_model(built, config).save_pretrained(tmp_path / "orphan")  # a model built in memory: PEFT records no base
    with pytest.raises(ValueError, match="names no base_model_name_or_path"):
        load_causal_lm(str(tmp_path / "orphan"))
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(tmp_path / "base"), config)
    lora.save_pretrained(tmp_path / "adapter")
    tokenizer.save_pretrained(tmp_path / "adapter")
    model, loaded_tokenizer = load_causal_lm(str(tmp_path / "adapter"))
    assert not [n for n, _ in model.named_parameters() if "lora" in n]
    assert all(p.requires_grad for p in model.parameters())
    assert len(loaded_tokenizer) == len(tokenizer) and model.merged_adapter_base == str(tmp_path / "base")
    ids = torch.tensor([[1, 5, 6, 7]])
    with torch.no_grad():  # init_lora_weights=False: a non-zero B, so the merge has something to add
        torch.testing.assert_close(model.eval()(ids).logits, lora.eval()(ids).logits, rtol=1e-5, atol=1e-5)
