"""Careless and hostile inputs are refused before any weight moves, each with a message that says the fix."""

import json
import math

import pytest
import torch
from datasets import Dataset
from digits_models import make_args
from safetensors.torch import load_file, save_file

from hf_unlearn import UnlearningArguments, UnlearningTrainer
from hf_unlearn.core import CGSLoadError, CGSMismatchError, CoreGradientSpace, LedgerError
from hf_unlearn.core.fingerprint import fingerprint_examples
from hf_unlearn.data.forget import indices_from_file, indices_of_classes, split_forget_retain

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def split(digits):
    return split_forget_retain(digits["train"], indices_of_classes(digits["train"], [3]))


def _weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _unchanged(model, before):
    return all(torch.equal(p, before[n]) for n, p in model.named_parameters())


# ---------------------------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "values, message",
    [
        ({"learning_rate": math.nan}, "learning_rate must be a finite number > 0"),
        ({"learning_rate": -0.1}, "learning_rate must be a finite number > 0"),
        ({"learning_rate": math.inf}, "learning_rate must be a finite number > 0"),
        ({"num_train_epochs": 0}, "num_train_epochs must be > 0"),
        ({"per_device_train_batch_size": 0}, "per_device_train_batch_size must be >= 1"),
        ({"max_grad_norm": math.nan}, "max_grad_norm must be a finite number >= 0"),
    ],
)
def test_arguments_that_cannot_unlearn_are_refused_up_front(tmp_path, values, message):
    with pytest.raises(ValueError, match=message):
        UnlearningArguments(output_dir=str(tmp_path), **values)


def test_a_step_budget_replaces_the_epoch_budget(tmp_path):
    args = UnlearningArguments(output_dir=str(tmp_path), num_train_epochs=0, max_steps=5)
    assert args.max_steps == 5


# ---------------------------------------------------------------------------------------------- datasets
def test_a_list_instead_of_a_dataset_gets_a_conversion_recipe(trained_model, split, tmp_path):
    forget, retain = split
    with pytest.raises(TypeError, match=r"forget_dataset must be a datasets.Dataset.*Dataset.from_list"):
        UnlearningTrainer(model=trained_model, args=make_args(tmp_path), forget_dataset=list(forget),
                          retain_dataset=retain)


def test_raw_text_without_tokenisation_is_refused_with_the_fix(trained_model, tmp_path):
    raw = Dataset.from_dict({"text": ["hello", "world", "again"], "labels": [0, 1, 2]})
    with pytest.raises(ValueError, match=r"no column the model takes as input.*tokenise text"):
        UnlearningTrainer(model=trained_model, args=make_args(tmp_path, method="gradient_ascent"), forget_dataset=raw)


def test_non_finite_inputs_are_refused_before_any_step(trained_model, split, tmp_path):
    forget, retain = split
    rows = forget.with_format("torch")[:]
    pixels = rows["pixel_values"].clone()
    pixels[4, 0, 2, 2] = math.nan
    poisoned = Dataset.from_dict({"pixel_values": pixels.numpy(), "labels": rows["labels"].numpy()})
    before = _weights(trained_model)
    with pytest.raises(ValueError, match=r"forget set has NaN or infinite values in column 'pixel_values' \(1 row"):
        UnlearningTrainer(model=trained_model, args=make_args(tmp_path, method="finetune"),
                          forget_dataset=poisoned.with_format("torch"), retain_dataset=retain)
    assert _unchanged(trained_model, before)


def test_eval_labels_the_model_cannot_predict_are_refused(trained_model, split, digits, tmp_path):
    forget, retain = split
    rows = digits["validation"].with_format("numpy")[:]
    shifted = Dataset.from_dict({"pixel_values": rows["pixel_values"], "labels": rows["labels"] + 10})
    with pytest.raises(ValueError, match=r"eval set has labels in \[10, 19\] but the model has 10 labels"):
        UnlearningTrainer(model=trained_model, args=make_args(tmp_path, method="finetune"), forget_dataset=forget,
                          retain_dataset=retain, eval_dataset=shifted)


def test_a_retain_set_that_still_holds_the_forget_rows_is_refused(trained_model, split, digits, tmp_path):
    forget, _ = split
    with pytest.raises(ValueError, match=rf"{len(forget)} forget example\(s\) are also in the retain set"):
        UnlearningTrainer(model=trained_model, args=make_args(tmp_path), forget_dataset=forget,
                          retain_dataset=digits["train"], original_dataset=digits["train"])


