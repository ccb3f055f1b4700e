"""SIGKILL the recipe mid-run, resume it: the request is in the ledger once, the weights are the uninterrupted run's."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from hf_unlearn.scripts.unlearn import main
from hf_unlearn.training.checkpoints import REQUEST_MARKER

ROOT = Path(__file__).resolve().parents[1]


def _arguments(model_path, out):
    return ["--model_name_or_path", str(model_path), "--dataset_name", "digits", "--forget_class", "3",
            "--method", "pgu", "--output_dir", str(out), "--max_steps", "40", "--stop_rule", "none",
            "--check_every_steps", "3", "--save_strategy", "steps", "--save_steps", "2", "--seed", "0",
            "--save_total_limit", "100",  # keep checkpoint-2 to see that the resume did not rewrite it
            "--disable_tqdm", "true", "--logging_strategy", "no", "--report_to", "none"]


def test_a_killed_run_resumes_to_the_uninterrupted_result_with_one_ledger_entry(trained_model, tmp_path):
    model_path = tmp_path / "original"
    trained_model.save_pretrained(model_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "hf_unlearn.scripts.unlearn", *_arguments(model_path, killed)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (killed / "checkpoint-2" / REQUEST_MARKER).is_file():
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "model.safetensors").exists(), "the run ended before it could be killed"

    first_checkpoint = (killed / "checkpoint-2" / "model.safetensors").stat().st_mtime_ns
    resume = subprocess.run([*command, "--resume_from_checkpoint", "true"], env=env, capture_output=True, text=True)
    assert resume.returncode == 0, resume.stderr[-3000:]
    # it continued from a checkpoint instead of starting over (which would rewrite checkpoint-2)
    assert (killed / "checkpoint-2" / "model.safetensors").stat().st_mtime_ns == first_checkpoint

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        main(_arguments(model_path, tmp_path / "uninterrupted"))
    finally:
        torch.set_num_threads(threads)

    ledger = json.loads((killed / "core_gradient_space" / "cgs_config.json").read_text())["ledger"]
    assert [entry["num_examples"] for entry in ledger] == [122]  # once, though the request was started twice
    resumed = load_file(str(killed / "model.safetensors"))
    expected = load_file(str(tmp_path / "uninterrupted" / "model.safetensors"))
    assert resumed.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=1e-6, msg=name)
