"""A model's life of deletion requests: served in turn, never twice, and a crash loses or repeats none."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from digits_models import make_args
from safetensors.torch import load_file

from hf_unlearn.core import LedgerError
from hf_unlearn.data.forget import indices_of_classes
from hf_unlearn.sequential import REQUEST_FILE, SequentialUnlearning, request_folder

ROOT = Path(__file__).resolve().parents[1]


def _ledger(folder: Path) -> list[int]:
    config = json.loads((folder / "core_gradient_space" / "cgs_config.json").read_text())
    return [entry["num_examples"] for entry in config["ledger"]]


def test_requests_are_served_in_turn_and_a_repeat_is_refused_after_a_restart(trained_model, digits, tmp_path,
                                                                             one_thread):
    train = digits["train"]
    rows = {c: indices_of_classes(train, [c]) for c in (3, 5, 7)}
    seen = []

    def evaluate(model, removed):
        seen.append(list(removed))
        return {"removed": len(removed)}

    args = make_args(tmp_path, "pgu", output_dir=str(tmp_path / "life"))
    first = SequentialUnlearning(trained_model, args, train, eval_dataset=digits["validation"], evaluate=evaluate)
    before = {n: p.detach().clone() for n, p in trained_model.named_parameters()}
    records = first.serve([rows[3], rows[5]])
    assert [r["unlearned"] for r in records] == [True, True]
    assert seen == [sorted(rows[3]), sorted(rows[3] + rows[5])]  # the comparison sees everything removed so far
    assert all(torch.equal(p, before[n]) for n, p in trained_model.named_parameters())  # the original is untouched
    assert _ledger(request_folder(args.output_dir, 2)) == [len(rows[3]), len(rows[5])]
    assert first.removed_rows() == sorted(rows[3] + rows[5])
    served_at = (request_folder(args.output_dir, 1) / "model.safetensors").stat().st_mtime_ns

    restarted = SequentialUnlearning(trained_model, args, train, eval_dataset=digits["validation"])
    with pytest.raises(LedgerError, match="already removed by request 1"):
        restarted.serve([rows[3], rows[5], rows[3][:10]])
    assert not request_folder(args.output_dir, 3).exists()
    with pytest.raises(ValueError, match="other rows"):
        restarted.serve([rows[5], rows[3]])
    records = restarted.serve([rows[3], rows[5], rows[7]])
    assert [r["request"] for r in records] == [1, 2, 3] and records[2]["unlearned"]
    assert (request_folder(args.output_dir, 1) / "model.safetensors").stat().st_mtime_ns == served_at  # not redone
    assert _ledger(request_folder(args.output_dir, 3)) == [len(rows[c]) for c in (3, 5, 7)]
    assert json.loads((Path(args.output_dir) / "requests.json").read_text()) == records


def test_bad_requests_are_refused_before_anything_runs(trained_model, digits, tmp_path):
    args = make_args(tmp_path, "pgu", output_dir=str(tmp_path / "life"))
    queue = SequentialUnlearning(trained_model, args, digits["train"], eval_dataset=digits["validation"])
    with pytest.raises(ValueError, match="Request 2 is empty"):
        queue.serve([[0, 1], []])
    with pytest.raises(IndexError, match="outside the training set"):
        queue.serve([[0, len(digits["train"])]])
    with pytest.raises(ValueError, match="more than once"):
        queue.serve([[4, 4]])
    with pytest.raises(LedgerError, match="already removed by request 1"):
        queue.serve([[0, 1], [1, 2]])
    assert not any(Path(args.output_dir).glob("request-*"))


def test_a_killed_life_of_requests_resumes_without_losing_or_repeating_one(trained_model, digits, tmp_path):
    model_folder = tmp_path / "original"
    trained_model.save_pretrained(model_folder)
    out = tmp_path / "life"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(ROOT / "tests" / "scripts" / "sequential_requests.py"), str(model_folder), str(out)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    in_request_2 = out / "request-0002.partial" / "checkpoint-4"
    deadline = time.monotonic() + 300
    while not (in_request_2 / "unlearning_request.json").is_file():
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "request 2 never reached a checkpoint"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (request_folder(out, 1) / REQUEST_FILE).is_file() and not request_folder(out, 2).exists()
    served_at = (request_folder(out, 1) / "model.safetensors").stat().st_mtime_ns

    rerun = subprocess.run(command, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    records = json.loads((out / "requests.json").read_text())
    digits_train = digits["train"]
    assert [r["num_examples"] for r in records] == [len(indices_of_classes(digits_train, [c])) for c in (3, 5, 7)]
    assert _ledger(request_folder(out, 3)) == [r["num_examples"] for r in records]  # each request exactly once
    assert (request_folder(out, 1) / "model.safetensors").stat().st_mtime_ns == served_at  # request 1 not redone
    assert not any(out.glob("*.partial")) and not any(request_folder(out, 2).glob("checkpoint-*"))
    resumed = records[1]["resumed_from"]  # request 2 went on from its newest checkpoint, not from the start
    assert resumed is not None and int(resumed.split("-")[1]) >= 4
    assert records[0]["resumed_from"] is None and records[2]["resumed_from"] is None
    final = load_file(str(request_folder(out, 3) / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in final.values())


def test_the_recipe_serves_classes_as_requests_and_a_rerun_resumes_nothing(trained_model, digits, tmp_path,
                                                                            one_thread):
    from hf_unlearn.scripts.unlearn import main

    trained_model.save_pretrained(tmp_path / "original")
    out = tmp_path / "life"
    argv = ["--model_name_or_path", str(tmp_path / "original"), "--dataset_name", "digits", "--forget_class", "3", "5",
            "--num_requests", "2", "--compare_with_retrain", "true", "--retrain_epochs", "8",
            "--output_dir", str(out), "--disable_tqdm", "true", "--logging_strategy", "no", "--report_to", "none"]
    summary = main(argv)
    assert summary["requests"] == 2 and summary["unlearned"] == 2
    records = json.loads((out / "requests.json").read_text())
    sizes = [len(indices_of_classes(digits["train"], [c])) for c in (3, 5)]  # one request per class, in order
    assert _ledger(request_folder(out, 2)) == [r["num_examples"] for r in records] == sizes
    for record in records:
        metrics = record["metrics"]
        assert metrics["UA"] >= 95.0  # UA = 100 - forget accuracy: every class removed so far, not only the last
        assert 0.0 <= metrics["avg_gap"] < 10.0 and metrics["TA"] > 70.0
        assert metrics["TA_all_classes"] < metrics["TA"] - 5  # TA on the kept classes: the removed ones left out
    first = (request_folder(out, 1) / "model.safetensors").stat().st_mtime_ns
    assert main(argv) == summary  # the same command again: everything is served, nothing runs twice
    assert (request_folder(out, 1) / "model.safetensors").stat().st_mtime_ns == first
    with pytest.raises(ValueError, match="does not push"):
        main([*argv, "--push_dry_run", str(tmp_path / "staged")])


def test_a_resumed_request_that_does_not_unlearn_leaves_the_ledger_as_it_was(trained_model, digits, tmp_path):
    """The resumed branch loads the checkpoint's space (request already subtracted): reverting must undo that."""
    from hf_unlearn.core import CoreGradientSpace
    from hf_unlearn.data.columns import keep_model_columns
    from hf_unlearn.protection import SpaceProtection, SpaceSettings

    train = digits["train"]
    given = CoreGradientSpace.from_model(trained_model, train, show_progress=False)
    forget = train.select(indices_of_classes(train, [3]))
    subtracted = CoreGradientSpace.from_model(trained_model, train, show_progress=False)
    from hf_unlearn.core import fingerprint_examples

    subtracted.subtract(collect_gram_matrices_of(trained_model, forget),
                        fingerprint_examples(forget, subtracted.fingerprint_columns))
    checkpoint = tmp_path / "checkpoint-2"
    subtracted.save_pretrained(checkpoint / "core_gradient_space")
    settings = SpaceSettings.from_args(make_args(tmp_path))
    for space, expected in ((given, []), (None, None)):
        protection = SpaceProtection(settings, space=space, original_dataset=train)
        protection.prepare(trained_model, forget_model_inputs=keep_model_columns(trained_model, forget),
                           forget_dataset=forget, resume_from_checkpoint=str(checkpoint))
        assert len(protection.space.ledger) == 1  # resumed: the checkpoint's space, with the request in it
        protection.revert()
        if expected is None:
            assert protection.space is None  # built from the data: nothing to go back to, so nothing is kept
        else:
            assert protection.space is given and protection.space.ledger == expected


def collect_gram_matrices_of(model, dataset):
    from hf_unlearn.core import collect_gram_matrices

    return collect_gram_matrices(model, dataset.select_columns(["pixel_values"]).with_format("torch"),
                                 show_progress=False)
