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


def test_the_card_says_which_trained_parameters_moved_without_projection(trained_model, digits, tmp_path):
    from digits_models import make_args

    from hf_unlearn.data.forget import indices_of_classes, split_forget_retain

    forget, retain = split_forget_retain(digits["train"], indices_of_classes(digits["train"], [3]))

    def summary(**kwargs):
        trainer = UnlearningTrainer(model=copy.deepcopy(trained_model), args=make_args(tmp_path, **kwargs),
                                    forget_dataset=forget, retain_dataset=retain, original_dataset=digits["train"])
        trainer.prepare_unlearning()
        return trainer._projection_summary()

    assert "without projection" not in summary()  # every trained weight is projected
    text = summary(freeze_bias_and_norm=False, train_unprotected=True)
    assert "trained parameter tensor(s) outside the space moved without projection" in text and ".bias`" in text


def test_protect_layers_that_choose_other_layers_than_a_given_space_are_refused(trained_model, digits, tmp_path):
    from digits_models import make_args

    from hf_unlearn import CoreGradientSpace
    from hf_unlearn.data.forget import indices_of_classes, split_forget_retain

    forget, retain = split_forget_retain(digits["train"], indices_of_classes(digits["train"], [3]))
    space = CoreGradientSpace.from_model(trained_model, digits["train"], show_progress=False)
    before = {n: p.detach().clone() for n, p in trained_model.named_parameters()}

    def trainer(**kwargs):
        return UnlearningTrainer(model=trained_model, args=make_args(tmp_path, **kwargs), forget_dataset=forget,
                                 retain_dataset=retain, core_gradient_space=space)

    with pytest.raises(ValueError, match=r"choose 1 layer\(s\), but the given Core Gradient Space protects "
                                         r"\d+ .*Drop these options, or build a space with them"):
        trainer(protect_layers=["classifier*"]).prepare_unlearning()
    assert all(torch.equal(p, before[n]) for n, p in trained_model.named_parameters())
    trainer(protect_layers=list(space.layers)).prepare_unlearning()  # the same layers: accepted


def test_a_set_without_labels_is_named_with_the_fix(trained_model, digits, tmp_path):
    from digits_models import make_args

    from hf_unlearn.data.forget import split_forget_retain

    forget, retain = split_forget_retain(digits["train"], [0, 1, 2])
    with pytest.raises(ValueError, match=r"The retain set has no label column .*'pixel_values'.*--label_column"):
        UnlearningTrainer(model=trained_model, args=make_args(tmp_path), forget_dataset=forget,
                          retain_dataset=retain.remove_columns("labels"), original_dataset=digits["train"])


def test_float_labels_are_refused_with_the_cast_and_the_offending_value():
    from datasets import Dataset

    from hf_unlearn.data.requests import check_label_range

    class Model:
        class config:  # noqa: N801
            num_labels, problem_type = 10, None

    with pytest.raises(ValueError, match=r"forget set's labels are floats \(e\.g\. 3\.0\).*cast_column"):
        check_label_range(Model(), forget=Dataset.from_dict({"x": [0, 1], "labels": [3.0, 5.0]}))
    with pytest.raises(ValueError, match=r"not whole numbers \(e\.g\. 2\.5\)"):
        check_label_range(Model(), forget=Dataset.from_dict({"x": [0, 1], "labels": [0.0, 2.5]}))


def test_a_bfloat16_copy_of_the_model_is_refused_by_its_dtype_and_can_have_its_own_space(trained_model, digits):
    from hf_unlearn import CoreGradientSpace
    from hf_unlearn.core import CGSMismatchError

    train = digits["train"].select(range(64))
    space = CoreGradientSpace.from_model(trained_model, train, show_progress=False)
    half = copy.deepcopy(trained_model).to(torch.bfloat16)
    with pytest.raises(CGSMismatchError, match=r"protected weights are bfloat16, the cache was built for float32 "
                                               r"weights.*torch_dtype=torch.float32"):
        space.check_model(half)
    own = CoreGradientSpace.from_model(half, train, show_progress=False)  # float32 pixels fed to bfloat16 layers
    own.check_model(half)
    name = next(iter(own.grams))
    assert torch.isfinite(own.grams[name]).all() and own.rank(name) > 0


def test_a_model_on_the_meta_device_is_refused_with_the_fix(trained_model, digits, tmp_path):
    from digits_models import make_args

    from hf_unlearn import CoreGradientSpace
    from hf_unlearn.data.forget import split_forget_retain

    empty = copy.deepcopy(trained_model).to("meta")
    with pytest.raises(ValueError, match="weights on the meta device: they were never loaded.*to_empty"):
        CoreGradientSpace.from_model(empty, digits["train"].select(range(8)), show_progress=False)
    forget, retain = split_forget_retain(digits["train"], [0, 1, 2])
    with pytest.raises(ValueError, match="weights on the meta device"):
        UnlearningTrainer(model=empty, args=make_args(tmp_path), forget_dataset=forget, retain_dataset=retain,
                          original_dataset=digits["train"])


def test_a_model_with_every_weight_frozen_is_refused_before_any_change(trained_model, digits, tmp_path):
    """A LoRA model merged with merge_and_unload() comes back with requires_grad=False everywhere: refused at
    construction with the fix, not later as a complaint about protected layers."""
    from digits_models import make_args

    from hf_unlearn.data.forget import split_forget_retain

    frozen = copy.deepcopy(trained_model).requires_grad_(False)
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    forget, retain = split_forget_retain(digits["train"], [0, 1, 2])
    with pytest.raises(ValueError, match=r"No parameter of the model .* requires a gradient.*requires_grad_\(True\)"):
        UnlearningTrainer(model=frozen, args=make_args(tmp_path), forget_dataset=forget, retain_dataset=retain,
                          original_dataset=digits["train"])
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())
    frozen.requires_grad_(True)  # the fix the message gives: the same request is then accepted
    UnlearningTrainer(model=frozen, args=make_args(tmp_path), forget_dataset=forget, retain_dataset=retain,
                      original_dataset=digits["train"])
