"""Nothing lost, nothing recorded that did not happen: failures, the recipe's spaces, saving first, resuming."""

import json

import pytest
import torch
import yaml
from digits_models import make_args

from hf_unlearn import UnlearningTrainer
from hf_unlearn.core import CoreGradientSpace, LedgerError
from hf_unlearn.data.forget import indices_of_classes, random_indices, split_forget_retain
from hf_unlearn.scripts import unlearn as recipe
from hf_unlearn.training.checkpoints import REQUEST_MARKER

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def saved_model(trained_model, tmp_path):
    path = tmp_path / "original"
    trained_model.save_pretrained(path)
    return path


def _recipe(model_path, out, *extra):
    return recipe.main(["--model_name_or_path", str(model_path), "--dataset_name", "digits", "--output_dir", str(out),
                        "--disable_tqdm", "true", "--logging_strategy", "no", *extra])


def test_a_run_that_fails_leaves_the_callers_space_as_it_was_and_a_retry_is_accepted(
    trained_model, digits, tmp_path, monkeypatch
):
    space = CoreGradientSpace.from_model(trained_model, digits["train"], show_progress=False)
    forget, retain = split_forget_retain(digits["train"], indices_of_classes(digits["train"], [3]))

    def trainer():
        return UnlearningTrainer(model=trained_model, args=make_args(tmp_path, max_steps=4), forget_dataset=forget,
                                 retain_dataset=retain, eval_dataset=digits["validation"], core_gradient_space=space)

    failing = trainer()
    monkeypatch.setattr(failing.method, "compute_loss", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        failing.train()
    assert space.ledger == [] and space.num_examples == len(digits["train"])
    retry = trainer()
    retry.train()
    assert retry.outcome.unlearned and len(retry.core_gradient_space.ledger) == 1


def test_a_named_space_folder_must_exist_unless_asked_to_build_it(saved_model, tmp_path):
    missing = tmp_path / "typo_cgs"
    with pytest.raises(FileNotFoundError, match="no saved Core Gradient Space there.*--build_core_gradient_space"):
        _recipe(saved_model, tmp_path / "run", "--forget_class", "3", "--core_gradient_space", str(missing))
    assert not (tmp_path / "run" / "model.safetensors").exists()
    _recipe(saved_model, tmp_path / "run", "--forget_class", "3", "--core_gradient_space", str(missing),
            "--build_core_gradient_space", "true", "--max_steps", "2")
    built = CoreGradientSpace.from_pretrained(missing)
    assert built.ledger == [] and built.num_examples == 1258  # the original's space, before the request


def test_an_unlearned_model_folder_brings_its_ledger_and_a_repeat_is_refused(saved_model, tmp_path):
    first = tmp_path / "first"
    _recipe(saved_model, first, "--forget_class", "3")
    assert len(json.loads((first / "core_gradient_space" / "cgs_config.json").read_text())["ledger"]) == 1
    with pytest.raises(LedgerError, match="already forgotten by an earlier request"):
        _recipe(first, tmp_path / "again", "--forget_class", "3")
    assert not (tmp_path / "again" / "model.safetensors").exists()
    _recipe(first, tmp_path / "second", "--forget_class", "5")
    ledger = json.loads((tmp_path / "second" / "core_gradient_space" / "cgs_config.json").read_text())["ledger"]
    assert [r["num_examples"] for r in ledger] == [122, 121]  # both requests, in order


def test_the_recipe_saves_before_the_comparison_can_fail(saved_model, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("comparison failed")

    monkeypatch.setattr(recipe, "compare_with_retrain", broken)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="comparison failed"):
        _recipe(saved_model, out, "--forget_class", "3", "--compare_with_retrain", "true")
    assert (out / "model.safetensors").is_file() and (out / "core_gradient_space" / "cgs_config.json").is_file()
    assert "`pgu_retain`" in (out / "README.md").read_text()


# ---------------------------------------------------------------------------------------------- resuming
def _checkpointed(model, digits, tmp_path, indices, **kw):
    forget, retain = split_forget_retain(digits["train"], indices)
    args = make_args(tmp_path, method="neggrad_plus", save_strategy="steps", save_steps=3, stop_rule="none",
                     check_every_steps=2, **kw)
    return UnlearningTrainer(model=model, args=args, forget_dataset=forget, retain_dataset=retain,
                             eval_dataset=digits["validation"], original_dataset=digits["train"])


def test_resume_refuses_a_checkpoint_of_another_forget_set(trained_model, digits, tmp_path):
    _checkpointed(trained_model, digits, tmp_path, random_indices(1258, 0.05, 0), max_steps=3).train()
    other = _checkpointed(trained_model, digits, tmp_path, random_indices(1258, 0.05, 1), max_steps=6)
    with pytest.raises(ValueError, match="saved while unlearning a different forget set"):
        other.train(resume_from_checkpoint=True)


def test_neggrad_plus_resumes_to_the_uninterrupted_weights_past_an_incomplete_checkpoint(_trained, digits, tmp_path):
    """Retain partners depend on the batch, not on how many batches came before, so a resume pairs alike."""
    import copy

    indices = random_indices(1258, 0.1, 0)
    full = copy.deepcopy(_trained)
    _checkpointed(full, digits, tmp_path / "full", indices, max_steps=9).train()

    cut = copy.deepcopy(_trained)
    _checkpointed(cut, digits, tmp_path / "cut", indices, max_steps=6).train()  # checkpoints 3 and 6
    (tmp_path / "cut" / "run" / "checkpoint-6" / REQUEST_MARKER).unlink()  # as if killed while writing it
    resumed_model = copy.deepcopy(_trained)
    resumed = _checkpointed(resumed_model, digits, tmp_path / "cut", indices, max_steps=9)
    resumed.train(resume_from_checkpoint=True)  # skips the incomplete checkpoint-6, resumes from 3
    assert resumed.state.global_step == 9
    for (name, a), b in zip(full.named_parameters(), resumed_model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)


def test_the_text_recipe_with_a_validation_file_a_contains_filter_and_the_comparison(tmp_path, monkeypatch):
    """Raw text never reaches the model (the comparison used to crash on it), the card says what was measured."""
    from text_fixtures import save_text_model, write_messages

    draws, evaluate = [], recipe.evaluate_unlearning

    def counted(*args, **kwargs):
        draws.append(kwargs["mia_draws"])
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(recipe, "evaluate_unlearning", counted)

    messages = write_messages(tmp_path / "messages.csv")
    validation = write_messages(tmp_path / "validation.csv", n=60, seed=1)
    model = save_text_model(tmp_path / "model", messages)
    out = tmp_path / "run"
    recipe.main(["--model_name_or_path", str(model), "--data_files", str(messages), "--validation_file",
                 str(validation), "--text_column", "text", "--label_column", "label",
                 "--forget_filter", 'text contains "prize"', "--output_dir", str(out),
                 "--compare_with_retrain", "true", "--retrain_epochs", "3", "--mia_draws", "3",
                 "--disable_tqdm", "true", "--logging_strategy", "no", "--push_dry_run", str(tmp_path / "staged")])
    assert draws == [3, 3, 3]  # original, reference and unlearned model, each over three attacker draws
    report = json.loads((out / "report.json").read_text())
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert set(report["results"]) == {"original", "retrain", "pgu_retain"}  # every model evaluated
    wanted = sum("prize" in line for line in messages.read_text().splitlines()[1:])
    ledger = json.loads((out / "core_gradient_space" / "cgs_config.json").read_text())["ledger"]
    card = (out / "README.md").read_text()
    assert "| retrain |" in card and str(tmp_path) not in card
    # the reference's recipe is named: a reference trained longer than the original moves every gap
    assert "trained from a random initialisation for 3 epochs at learning rate 0.002, batch 32 on the retain" in card
    assert [r["num_examples"] for r in ledger] == [wanted]
    assert f"{wanted} training examples" in card
    # the dry run staged the push: the card with the measured metrics as metadata, no space, no arguments
    staged = tmp_path / "staged"
    assert (staged / "README.md").read_text() == card and (staged / "tokenizer.json").is_file()
    assert not (staged / "core_gradient_space").exists() and not (staged / "training_args.bin").exists()
    [entry] = yaml.safe_load(card.split("---")[1])["model-index"]
    metrics = {m["type"]: m["value"] for m in entry["results"][0]["metrics"]}
    assert metrics["ra"] == round(report["results"]["pgu_retain"]["RA"], 2) and "avg_gap" in metrics


def test_non_finite_losses_never_reach_the_saved_weights_or_the_ledger(trained_model, digits, tmp_path, monkeypatch):
    space = CoreGradientSpace.from_model(trained_model, digits["train"], show_progress=False)
    forget, retain = split_forget_retain(digits["train"], indices_of_classes(digits["train"], [3]))
    before = {n: p.detach().clone() for n, p in trained_model.named_parameters()}
    trainer = UnlearningTrainer(model=trained_model, args=make_args(tmp_path, max_steps=4, check_every_steps=1,
                                                                    max_backtracks=1),
                                forget_dataset=forget, retain_dataset=retain, eval_dataset=digits["validation"],
                                core_gradient_space=space)
    real_loss = trainer.method.compute_loss
    monkeypatch.setattr(trainer.method, "compute_loss", lambda *a: real_loss(*a) * float("nan"))
    trainer.train()
    trainer.save_model()
    assert not trainer.outcome.unlearned and trainer.outcome.backtracks == 1
    assert all(torch.equal(p, before[n]) for n, p in trained_model.named_parameters())
    saved = CoreGradientSpace.from_pretrained(tmp_path / "run" / "core_gradient_space")
    assert saved.ledger == [] and space.ledger == []
    assert "**Not unlearned.**" in (tmp_path / "run" / "README.md").read_text()


def test_an_explicitly_named_incomplete_checkpoint_is_refused(trained_model, digits, tmp_path):
    trainer = _checkpointed(trained_model, digits, tmp_path, random_indices(1258, 0.05, 0), max_steps=3)
    trainer.train()
    checkpoint = tmp_path / "run" / "checkpoint-3"
    (checkpoint / REQUEST_MARKER).unlink()
    with pytest.raises(ValueError, match="not a complete unlearning checkpoint"):
        trainer.train(resume_from_checkpoint=str(checkpoint))


def _takes_no_step(model, digits, tmp_path, rows):
    """A PGU request that must leave ``model`` exactly as it was: no step, nothing recorded, the card says so and
    names the way to force it."""
    forget, retain = split_forget_retain(digits["train"], rows)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = UnlearningTrainer(model=model, args=make_args(tmp_path, method="pgu"), forget_dataset=forget,
                                retain_dataset=retain, eval_dataset=digits["validation"],
                                original_dataset=digits["train"])
    output = trainer.train()
    trainer.save_model()
    assert output.global_step == 0 and not trainer.outcome.unlearned
    assert "stop_rule='none'" in trainer.outcome.reason
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert CoreGradientSpace.from_pretrained(tmp_path / "run" / "core_gradient_space").ledger == []
    assert "**Not unlearned.**" in (tmp_path / "run" / "README.md").read_text()
    return trainer


def test_a_forget_set_that_already_looks_unseen_takes_no_step_and_is_not_recorded(digits, tmp_path):
    """The sample-removal rule holds before any step: the model is left exactly as it was, and the card says so."""
    from digits_models import fit_small_cnn

    from hf_unlearn.evaluation.predict import collect_outputs

    batch = digits["train"][:]
    model = fit_small_cnn(batch["pixel_values"], batch["labels"], epochs=1, lr=1e-3)  # underfit: some rows wrong
    out = collect_outputs(model, digits["train"])
    wrong = (out["logits"].argmax(-1) != out["labels"]).nonzero().flatten().tolist()[:20]
    assert len(wrong) >= 5
    trainer = _takes_no_step(model, digits, tmp_path, wrong)
    # what the message suggests: no stop rule and a step budget removes them after all
    trainer.args.stop_rule, trainer.args.max_steps = "none", 3
    output = trainer.train()
    assert output.global_step == 3 and trainer.outcome.unlearned
    assert [r["num_examples"] for r in trainer.core_gradient_space.ledger] == [len(wrong)]


def test_a_full_set_utility_drop_the_sampled_guard_missed_is_reported_loudly(trained_model, digits, tmp_path,
                                                                              monkeypatch):
    from hf_unlearn.training.measurements import utility_drops

    assert utility_drops({"validation accuracy": 97.0}, {"validation accuracy": 93.5}, 3.0) == [
        "validation accuracy fell 3.5 points (from 97.0 to 93.5), more than the 3-point tolerance"
    ]
    assert utility_drops({"retain accuracy": 99.0}, {"retain accuracy": 96.5}, 3.0) == []
    forget, retain = split_forget_retain(digits["train"], indices_of_classes(digits["train"], [3]))
    trainer = UnlearningTrainer(model=trained_model, args=make_args(tmp_path, max_steps=2), forget_dataset=forget,
                                retain_dataset=retain, eval_dataset=digits["validation"],
                                original_dataset=digits["train"])
    measured = iter([{"validation accuracy": 98.0, "retain accuracy": 100.0},
                     {"validation accuracy": 92.0, "retain accuracy": 99.0}])
    monkeypatch.setattr(trainer, "full_utility", lambda **_: next(measured))  # known=: the check metrics
    output = trainer.train()
    trainer.save_model()
    assert trainer.outcome.unlearned and output.metrics["utility_warnings"] == 1
    card = (tmp_path / "run" / "README.md").read_text()
    assert "**Utility warning:** validation accuracy fell 6.0 points (from 98.0 to 92.0)" in card


@pytest.mark.parametrize("retain_after, looked_closer", [(98.0, True), (99.5, False)])
def test_a_look_near_the_tolerance_is_re_read_on_more_retain_examples_without_any_rollback(
    trained_model, digits, tmp_path, monkeypatch, retain_after, looked_closer
):
    """EUPMU on a label-smoothed ResNet lost 3.3 points on 1 000 retain examples with no rollback, and the
    256-example look alone did not flag it: a drop within 1.5 points of the tolerance is now read closer."""
    forget, retain = split_forget_retain(digits["train"], indices_of_classes(digits["train"], [3]))
    trainer = UnlearningTrainer(model=trained_model, args=make_args(tmp_path, max_steps=2), forget_dataset=forget,
                                retain_dataset=retain, eval_dataset=digits["validation"],
                                original_dataset=digits["train"])
    measured = iter([{"validation accuracy": 98.0, "retain accuracy": 100.0},
                     {"validation accuracy": 98.0, "retain accuracy": retain_after}])
    monkeypatch.setattr(trainer, "full_utility", lambda **_: next(measured))
    closer = []
    monkeypatch.setattr(trainer, "closer_look", lambda *a, **k: closer.append(a) or ["retain accuracy fell 3.4"])
    output = trainer.train()
    assert trainer.outcome.unlearned and trainer.outcome.backtracks == 0
    assert bool(closer) == looked_closer and output.metrics["utility_warnings"] == int(looked_closer)


def test_a_request_that_takes_no_step_is_still_checked_but_collects_no_forget_grams(digits, tmp_path, monkeypatch):
    """A no-op needs the refusals (space against model, request against ledger), not the forget Grams or the
    projectors (on a fine-tuned MiniLM they were 9 of a no-op's 15 s)."""
    from digits_models import fit_small_cnn

    import hf_unlearn.protection.space as protection
    from hf_unlearn.core import CGSMismatchError
    from hf_unlearn.evaluation.predict import collect_outputs

    batch = digits["train"][:]
    model = fit_small_cnn(batch["pixel_values"], batch["labels"], epochs=1, lr=1e-3)  # underfit: some rows wrong
    out = collect_outputs(model, digits["train"])
    wrong = (out["logits"].argmax(-1) != out["labels"]).nonzero().flatten().tolist()[:20]
    forget, retain = split_forget_retain(digits["train"], wrong)
    space = CoreGradientSpace.from_model(model, digits["train"])
    monkeypatch.setattr(protection, "collect_gram_matrices",
                        lambda *args, **kwargs: pytest.fail("forget Grams collected for a request that takes no step"))
    trainer = UnlearningTrainer(model=model, args=make_args(tmp_path, method="pgu"), forget_dataset=forget,
                                retain_dataset=retain, eval_dataset=digits["validation"], core_gradient_space=space)
    assert trainer.train().global_step == 0 and not trainer.outcome.unlearned
    assert trainer.core_gradient_space.ledger == [] and space.ledger == []
    # a space of another model is still refused on the same no-op request, before anything else
    other = fit_small_cnn(batch["pixel_values"], batch["labels"], epochs=1, lr=2e-3)
    trainer = UnlearningTrainer(model=model, args=make_args(tmp_path / "other", method="pgu"), forget_dataset=forget,
                                retain_dataset=retain, eval_dataset=digits["validation"],
                                core_gradient_space=CoreGradientSpace.from_model(other, digits["train"]))
    with pytest.raises(CGSMismatchError):
        trainer.train()


def test_a_reference_recipe_left_at_its_defaults_is_recognised():
    from hf_unlearn.scripts.arguments import ScriptArguments
    from hf_unlearn.scripts.unlearn import untouched_retrain_recipe

    assert untouched_retrain_recipe(ScriptArguments(model_name_or_path="m"))
    assert ScriptArguments(model_name_or_path="m").mia_draws == 10  # the comparison averages attacker draws
    with pytest.raises(ValueError, match="mia_draws must be at least 1"):
        ScriptArguments(model_name_or_path="m", mia_draws=0)
    assert not untouched_retrain_recipe(ScriptArguments(model_name_or_path="m", retrain_epochs=5))
    assert not untouched_retrain_recipe(ScriptArguments(model_name_or_path="m", retrain_batch_size=64))


def test_the_reference_recipe_carries_weight_decay_and_label_smoothing_into_training_and_its_cache_key(digits):
    from transformers import PretrainedConfig

    from hf_unlearn.exact.retrain import retrain_key
    from hf_unlearn.scripts.arguments import ScriptArguments, reference_recipe, reference_recipe_words

    plain = ScriptArguments(model_name_or_path="m", retrain_batch_size=64)
    smoothed = ScriptArguments(model_name_or_path="m", retrain_batch_size=64, retrain_weight_decay=0.05,
                               retrain_label_smoothing=0.1)
    recipe = reference_recipe(smoothed, world_size=2, seed=3)
    arguments = recipe.training_arguments("unused")
    assert (arguments.label_smoothing_factor, arguments.weight_decay) == (0.1, 0.05)
    assert recipe.per_device_train_batch_size == 32 and recipe.seed == 3  # the batch is split over processes
    assert reference_recipe_words(smoothed).endswith("batch 64, weight decay 0.05, label smoothing 0.1")
    assert reference_recipe_words(plain).endswith("batch 64")
    # a reference trained with smoothed labels is another model: never served from the plain one's cache
    config, retain = PretrainedConfig(), digits["train"].select(range(20))
    assert retrain_key(config, retain, recipe) != retrain_key(config, retain, reference_recipe(plain, 2, 3))


def test_a_class_the_model_never_predicts_is_not_unlearned_and_not_recorded(trained_model, digits, tmp_path):
    """Class removal has nothing to do when the class already gets neither predictions nor probability."""
    head = [m for m in trained_model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.bias[3] -= 60.0  # class 3 is never predicted and its probability is ~0
    trainer = _takes_no_step(trained_model, digits, tmp_path, indices_of_classes(digits["train"], [3]))
    assert "already not predicted" in trainer.outcome.reason


def test_checkpoints_keep_two_and_link_an_unchanged_space_instead_of_copying_it(trained_model, digits, tmp_path):
    import os

    forget, retain = split_forget_retain(digits["train"], random_indices(1258, 0.05, 0))
    args = make_args(tmp_path, method="pgu", save_strategy="steps", save_steps=2, stop_rule="none", max_steps=6)
    assert args.save_total_limit == 2  # the library's default (TrainingArguments keeps every checkpoint)
    trainer = UnlearningTrainer(model=trained_model, args=args, forget_dataset=forget, retain_dataset=retain,
                                eval_dataset=digits["validation"], original_dataset=digits["train"])
    trainer.train()
    trainer.save_model()
    run = tmp_path / "run"
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]
    files = [run / c / "core_gradient_space" / "cgs.safetensors" for c in ("checkpoint-4", "checkpoint-6")]
    first, second = (os.stat(f) for f in files)
    assert first.st_ino == second.st_ino and second.st_nlink >= 2  # one file on disk, not one per checkpoint
    CoreGradientSpace.from_pretrained(files[1].parent)  # a complete, verified space in the newest checkpoint
    final = os.stat(run / "core_gradient_space" / "cgs.safetensors")
    assert final.st_ino != second.st_ino  # the final space (its ledger settled) is written on its own
