"""A causal LM's forget loss weighs each answer token by how few of its nearest kept answer tokens are the same
token, and a token copied from the prompt least (methods/token_weights.py; the bank is built in
training/neighbour_target.py)."""

from __future__ import annotations

import copy

import pytest
import torch
from lm_fixtures import facts_and_tokenizer, memorised_people

from hf_unlearn import UnlearningArguments, UnlearningTrainer
from hf_unlearn.data.causal_lm import IGNORE_INDEX, CausalLMCollator, tokenize_example, tokenize_for_causal_lm
from hf_unlearn.methods.base import next_token_targets
from hf_unlearn.methods.neighbour_weights import FLOOR, RetainNeighbours
from hf_unlearn.methods.pgu import kept_token_loss, pgu_forget_loss
from hf_unlearn.methods.token_weights import (
    RetainTokenNeighbours,
    answer_token_states,
    prompt_copies,
    token_weights,
    word_copies,
)

X = IGNORE_INDEX


def test_a_target_token_is_a_copy_when_its_id_is_among_its_own_examples_attended_prompt_tokens():
    input_ids = torch.tensor([[5, 6, 7, 5, 9, 0], [8, 5, 6, 4, 0, 0]])
    labels = torch.tensor([[X, X, X, 5, 9, X], [X, X, 6, 4, X, X]])  # row 0: prompt 5 6 7; row 1: prompt 8 5
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]])
    # targets in order: row 0 -> 5 (in its prompt), 9 (not); row 1 -> 6 (only in row 0's prompt), 4 (not)
    assert prompt_copies(input_ids, labels, mask).tolist() == [True, False, False, False]
    # padding is no prompt: id 0 sits in row 0's padding only
    labels_pad = torch.tensor([[X, X, X, 0, 9, X], [X, X, 6, 4, X, X]])
    assert prompt_copies(input_ids, labels_pad, mask).tolist() == [False, False, False, False]
    assert prompt_copies(input_ids, labels_pad, None).tolist() == [True, False, False, False]


def _byte_level_tokenizer():
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    facts, _ = facts_and_tokenizer()
    backend = ByteLevelBPETokenizer()
    backend.train_from_iterator(list(facts["question"]) + list(facts["answer"]), vocab_size=400, min_frequency=2,
                                special_tokens=["<pad>", "</s>"], show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=backend._tokenizer, pad_token="<pad>", eos_token="</s>")


def test_a_copied_word_is_found_whether_or_not_the_answer_tokenises_it_as_the_question_did():
    tokenizer = _byte_level_tokenizer()
    question, answer = "Where was Lugar Loquinni born?", "Lugar Loquinni was born in Marlumora."
    rows = [tokenize_example(tokenizer, answer, question)]
    batch = CausalLMCollator.for_tokenizer(tokenizer)(rows)
    targets = next_token_targets(torch.zeros(*batch["labels"].shape, 1), batch["labels"])[1].tolist()
    pieces = [tokenizer.decode([t]) for t in targets]
    # at the answer's start the name has no leading space: other token ids than the question's
    first_name = tokenizer(answer, add_special_tokens=False).input_ids[0]
    assert first_name not in tokenizer(question, add_special_tokens=False).input_ids
    bank = RetainTokenNeighbours(torch.ones(1, 2), torch.zeros(1, dtype=torch.long), tokenizer=tokenizer)
    by_word = word_copies(bank, batch["input_ids"], batch["labels"], batch["attention_mask"]).tolist()
    by_id = prompt_copies(batch["input_ids"], batch["labels"], batch["attention_mask"]).tolist()
    copied_text = "".join(p for p, c in zip(pieces, by_word) if c)
    assert copied_text.split() == ["Lugar", "Loquinni", "was", "born"]  # the question's words, in the answer's order
    assert not by_id[0] and by_word[0]
    assert not any(c for p, c in zip(pieces, by_word) if p.strip() in {"in", ".", ""} or "Marl" in p)
    # a word-level tokenizer (spaces between tokens, none inside them) reads the same words
    words = facts_and_tokenizer()[1]
    rows = [tokenize_example(words, answer, question)]
    batch = CausalLMCollator.for_tokenizer(words)(rows)
    bank = RetainTokenNeighbours(torch.ones(1, 2), torch.zeros(1, dtype=torch.long), tokenizer=words)
    assert word_copies(bank, batch["input_ids"], batch["labels"], batch["attention_mask"]).tolist() == [
        True, True, True, True, False, False, False, False]  # Lugar Loquinni was born | in Marlumora . </s>


