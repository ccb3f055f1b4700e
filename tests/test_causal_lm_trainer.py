"""UnlearningTrainer on causal LMs: token-level losses, texts in, invented people forgotten, LoRA merged."""

import copy

import pytest
import torch
from datasets import Dataset
from lm_fixtures import FORGET_PEOPLE, TRAINED_PEOPLE, facts_and_tokenizer, fit, tiny_gpt2
from peft import LoraConfig, get_peft_model
from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM

from hf_unlearn import UnlearningArguments, UnlearningTrainer
from hf_unlearn.data.causal_lm import (
    IGNORE_INDEX,
    CausalLMCollator,
    causal_lm_space,
    is_causal_lm,
    tokenize_example,
    tokenize_for_causal_lm,
)
from hf_unlearn.evaluation.predict import collect_token_outcomes
from hf_unlearn.methods.base import cross_entropy, sequence_log_probs
from hf_unlearn.sequential import SequentialUnlearning


@pytest.fixture(scope="module")
def people():
    """A tiny GPT-2 that answers every question about 20 invented people; 4 more are held out."""
    torch.set_num_threads(1)
    facts, tokenizer = facts_and_tokenizer()
    trained = facts.filter(lambda r: r["person"] < TRAINED_PEOPLE)
    model = fit(tiny_gpt2(len(tokenizer)), trained, tokenizer)
    return {
        "model": model,
        "tokenizer": tokenizer,
        "train": trained,
        "forget": trained.filter(lambda r: r["person"] < FORGET_PEOPLE),
        "retain": trained.filter(lambda r: r["person"] >= FORGET_PEOPLE),
        "held_out": facts.filter(lambda r: r["person"] >= TRAINED_PEOPLE),
    }


def _args(tmp_path, **overrides):
    values = {"output_dir": str(tmp_path), "disable_tqdm": True, "logging_strategy": "no", "seed": 0, **overrides}
    return UnlearningArguments(**values)


def _trainer(people, tmp_path, model=None, **overrides):
    return UnlearningTrainer(
        model if model is not None else copy.deepcopy(people["model"]),
        _args(tmp_path, **overrides),
        forget_dataset=people["forget"],
        retain_dataset=people["retain"],
        eval_dataset=people["held_out"],
        original_dataset=people["train"],
        processing_class=people["tokenizer"],
    )


# ------------------------------------------------------------------ data and losses
def test_a_prompt_is_context_not_target_and_the_answer_ends_with_eos():
    _, tokenizer = facts_and_tokenizer()
    row = tokenize_example(tokenizer, "Mi works as a baker .", "What does Mi do ?")
    prompt = tokenizer("What does Mi do ?")["input_ids"]
    assert row["input_ids"][: len(prompt)] == prompt
    assert row["labels"][: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    assert row["labels"][len(prompt) :] == row["input_ids"][len(prompt) :]
    assert row["input_ids"][-1] == tokenizer.eos_token_id
    assert tokenize_example(tokenizer, "Mi works .", "Who ?", mask_prompt=False)["labels"][0] != IGNORE_INDEX
    with pytest.raises(ValueError, match="max_length"):  # the cut leaves nothing but prompt
        tokenize_example(tokenizer, "Mi works as a baker .", "What does Mi do ?", max_length=4)


def test_the_collator_never_makes_padding_a_target_even_when_pad_is_eos():
    collate = CausalLMCollator(pad_token_id=2)  # GPT-2 style: padding with the eos id
    batch = collate([{"input_ids": [5, 6, 2], "labels": [-100, 6, 2]}, {"input_ids": [7, 2], "labels": [7, 2]}])
    assert batch["input_ids"].tolist() == [[5, 6, 2], [7, 2, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 2], [7, 2, -100]]  # the real eos stays a target


def test_causal_lms_are_recognised_with_and_without_peft():
    gpt2 = tiny_gpt2(30)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=30, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    bert = BertForSequenceClassification(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
                                                    num_attention_heads=2, intermediate_size=32))
    lora = get_peft_model(copy.deepcopy(gpt2), LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["c_attn"]))
    assert [is_causal_lm(m) for m in (gpt2, llama, lora, bert)] == [True, True, True, False]


def _batch(people, rows=5):
    tokenized = tokenize_for_causal_lm(people["forget"].select(range(rows)), people["tokenizer"])
    return CausalLMCollator.for_tokenizer(people["tokenizer"])(list(tokenized))


