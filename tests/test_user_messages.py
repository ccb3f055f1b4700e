"""What a user meets on the less travelled paths: no crash, and a message that names the problem and the fix."""

import copy

import pytest
import torch
from lm_fixtures import FORGET_PEOPLE, TRAINED_PEOPLE, facts_and_tokenizer, fit, tiny_gpt2

from hf_unlearn import UnlearningArguments, UnlearningTrainer


@pytest.fixture(scope="module")
def people():
    torch.set_num_threads(1)
    facts, tokenizer = facts_and_tokenizer()
    trained = facts.filter(lambda r: r["person"] < TRAINED_PEOPLE)
    return {"model": fit(tiny_gpt2(len(tokenizer)), trained, tokenizer), "tokenizer": tokenizer, "train": trained,
            "held_out": facts.filter(lambda r: r["person"] >= TRAINED_PEOPLE)}


def test_a_one_row_causal_lm_request_runs(people, tmp_path):
    """One person asking to be forgotten is the commonest request; its single row used to crash the evaluation."""
    train = people["train"]
    forget = train.filter(lambda r: r["person"] < FORGET_PEOPLE).select([0])
    retain = train.filter(lambda r: r["person"] >= FORGET_PEOPLE)
    args = UnlearningArguments(output_dir=str(tmp_path), disable_tqdm=True, logging_strategy="no", seed=0,
                               max_steps=2, stop_rule="none")
    trainer = UnlearningTrainer(copy.deepcopy(people["model"]), args, forget_dataset=forget, retain_dataset=retain,
                                eval_dataset=people["held_out"], original_dataset=train,
                                processing_class=people["tokenizer"])
    trainer.train()
    assert trainer.outcome.unlearned and trainer.state.global_step == 2
    assert "forget_likelihood" in trainer.outcome.final  # measured on the one row