def test_duplicates_in_the_training_data_are_not_mistaken_for_overlap(trained_model, digits, tmp_path):
    """A row that occurs twice in the training data may be forgotten once and kept once."""
    train = digits["train"].select([*range(len(digits["train"])), 0])  # row 0 twice
    forget, retain = split_forget_retain(train, [0, 1, 2])
    trainer = UnlearningTrainer(model=trained_model, args=make_args(tmp_path, method="finetune"),
                                forget_dataset=forget, retain_dataset=retain, original_dataset=train)
    assert len(trainer.forget_dataset) == 3


def test_forgetting_the_whole_training_set_is_refused(trained_model, digits, tmp_path):
    with pytest.raises(ValueError, match="is the whole training set"):
        UnlearningTrainer(model=trained_model, args=make_args(tmp_path, method="gradient_ascent"),
                          forget_dataset=digits["train"], original_dataset=digits["train"])


def test_repeated_rows_in_one_request_are_named_as_such(trained_model, digits, tmp_path):
    space = CoreGradientSpace.from_model(trained_model, digits["train"], show_progress=False)
    fps = fingerprint_examples(digits["train"].select([5, 6]), space.fingerprint_columns)
    with pytest.raises(LedgerError, match="appear more than once in this request"):
        space.check_request(torch.cat([fps, fps[:1]]))


@pytest.mark.parametrize("content", ["[1, 2.5, 3]", "[1, true]", "1\n2.0\n"])
def test_index_files_with_floats_or_booleans_are_refused_not_truncated(tmp_path, content):
    path = tmp_path / "forget.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match="not integer row numbers"):
        indices_from_file(path, 100)


# ---------------------------------------------------------------------------------------------- saved spaces
@pytest.fixture
def saved_space(trained_model, digits, tmp_path):
    space = CoreGradientSpace.from_model(trained_model, digits["train"], show_progress=False)
    path = tmp_path / "cgs"
    space.save_pretrained(path)
    return path


def test_a_flipped_byte_in_the_tensor_file_is_detected(saved_space):
    data = bytearray((saved_space / "cgs.safetensors").read_bytes())
    data[-100] ^= 0x01  # inside the last tensor's bytes: the file still parses
    (saved_space / "cgs.safetensors").write_bytes(bytes(data))
    with pytest.raises(CGSLoadError, match=rf"{saved_space}.*does not match the checksum"):
        CoreGradientSpace.from_pretrained(saved_space)


def test_invalid_json_and_missing_keys_name_the_path_and_the_fix(saved_space):
    config_path = saved_space / "cgs_config.json"
    config = json.loads(config_path.read_text())
    del config["energy"]
    config_path.write_text(json.dumps(config))
    with pytest.raises(CGSLoadError, match=rf"{saved_space} is incomplete: 'energy' is missing. Rebuild"):
        CoreGradientSpace.from_pretrained(saved_space)
    config_path.write_text("{not json")
    with pytest.raises(CGSLoadError, match=r"cgs_config.json is not valid JSON"):
        CoreGradientSpace.from_pretrained(saved_space)


def test_a_gram_altered_consistently_with_its_checksum_is_still_refused(saved_space):
    """A hand-edited Gram (checksum updated too) that is no longer symmetric or finite cannot be a Gram."""
    tensors = load_file(str(saved_space / "cgs.safetensors"))
    name = next(k for k in tensors if k.startswith("gram."))
    tensors[name][0, 1] += 1.0
    save_file(tensors, str(saved_space / "cgs.safetensors"))
    config = json.loads((saved_space / "cgs_config.json").read_text())
    from hf_unlearn.core.storage import sha256_of

    config["tensors_sha256"] = sha256_of(saved_space / "cgs.safetensors")
    (saved_space / "cgs_config.json").write_text(json.dumps(config))
    with pytest.raises(CGSLoadError, match="is not symmetric"):
        CoreGradientSpace.from_pretrained(saved_space)
    tensors[name][0, 1] -= 1.0
    tensors[name][2, 2] = math.inf
    save_file(tensors, str(saved_space / "cgs.safetensors"))
    config["tensors_sha256"] = sha256_of(saved_space / "cgs.safetensors")
    (saved_space / "cgs_config.json").write_text(json.dumps(config))
    with pytest.raises(CGSLoadError, match="NaN or infinite"):
        CoreGradientSpace.from_pretrained(saved_space)


def test_a_model_whose_biases_differ_is_not_the_model_of_the_space(saved_space, trained_model):
    CoreGradientSpace.from_pretrained(saved_space, trained_model)  # the same model: accepted
    bias = next(p for n, p in trained_model.named_parameters() if n.endswith("bias"))
    with torch.no_grad():
        bias.add_(0.01)
    with pytest.raises(CGSMismatchError, match="protected weights match but other parameters or buffers"):
        CoreGradientSpace.from_pretrained(saved_space, trained_model)