def test_the_token_loss_every_method_uses_is_the_models_own_loss(people):
    model, batch = people["model"], _batch(people)
    with torch.no_grad():
        assert torch.allclose(cross_entropy(model, batch), model(**batch).loss, atol=1e-6)


def test_sequence_log_probability_sums_each_texts_answer_tokens(people):
    model, batch = people["model"], _batch(people)
    with torch.no_grad():
        summed = sequence_log_probs(model, batch)
        for i in range(len(batch["input_ids"])):
            real = batch["attention_mask"][i].bool()
            ids, labels = batch["input_ids"][i][real][None], batch["labels"][i][real]
            log_probs = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
            targets = labels[1:] != IGNORE_INDEX
            direct = log_probs[targets].gather(1, labels[1:][targets][:, None]).sum()
            assert torch.allclose(summed[i], direct, atol=1e-5)


def test_token_outcomes_come_back_in_dataset_order_and_skip_untargeted_tokens(people):
    rows = tokenize_for_causal_lm(people["retain"].select(range(12)), people["tokenizer"])
    collate = CausalLMCollator.for_tokenizer(people["tokenizer"])
    together = collect_token_outcomes(people["model"], rows, collate_fn=collate, batch_size=5)
    alone = [collect_token_outcomes(people["model"], rows.select([i]), collate_fn=collate) for i in range(12)]
    assert torch.allclose(together["loss"], torch.cat([a["loss"] for a in alone]), atol=1e-5)
    assert together["example"].tolist() == [i for i, a in enumerate(alone) for _ in a["loss"]]
    targets = sum(sum(label != IGNORE_INDEX for label in labels[1:]) for labels in rows["labels"])
    assert len(together["correct"]) == targets


# ------------------------------------------------------------------ the trainer
def test_pgu_with_defaults_makes_the_model_forget_invented_people_and_keeps_the_rest(people, tmp_path):
    trainer = _trainer(people, tmp_path)
    before = trainer.evaluate()
    assert before["eval_forget_accuracy"] == 100.0 and before["eval_retain_accuracy"] >= 99.0  # memorised
    output = trainer.train()
    after = trainer.evaluate()
    assert output.metrics["unlearned"], output.metrics["unlearning_outcome"]
    # the answers about the forgotten people look like answers about people never shown (templates only)
    assert after["eval_forget_accuracy"] <= before["eval_test_accuracy"] + 5.0
    assert after["eval_retain_accuracy"] >= before["eval_retain_accuracy"] - 3.0
    assert after["eval_retain_perplexity"] <= 1.1 * before["eval_retain_perplexity"] + 0.1
    assert after["eval_forget_perplexity"] > 3 * before["eval_forget_perplexity"]
    ledger = trainer.core_gradient_space.ledger
    assert len(ledger) == 1 and ledger[0]["num_examples"] == len(people["forget"])
    trainer.save_model()
    card = (tmp_path / "README.md").read_text()
    assert "next-token accuracy on the texts' target tokens" in card and "forget 100.0 → " in card


@pytest.mark.parametrize(
    ("method", "learning_rate"),
    [("gradient_ascent", 1e-3), ("ga_projected", 1e-2), ("neggrad_plus", 3e-2), ("npo", 1e-3), ("eupmu", 1e-2),
     ("eupmu_explicit", 1e-2), ("random_labels", 3e-3), ("simnpo", 1e-2), ("rmu", 3e-3), ("pgu_retain", None)],
)
def test_every_token_level_method_raises_the_forget_loss(people, tmp_path, method, learning_rate):
    extra = {"learning_rate": learning_rate} if learning_rate else {}
    # PGU's default step (SGD 0.25) is small against a saturated forget loss: it gets twice the steps
    steps = 4 if learning_rate else 8
    trainer = _trainer(people, tmp_path, method=method, max_steps=steps, stop_rule="none", **extra)
    batch = _batch(people, rows=len(people["forget"]))
    with torch.no_grad():
        before = trainer.model(**batch).loss.item()
    trainer.train()
    with torch.no_grad():
        after = trainer.model(**batch).loss.item()
    assert after > before + 0.05, (method, before, after)


