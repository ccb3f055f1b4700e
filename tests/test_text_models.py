"""PGU on text classifiers: BERT-style Linear layers (B, T, d) and GPT-2's transposed Conv1D."""

import pytest
import torch
from datasets import Dataset
from text_fixtures import fit_token_classifier, marker_token_data, tiny_bert_config
from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2ForSequenceClassification

from hf_unlearn import UnlearningArguments, UnlearningTrainer
from hf_unlearn.data.forget import indices_of_classes, split_forget_retain
from hf_unlearn.evaluation import accuracy


@pytest.mark.parametrize("family, free_head_row", [("bert", True), ("gpt2", True), ("bert", False)])
def test_pgu_forgets_a_class_of_a_text_classifier_and_keeps_updates_out_of_the_space(family, free_head_row, tmp_path):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    if family == "bert":
        model = BertForSequenceClassification(tiny_bert_config())
    else:
        config = GPT2Config(vocab_size=60, n_embd=32, n_layer=2, n_head=2, n_positions=16, num_labels=3,
                            pad_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        model = GPT2ForSequenceClassification(config)
    train, validation = marker_token_data(), marker_token_data(n=90, seed=1)
    fit_token_classifier(model, train)
    assert accuracy(model, validation) > 90
    forget, retain = split_forget_retain(train, indices_of_classes(train, [2]))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = UnlearningTrainer(
        model=model, args=UnlearningArguments(output_dir=str(tmp_path), disable_tqdm=True, logging_strategy="no",
                                              seed=0, gamma=0.9, utility_tolerance=5.0,  # PGU's 5-point rule
                                              unproject_forgotten_outputs=free_head_row),
        forget_dataset=forget, retain_dataset=retain, eval_dataset=validation, original_dataset=train,
    )
    trainer.train()
    assert trainer.outcome.unlearned
    space = trainer.core_gradient_space
    kinds = {info.kind for info in space.layers.values()}
    assert kinds == ({"linear"} if family == "bert" else {"transposed_linear", "linear"})
    assert round(trainer.unlearning_metrics()["eval_forget_accuracy"], 4) <= 5.0  # 4 of 80 is 5.0000001 in float32
    assert trainer.unlearning_metrics()["eval_test_accuracy_kept_classes"] >= 90.0
    head = "classifier" if family == "bert" else "score"
    for name, info in space.layers.items():
        delta = (model.get_submodule(name).weight.detach() - before[f"{name}.weight"]).double()
        rows = delta.T if info.kind == "transposed_linear" else delta  # Conv1D stores (in, out)
        if name == head and free_head_row:  # the forgotten class's logit row moves freely, the rest is projected
            assert (rows[2] @ space.basis(name)).norm() > 1e-3 * rows[2].norm() > 0
            rows = rows[[0, 1]]
        leak = (rows @ space.basis(name)).norm()
        rounding = 4 * trainer.state.global_step**0.5 * 2**-24 * model.get_submodule(name).weight.norm()
        assert leak <= 1e-6 * delta.norm() + rounding, name
    table = "bert.embeddings.word_embeddings.weight" if family == "bert" else "transformer.wte.weight"
    kept_tokens = sorted({int(t) for ids in retain["input_ids"] for t in ids})
    after = dict(model.named_parameters())
    # the token table: every row a kept example reads stays bit for bit; only class 2's marker (12) may move
    assert torch.equal(after[table][kept_tokens], before[table][kept_tokens])
    moved = (after[table] != before[table]).any(dim=1).nonzero().flatten().tolist()
    assert set(moved) <= {12} and 12 not in kept_tokens
    embeddings = [n for n in before if ("embed" in n or n.startswith("transformer.w")) and n != table]
    for name in embeddings:  # positions, token types, their norms: not protectable by the space, frozen
        assert torch.equal(after[name], before[name]), name


def test_space_from_a_tokenised_dataset_with_its_raw_text_column_and_a_tokenizer(tmp_path):
    """Variable-length rows and a leftover text column: the tokenizer pads, only model inputs reach the model."""
    from text_fixtures import save_text_model, write_messages
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    from hf_unlearn import CoreGradientSpace

    torch.set_num_threads(1)
    messages = write_messages(tmp_path / "messages.csv", n=40)
    folder = save_text_model(tmp_path / "model", messages, epochs=1)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    raw = Dataset.from_csv(str(messages)).rename_column("label", "labels")
    raw = raw.map(lambda row, i: {"text": row["text"] + " now" * (i % 4)}, with_indices=True)  # ragged lengths
    tokenised = raw.map(lambda batch: tokenizer(batch["text"]), batched=True)
    space = CoreGradientSpace.from_model(model, tokenised, processing_class=tokenizer, show_progress=False)
    assert "text" in space.fingerprint_columns  # examples are identified by their text too
    inputs = tokenised.remove_columns(["text"])
    direct = CoreGradientSpace.from_model(model, inputs, collate_fn=DataCollatorWithPadding(tokenizer),
                                          show_progress=False)
    for name, gram in direct.grams.items():
        torch.testing.assert_close(space.grams[name], gram, rtol=1e-10, atol=1e-10)


def test_training_rows_tokenised_otherwise_are_refused_with_the_rows_and_the_likely_cause():
    from hf_unlearn.core import CoreGradientSpace, LedgerError, fingerprint_examples

    data = marker_token_data(n=30)
    config = BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=3)
    space = CoreGradientSpace.from_model(BertForSequenceClassification(config), data, show_progress=False)
    rows = data.select([0, 1, 2]).with_format(None).to_list()
    rows[1]["input_ids"], rows[1]["attention_mask"] = rows[1]["input_ids"][:8], rows[1]["attention_mask"][:8]
    request = fingerprint_examples(Dataset.from_list(rows).with_format("torch"), space.fingerprint_columns)
    with pytest.raises(LedgerError, match=r"1 of 3 forget examples \(forget rows 1\) .*max_length"):
        space.check_request(request)