# ---------------------------------------------------------------------------------------------- published ledgers
def test_a_published_space_cannot_confirm_a_guessed_row(trained_model, digits, monkeypatch):
    import hashlib

    from hf_unlearn.core import example_fingerprint
    from hf_unlearn.core.ledger_key import KEY_ENV, key_path, ledger_key

    space = CoreGradientSpace.from_model(trained_model, digits["train"], show_progress=False)
    assert key_path().is_file() and oct(key_path().stat().st_mode & 0o777) == "0o600"  # created on first use
    guess = digits["train"].with_format("numpy")[7]
    columns = space.fingerprint_columns
    known = set(space.train_fingerprints.tolist())
    assert example_fingerprint(guess, columns, ledger_key()) in known  # the owner can check a request ...
    assert example_fingerprint(guess, columns) not in known  # ... an unkeyed hash of the guess confirms nothing
    assert example_fingerprint(guess, columns, hashlib.sha256(b"attacker").digest()) not in known
    monkeypatch.setenv(KEY_ENV, "someone else's key 9f2c41d7a8e3b650")
    with pytest.raises(LedgerError, match=rf"made with ledger key {space.fingerprint_key_id}.*{KEY_ENV}"):
        space.check_request(fingerprint_examples(digits["train"].select([1]), columns))


def test_without_the_training_data_a_retain_set_holding_the_forget_set_is_refused_and_a_duplicate_warned(
    trained_model, digits, tmp_path, caplog
):
    forget, retain = split_forget_retain(digits["train"], [0, 1, 2, 3])
    with pytest.raises(ValueError, match="4 of 4 forget examples are also in the retain set"):
        UnlearningTrainer(model=trained_model, args=make_args(tmp_path, method="finetune"), forget_dataset=forget,
                          retain_dataset=digits["train"])
    with_copy = split_forget_retain(digits["train"].select([*range(len(digits["train"])), 0]), [0, 1, 2, 3])[1]
    UnlearningTrainer(model=trained_model, args=make_args(tmp_path, method="finetune"), forget_dataset=forget,
                      retain_dataset=with_copy)
    assert "1 forget example(s) have an identical copy in the retain set" in caplog.text


def test_the_space_saved_with_the_model_settles_duplicates_exactly(trained_model, digits, tmp_path):
    """Loaded from a folder with its space, the model's training multiplicities are known: a duplicate is fine."""
    from transformers import AutoModelForImageClassification

    train = digits["train"].select([*range(len(digits["train"])), 0])  # row 0 twice in the training data
    folder = tmp_path / "model"
    trained_model.save_pretrained(folder)
    CoreGradientSpace.from_model(trained_model, train, show_progress=False).save_pretrained(
        folder / "core_gradient_space"
    )
    model = AutoModelForImageClassification.from_pretrained(folder)
    forget, retain = split_forget_retain(train, [0, 1])
    trainer = UnlearningTrainer(model=model, args=make_args(tmp_path), forget_dataset=forget, retain_dataset=retain)
    assert trainer._given_space.num_examples == len(train)  # the folder's space, with its ledger


def test_processes_creating_the_ledger_key_at_once_all_get_the_same_complete_key(tmp_path):
    """torchrun ranks create the key on first use together: none may fail or read a half-written file."""
    import os
    import subprocess
    import sys
    import time

    start = tmp_path / "start"
    code = (
        "import pathlib, sys, time\n"
        "from hf_unlearn.core.ledger_key import ledger_key\n"
        "pathlib.Path(sys.argv[1]).touch()\n"
        f"while not pathlib.Path({str(start)!r}).exists(): time.sleep(0.0005)\n"
        "print(ledger_key().hex())\n"
    )
    env = {**os.environ, "HF_UNLEARN_HOME": str(tmp_path / "home")}
    env.pop("HF_UNLEARN_LEDGER_KEY", None)
    ready = [tmp_path / f"ready{i}" for i in range(6)]
    procs = [subprocess.Popen([sys.executable, "-c", code, str(r)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in ready]
    deadline = time.time() + 120
    while not all(r.exists() for r in ready) and time.time() < deadline:
        time.sleep(0.01)
    start.touch()  # every process imported and waits: they now create the key at the same moment
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-500:] for _, err in outputs]
    keys = {out.strip() for out, _ in outputs}
    assert len(keys) == 1 and len(keys.pop()) == 64
    assert [f.name for f in (tmp_path / "home").iterdir()] == ["ledger.key"]  # no temporary file left behind