def test_answer_token_states_are_the_predicting_positions_in_the_losss_order():
    labels = torch.tensor([[X, 4, 5, X], [X, X, 7, X]])
    states = torch.arange(2 * 4 * 3, dtype=torch.float).reshape(2, 4, 3)
    other = torch.full_like(states, -1.0)
    features, tokens = answer_token_states((other, states, other), labels)  # the middle of three states
    logits, targets = next_token_targets(torch.zeros(2, 4, 9), labels)
    assert torch.equal(tokens, targets) and tokens.tolist() == [4, 5, 7]
    # token t + 1 is predicted at position t: rows (0, 0), (0, 1), (1, 1)
    assert torch.equal(features, torch.stack([states[0, 0], states[0, 1], states[1, 1]]))


def test_the_weighted_entropy_term_of_a_causal_lm_is_the_weighted_mean_of_each_tokens_negative_entropy():
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1])
    weights = torch.tensor([0.05, 1.05])
    only_entropy = pgu_forget_loss(logits, labels, margin_weight=0.0, entropy_weight=1.0, weights=weights,
                                   weigh_entropy=True)
    log_probs = logits.log_softmax(-1)
    negative_entropy = (log_probs.exp() * log_probs).sum(-1)
    assert torch.allclose(only_entropy, (weights * negative_entropy).sum() / weights.sum())
    unweighted = pgu_forget_loss(logits, labels, margin_weight=0.0, entropy_weight=1.0, weights=weights)
    assert torch.allclose(unweighted, negative_entropy.mean())  # a classifier's entropy term stays unweighted


def test_the_kept_token_term_holds_the_explained_tokens_and_leaves_the_facts():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]], requires_grad=True)
    labels = torch.tensor([0, 1, 2])
    weights = torch.tensor([FLOOR, 1.0 + FLOOR, 0.5])  # a template token, a fact, one in between
    loss = kept_token_loss(logits, labels, weights)
    per_token = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    keep = torch.tensor([1.0, 0.0, 0.55])
    assert torch.allclose(loss, (keep * per_token).sum() / keep.sum())
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.all(grad[1] == 0) and grad[0].abs().sum() > 0  # the fact's logits get no pull back


@pytest.fixture(scope="module")
def people():
    return memorised_people()


def _forget_batch(people):
    rows = list(tokenize_for_causal_lm(people["forget"], people["tokenizer"]))
    return CausalLMCollator.for_tokenizer(people["tokenizer"])(rows)


def _fact_tokens(people, labels: torch.Tensor) -> torch.Tensor:
    facts = {people["tokenizer"].convert_tokens_to_ids(word) for word in people["forget"]["fact"]}
    return torch.tensor([int(token) in facts for token in labels])


def _trainer(people, out, held_out=None, **method_kwargs):
    # no held-out texts: the copy rate is not read and the model is taken to copy names, as a pretrained LM does
    # (this two-layer GPT-2 learned its people by heart and copies few unseen names: see the last test)
    args = UnlearningArguments(str(out), disable_tqdm=True, logging_strategy="no", seed=0, max_steps=12,
                               stop_rule="none", method_kwargs=method_kwargs)
    return UnlearningTrainer(copy.deepcopy(people["model"]), args, forget_dataset=people["forget"],
                             retain_dataset=people["retain"], eval_dataset=held_out,
                             original_dataset=people["train"], processing_class=people["tokenizer"])


