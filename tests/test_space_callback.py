"""CoreGradientSpaceCallback: the space collected inside a plain Trainer run, saved with the model, serving requests."""

import logging

import pytest
import torch
from digits_models import make_args
from transformers import Trainer, TrainingArguments

from hf_unlearn import CoreGradientSpaceCallback, UnlearningTrainer
from hf_unlearn.core import CoreGradientSpace, LedgerError, model_fingerprint
from hf_unlearn.data.columns import label_array
from hf_unlearn.data.forget import indices_of_classes, split_forget_retain
from hf_unlearn.evaluation import accuracy
from hf_unlearn.models import SmallCNNConfig, SmallCNNForImageClassification

pytestmark = pytest.mark.usefixtures("one_thread")


def _train(digits, folder, callback, epochs=4, **kwargs):
    torch.manual_seed(0)
    model = SmallCNNForImageClassification(SmallCNNConfig())
    settings = dict(output_dir=str(folder), num_train_epochs=epochs, per_device_train_batch_size=32,
                    learning_rate=3e-3, report_to="none", disable_tqdm=True, save_strategy="no",
                    logging_strategy="no", use_cpu=True, seed=0)
    trainer = Trainer(model=model, args=TrainingArguments(**{**settings, **kwargs}), train_dataset=digits["train"],
                      callbacks=[callback])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run outside the one_thread fixture
    try:
        trainer.train()
    finally:
        torch.set_num_threads(threads)
    trainer.save_model()
    return trainer.model.eval()


@pytest.fixture(scope="module", params=["final_pass", "last_epoch"])
def trained(request, digits, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    callback = CoreGradientSpaceCallback(request.param)
    model = _train(digits, folder, callback, epochs=6)
    return request.param, model, callback, folder


def test_final_pass_grams_equal_a_space_built_after_training(trained, digits):
    mode, model, callback, folder = trained
    if mode != "final_pass":
        pytest.skip("the exact mode")
    after = CoreGradientSpace.from_model(model, digits["train"], show_progress=False)
    space = CoreGradientSpace.from_pretrained(folder / "core_gradient_space", model)  # its weights: accepted
    assert set(space.grams) == set(after.grams)
    for name, gram in after.grams.items():
        assert torch.allclose(space.grams[name], gram, rtol=1e-12, atol=1e-12 * gram.abs().max().item()), name
    assert space.num_examples == after.num_examples == len(digits["train"])
    assert torch.equal(space.train_fingerprints, after.train_fingerprints)
    assert space.provenance["collected"] == "final_pass"
    assert callback.collections == 1  # six epochs, one collection


def test_last_epoch_collects_once_from_the_training_forwards(trained, digits):
    mode, model, callback, folder = trained
    if mode != "last_epoch":
        pytest.skip("the training-forward mode")
    space = CoreGradientSpace.from_pretrained(folder / "core_gradient_space", model)
    assert callback.collections == 1 and space.provenance["collected"] == "last_epoch"
    assert space.num_examples == len(digits["train"])
    after = CoreGradientSpace.from_model(model, digits["train"], show_progress=False)
    # the first layer's inputs are the pixels whatever the weights: once over the training set, not six times
    first = next(iter(after.grams))
    assert torch.allclose(space.grams[first], after.grams[first], rtol=1e-10)
    # deeper layers saw moving weights: close to the final model's Grams, not equal
    last = list(after.grams)[-1]
    relative = (space.grams[last] - after.grams[last]).norm() / after.grams[last].norm()
    assert 1e-6 < relative < 0.5


def test_a_space_collected_in_training_serves_a_request(trained, digits, tmp_path):
    mode, _, _, folder = trained
    model = SmallCNNForImageClassification.from_pretrained(folder)  # finds core_gradient_space/ beside it
    before = accuracy(model, digits["test"])
    forget, retain = split_forget_retain(digits["train"], indices_of_classes(digits["train"], [3]))
    trainer = UnlearningTrainer(model=model, args=make_args(tmp_path), forget_dataset=forget,
                                retain_dataset=retain, eval_dataset=digits["validation"])
    trainer.train()
    assert trainer.outcome.unlearned
    assert trainer.unlearning_metrics()["eval_forget_accuracy"] <= 5.0
    test = digits["test"]
    kept = test.select([i for i, y in enumerate(label_array(test).tolist()) if y != 3])
    assert accuracy(model, kept) >= before - 3.0
    assert len(trainer.core_gradient_space.ledger) == 1


def test_a_request_on_rows_the_run_never_saw_is_refused(trained, digits, tmp_path):
    _, _, _, folder = trained
    model = SmallCNNForImageClassification.from_pretrained(folder)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    unseen = digits["validation"].select(range(10))
    trainer = UnlearningTrainer(model=model, args=make_args(tmp_path, stop_rule="none", max_steps=2),
                                forget_dataset=unseen, retain_dataset=digits["train"], eval_dataset=digits["test"])
    with pytest.raises(LedgerError, match="not"):
        trainer.train()
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())