def test_what_a_causal_lm_cannot_do_is_refused_before_any_weight_moves(people, tmp_path):
    model = copy.deepcopy(people["model"])
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="does not unlearn causal language models"):
        _trainer(people, tmp_path, model=model, method="scrub")
    with pytest.raises(ValueError, match="no classes"):
        _trainer(people, tmp_path, model=model, scenario="class")
    with pytest.raises(ValueError, match="processing_class"):
        UnlearningTrainer(model, _args(tmp_path), forget_dataset=people["forget"], original_dataset=people["train"])
    with pytest.raises(ValueError, match="'text' column"):
        UnlearningTrainer(model, _args(tmp_path), forget_dataset=Dataset.from_dict({"body": ["a b"]}),
                          processing_class=people["tokenizer"], core_gradient_space=None,
                          original_dataset=Dataset.from_dict({"body": ["a b", "c d"]}))
    with pytest.raises(ValueError, match="Sequential requests are built for classifiers"):
        SequentialUnlearning(model, _args(tmp_path), people["train"], processing_class=people["tokenizer"])
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_a_lora_causal_lm_unlearns_and_merges_into_the_same_model(people, tmp_path):
    torch.manual_seed(0)  # LoRA's A is drawn from the global generator: the run must not depend on earlier tests
    lora = get_peft_model(copy.deepcopy(people["model"]),
                          LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.0,
                                     target_modules=["c_attn", "c_proj", "c_fc"]))
    trainer = _trainer(people, tmp_path, model=lora, method="ga_projected", learning_rate=1e-2, max_steps=12,
                       stop_rule="none")
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    assert after["eval_forget_accuracy"] < before["eval_forget_accuracy"] - 20
    # the guard's promise: at most the tolerance, or three of the sample's tokens when that is more
    allowed = max(3.0, 300.0 / trainer.outcome.final["retain_accuracy_count"])
    assert after["eval_retain_accuracy"] >= before["eval_retain_accuracy"] - allowed
    batch = _batch(people)
    lora.eval()  # GPT-2's dropout: the comparison is of two deterministic passes
    with torch.no_grad():
        adapted = lora(**batch).logits
        merged = lora.merge_and_unload()
        assert type(merged).__name__ == "GPT2LMHeadModel"
        assert torch.allclose(merged(**batch).logits, adapted, atol=1e-4)


def test_a_space_built_from_raw_texts_serves_requests_of_raw_rows(people, tmp_path):
    space = causal_lm_space(people["model"], people["train"], people["tokenizer"], show_progress=False)
    assert space.fingerprint_columns == people["train"].column_names  # the rows as given, not the token ids
    assert len(space.train_fingerprints) == len(people["train"])
    trainer = UnlearningTrainer(copy.deepcopy(people["model"]), _args(tmp_path, max_steps=1, stop_rule="none"),
                                forget_dataset=people["forget"], retain_dataset=people["retain"],
                                core_gradient_space=space, processing_class=people["tokenizer"])
    trainer.train()
    assert trainer.core_gradient_space.ledger[-1]["num_examples"] == len(people["forget"])
    stranger = people["held_out"].select(range(2))  # never trained on: refused before any weight moves
    with pytest.raises(ValueError, match="not in the training data|not.*train"):
        UnlearningTrainer(copy.deepcopy(people["model"]), _args(tmp_path / "b", method="pgu"), forget_dataset=stranger,
                          core_gradient_space=space, processing_class=people["tokenizer"]).train()


def test_the_end_of_run_look_of_a_causal_lm_reads_only_what_the_checks_did_not_and_gets_the_same_numbers(
    people, tmp_path
):
    """Token accuracies combine by target tokens: the check samples' known readings plus the other rows equal a
    whole read of the retain and validation sets, which read only the rows the checks did not."""
    model = copy.deepcopy(people["model"])
    trainer = _trainer(people, tmp_path, model=model, control_samples=8, eval_retain_samples=16)
    torch.manual_seed(0)
    with torch.no_grad():  # a worse model: some tokens wrong on every set
        for param in model.parameters():
            param.add_(torch.randn_like(param) * param.std() * 0.3)
    known = trainer.control_metrics()
    assert known["retain_accuracy_units"] > known["retain_accuracy_count"] == 16  # tokens, not texts
    read = []
    correct = trainer._correct
    trainer._correct = lambda dataset: read.append(len(dataset)) or correct(dataset)
    shared = trainer.full_utility(known=known)
    assert read == [len(trainer.eval_dataset) - 8, len(trainer.retain_dataset) - 16]
    whole = trainer.full_utility()
    assert 0.0 < whole["retain accuracy"] < 100.0 and 0.0 < whole["validation accuracy"] < 100.0
    for name, value in whole.items():
        assert shared[name] == pytest.approx(value, abs=1e-4)