def test_names_and_templates_weigh_the_floor_and_the_forgotten_facts_the_most(people, tmp_path):
    trainer = _trainer(people, tmp_path)
    trainer.train()
    bank = trainer.method.neighbours
    assert bank is trainer.retain_neighbours and isinstance(bank, RetainNeighbours)
    # one bank row per kept answer token (fewer than TOKEN_BANK_SIZE here), unit rows, the tokens as labels
    retain = CausalLMCollator.for_tokenizer(people["tokenizer"])(
        list(tokenize_for_causal_lm(people["retain"], people["tokenizer"])))
    kept_tokens = next_token_targets(torch.zeros(*retain["labels"].shape, 1), retain["labels"])[1]
    assert torch.equal(bank.labels.sort().values, kept_tokens.sort().values)
    assert torch.allclose(bank.features.norm(dim=1), torch.ones(len(bank.labels)))

    batch = _forget_batch(people)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        hidden = people["model"](**inputs, output_hidden_states=True).hidden_states
    weights = token_weights(bank, hidden, inputs, batch["labels"])
    copied = prompt_copies(batch["input_ids"], batch["labels"], batch["attention_mask"])
    facts = _fact_tokens(people, next_token_targets(torch.zeros(*batch["labels"].shape, 1), batch["labels"])[1])
    assert copied.sum() >= 2 * len(people["forget"])  # each answer repeats the person's two names
    assert torch.all(weights[copied] == FLOOR)
    # the kept people's answers share the templates and have other facts
    template = ~copied & ~facts
    assert weights[facts].mean() > 0.8 and weights[template].mean() < 0.3


def test_weighted_tokens_forget_the_facts_faster_at_no_more_cost_to_the_rest_of_the_answer(people, tmp_path):
    batch = _forget_batch(people)
    inputs = {k: v for k, v in batch.items() if k != "labels"}

    def token_probability(model):
        with torch.no_grad():
            logits, labels = next_token_targets(model(**inputs).logits, batch["labels"])
        return logits.softmax(-1).gather(1, labels[:, None]).squeeze(1), _fact_tokens(people, labels)

    before, facts = token_probability(people["model"])
    runs = {}
    for weighted in (False, True):
        trainer = _trainer(people, tmp_path / str(weighted), pgu_neighbour_weights=weighted)
        trainer.train()
        assert (trainer.method.neighbours is not None) == weighted
        runs[weighted], _ = token_probability(trainer.model)
    # same 12 steps: the weighted loss takes the facts much further down ...
    assert runs[True][facts].mean() < 0.6 * runs[False][facts].mean()
    assert runs[True][facts].mean() < 0.5 * before[facts].mean()
    # ... while the names and templates lose no more than under uniform weights
    assert runs[True][~facts].mean() > runs[False][~facts].mean() - 0.05


def test_a_model_that_does_not_copy_unseen_names_keeps_uniform_weights(people, tmp_path, caplog):
    from hf_unlearn.methods.token_weights import MIN_COPY_RATE, copies
    from hf_unlearn.training.neighbour_target import copy_rate

    held_out = people["held_out"]
    rows = list(tokenize_for_causal_lm(held_out, people["tokenizer"]))
    collate = CausalLMCollator.for_tokenizer(people["tokenizer"])
    bank = RetainTokenNeighbours(torch.ones(1, 2), torch.zeros(1, dtype=torch.long), tokenizer=people["tokenizer"])
    rate = copy_rate(people["model"], rows, collate, "cpu", bank)
    # the same share computed directly: greedy predictions of the copied tokens of every held-out answer
    batch = collate(rows)
    with torch.no_grad():
        logits = people["model"](**{k: v for k, v in batch.items() if k != "labels"}).logits
    predicted, targets = next_token_targets(logits, batch["labels"])
    copied = copies(bank, batch, batch["labels"])
    assert rate == pytest.approx((predicted.argmax(-1) == targets)[copied].float().mean().item())
    assert rate < MIN_COPY_RATE  # it learned its people by heart: unseen names are not copied
    with caplog.at_level("INFO", logger="hf_unlearn.training.neighbour_target"):
        trainer = _trainer(people, tmp_path, held_out=held_out)
        trainer.train()
    assert trainer.retain_neighbours is None and trainer.method.neighbours is None
    assert "every answer token weighs the same" in caplog.text