def test_last_epoch_cut_by_max_steps_falls_back_to_an_exact_final_pass(digits, tmp_path, caplog):
    callback = CoreGradientSpaceCallback("last_epoch")
    with caplog.at_level(logging.WARNING, logger="hf_unlearn.training.space_callback"):
        model = _train(digits, tmp_path, callback, epochs=2, max_steps=50)  # 40 steps an epoch: ends mid-epoch
    assert "final pass instead" in caplog.text
    assert callback.space.provenance["collected"] == "final_pass" and callback.collections == 2
    after = CoreGradientSpace.from_model(model, digits["train"], show_progress=False)
    for name, gram in after.grams.items():
        assert torch.allclose(callback.space.grams[name], gram, rtol=1e-12, atol=1e-12 * gram.abs().max().item())
    assert callback.space.model_fingerprint == model_fingerprint(model, after.layers)


def test_checkpoints_saved_after_collection_carry_the_space(digits, tmp_path):
    callback = CoreGradientSpaceCallback()
    model = _train(digits, tmp_path, callback, epochs=2, save_strategy="epoch")
    assert (tmp_path / "checkpoint-80" / "core_gradient_space").is_dir()
    assert not (tmp_path / "checkpoint-40" / "core_gradient_space").exists()  # saved before the space existed
    CoreGradientSpace.from_pretrained(tmp_path / "checkpoint-80" / "core_gradient_space", model)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="mode must be one of"):
        CoreGradientSpaceCallback("every_epoch")
    with pytest.raises(ValueError, match="step_fraction must lie in"):
        CoreGradientSpaceCallback("last_epoch", step_fraction=0.0)
    with pytest.raises(ValueError, match="precision must be one of"):
        CoreGradientSpaceCallback("last_epoch", precision="float16")
    with pytest.raises(TypeError, match="datasets.Dataset"):
        CoreGradientSpaceCallback(train_dataset=[{"x": 1}])


@pytest.mark.distributed
@pytest.mark.parametrize("mode", ["final_pass", "last_epoch"])
def test_two_processes_collect_the_space_of_the_whole_training_set(digits, tmp_path, mode):
    """torchrun, 2 gloo ranks: each collects its share, the Grams are summed, one process saves."""
    from distributed_fixtures import SCRIPTS, launch_two_ranks

    launch_two_ranks([SCRIPTS / "space_callback_two_ranks.py", tmp_path, mode])
    model = SmallCNNForImageClassification.from_pretrained(tmp_path).eval()
    space = CoreGradientSpace.from_pretrained(tmp_path / "core_gradient_space", model)
    after = CoreGradientSpace.from_model(model, digits["train"], show_progress=False)
    assert space.num_examples == len(digits["train"])
    assert torch.equal(space.train_fingerprints, after.train_fingerprints)
    # final pass (or a last epoch whose evened-out batches repeated rows: the fallback): exact; a last epoch:
    # the first layer's inputs are the pixels, once each
    exact = space.provenance["collected"] == "final_pass"
    for name in list(after.grams) if exact else list(after.grams)[:1]:
        gram = after.grams[name]
        assert ((space.grams[name] - gram).norm() / gram.norm()).item() < 1e-10, name


def test_a_share_of_the_last_epochs_steps_estimates_the_whole_epoch(digits, tmp_path):
    """step_fraction: the forwards of about a quarter of the steps, scaled by rows seen / rows added."""
    callback = CoreGradientSpaceCallback("last_epoch", step_fraction=0.25, seed=1)
    model = _train(digits, tmp_path, callback, epochs=2)
    space = callback.space
    assert space.provenance["collected"] == "last_epoch" and space.provenance["step_fraction"] == 0.25
    assert space.num_examples == len(digits["train"])
    after = CoreGradientSpace.from_model(model, digits["train"], show_progress=False)
    first = next(iter(after.grams))  # the pixels' Gram, estimated from a quarter of the rows
    relative = ((space.grams[first] - after.grams[first]).norm() / after.grams[first].norm()).item()
    assert 1e-6 < relative < 0.2
