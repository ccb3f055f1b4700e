"""Avg. Gap, speed-up and the written report (Markdown, JSON, figures)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hf_unlearn.data.builtin import load_digits_dataset
from hf_unlearn.evaluation import avg_gap, per_example_loss, speedup, write_report
from hf_unlearn.models import SmallCNNConfig, SmallCNNForImageClassification

RETRAIN = {"UA": 6.0, "RA": 100.0, "TA": 92.0, "MIA": 14.0, "loss_AUC": 0.5, "time": 100.0}
FT = {
    "UA": 5.0,
    "RA": 99.0,
    "TA": 90.0,
    "MIA": 10.0,
    "loss_AUC": 0.6,
    "JS": 0.01,
    "act_dist": 0.05,
    "time": 4.0,
}
GA = {"UA": 16.0, "RA": 90.0, "TA": 84.0, "MIA": 30.0, "loss_AUC": 0.55, "JS": 0.05, "act_dist": 0.2}


def test_avg_gap_and_speedup_by_hand():
    # |5-6| + |99-100| + |90-92| + |10-14| = 1 + 1 + 2 + 4 → mean 2
    assert avg_gap(FT, RETRAIN) == pytest.approx(2.0)
    # 10 + 10 + 8 + 16 → 11
    assert avg_gap(GA, RETRAIN) == pytest.approx(11.0)
    assert avg_gap(FT, RETRAIN, keys=("UA", "MIA")) == pytest.approx(2.5)
    assert avg_gap(RETRAIN, RETRAIN) == 0.0
    assert speedup(100.0, 4.0) == pytest.approx(25.0)
    with pytest.raises(KeyError, match="JS"):
        avg_gap(FT, RETRAIN, keys=("UA", "JS"))
    with pytest.raises(ValueError):
        speedup(100.0, 0.0)


def test_avg_gap_leaves_out_a_metric_undefined_in_both():
    nan = float("nan")
    # MIA undefined on both sides: mean of |5-6|, |99-100|, |90-92| = 4/3
    assert avg_gap({**FT, "MIA": nan}, {**RETRAIN, "MIA": nan}) == pytest.approx(4 / 3)
    with pytest.raises(ValueError, match="only one"):
        avg_gap({**FT, "MIA": nan}, RETRAIN)
    with pytest.raises(ValueError, match="every metric"):
        avg_gap({"UA": nan}, {"UA": nan}, keys=("UA",))


def test_write_report_files_and_round_trip(tmp_path):
    results = {"FT": FT, "retrain": RETRAIN, "GA": GA}
    rng = np.random.default_rng(0)
    losses = {
        "forget": rng.exponential(0.01, 100),
        "test": rng.exponential(0.2, 100),
        "retrain forget": np.append(rng.exponential(0.2, 99), 0.0),  # an exact zero must not break log bins
    }
    paths = write_report(results, tmp_path / "out", loss_histograms=losses, title="Digits, 10 % random")
    for name in ("report.md", "report.json", "metrics.png", "loss_histograms.png"):
        assert (tmp_path / "out" / name).is_file()
    for name in ("metrics.png", "loss_histograms.png"):
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths["json"] == tmp_path / "out" / "report.json"

    payload = json.loads((tmp_path / "out" / "report.json").read_text())
    assert payload["results"] == results
    assert payload["reference"] == "retrain" and payload["title"] == "Digits, 10 % random"
    assert payload["avg_gap"] == pytest.approx({"FT": 2.0, "GA": 11.0})
    assert payload["speedup"] == pytest.approx({"FT": 25.0})  # GA has no time

    markdown = (tmp_path / "out" / "report.md").read_text()
    assert markdown.startswith("# Digits, 10 % random")
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    assert "Avg. Gap" in table[0] and "Speed-up" in table[0] and "JS (nats)" in table[0]
    assert table[2].startswith("| retrain (reference) |")  # the reference row comes first
    ft_row = next(line for line in table if line.startswith("| FT |"))
    assert "| 2.00 |" in ft_row and "25.0×" in ft_row and "| 5.00 |" in ft_row
    ga_row = next(line for line in table if line.startswith("| GA |"))
    assert "| 11.00 |" in ga_row and ga_row.rstrip().endswith("| — | — |")  # no time, no speed-up
    assert "![metrics](metrics.png)" in markdown and "![loss_histograms](loss_histograms.png)" in markdown
    assert "Farther from the reference" not in markdown  # no original row: nothing to compare with

    # with the untouched original (gap 0.5): GA (11.00) ended farther, FT (2.00) too; a closer method is not named
    original = {**RETRAIN, "UA": 5.0, "MIA": 13.0}
    close = {**RETRAIN, "TA": 91.8}
    write_report({"retrain": RETRAIN, "original": original, "FT": FT, "GA": GA, "close": close}, tmp_path / "o")
    markdown = (tmp_path / "o" / "report.md").read_text()
    assert "**Farther from the reference than the untouched original (0.50):** FT (2.00), GA (11.00)." in markdown


def test_report_without_reference_or_histograms(tmp_path):
    results = {"FT": {**FT, "UA": np.float32(5.0)}}  # numpy scalars are written as plain floats
    write_report(results, tmp_path)
    payload = json.loads((tmp_path / "report.json").read_text())
    assert payload["results"]["FT"]["UA"] == 5.0
    assert payload["avg_gap"] == {} and payload["speedup"] == {}
    assert "No `retrain` result" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "metrics.png").is_file() and not (tmp_path / "loss_histograms.png").exists()
    with pytest.raises(ValueError):
        write_report({}, tmp_path)


def test_per_example_loss_matches_cross_entropy():
    torch.manual_seed(0)
    model = SmallCNNForImageClassification(SmallCNNConfig()).eval()
    data = load_digits_dataset()["test"].select(range(40)).with_format("torch")
    losses = per_example_loss(model, data, batch_size=16)
    with torch.no_grad():
        batch = data[:]
        logits = model(pixel_values=batch["pixel_values"]).logits
    expected = torch.nn.functional.cross_entropy(logits.double(), batch["labels"], reduction="none")
    assert losses.shape == (40,) and losses.dtype == np.float64
    np.testing.assert_allclose(losses, expected.numpy(), rtol=1e-5)


def test_class_removal_measures_and_names_test_accuracy_on_the_kept_classes(trained_model, digits, tmp_path):
    """After removing class 3 its test rows are wrong by design: TA leaves them out and every label says so."""
    from hf_unlearn.data.forget import indices_of_classes, split_forget_retain
    from hf_unlearn.evaluation import evaluate_unlearning

    model = trained_model.eval()
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.bias[3] = -1e4  # class 3 is never predicted, as after a removal
    forget, retain = split_forget_retain(digits["train"], indices_of_classes(digits["train"], [3]))
    test = digits["test"]
    row = evaluate_unlearning(model, forget, retain, test, forgotten_classes=[3])
    with torch.no_grad():
        batch = test[:]
        correct = model(pixel_values=batch["pixel_values"]).logits.argmax(-1) == batch["labels"]
    kept = batch["labels"] != 3
    assert row["TA"] == pytest.approx(100.0 * correct[kept].float().mean().item(), abs=1e-9)
    assert row["TA_all_classes"] == pytest.approx(100.0 * correct.float().mean().item(), abs=1e-9)
    assert row["TA"] - row["TA_all_classes"] > 5  # the class's share of the test set
    assert "TA_all_classes" not in evaluate_unlearning(model, forget, retain, test)  # sample removal: all classes

    write_report({"retrain": row, "pgu": {**row, "UA": 90.0}}, tmp_path / "kept")
    payload = json.loads((tmp_path / "kept" / "report.json").read_text())
    markdown = (tmp_path / "kept" / "report.md").read_text()
    assert payload["ta_label"] == "TA (kept classes)" and payload["results"]["pgu"]["TA"] == row["TA"]
    assert "| TA (kept classes, %) |" in markdown.splitlines()[2]
    assert "TA (kept classes) = test accuracy on the classes that were not removed" in markdown
    write_report({"retrain": RETRAIN}, tmp_path / "all")
    assert json.loads((tmp_path / "all" / "report.json").read_text())["ta_label"] == "TA"
    assert "kept classes" not in (tmp_path / "all" / "report.md").read_text()
    # one row on the kept classes and one on all classes would compare different things
    with pytest.raises(ValueError, match=r"TA of \['pgu'\] is on the kept classes, of \['retrain'\] on all"):
        write_report({"retrain": RETRAIN, "pgu": row}, tmp_path / "mixed")
    assert not (tmp_path / "mixed").exists()
