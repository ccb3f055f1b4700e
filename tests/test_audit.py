"""The audit end to end on digits with tiny N and very short training: scores, cache, report, refusals, CLI."""

import json

import pytest
from digits_models import fit_small_cnn

from hf_unlearn.audit import LibraryUnlearning, run_audit
from hf_unlearn.cli import COMMANDS
from hf_unlearn.data.forget import random_indices


class CountingTrainer:
    """(dataset, seed) -> small CNN in a plain torch loop (a fraction of a second), counting its calls."""

    def __init__(self):
        self.seeds = []

    def __call__(self, dataset, seed):
        self.seeds.append(seed)
        return fit_small_cnn(dataset["pixel_values"], dataset["labels"], epochs=2, seed=seed)


class CountingUnlearning(LibraryUnlearning):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.runs = []

    def __call__(self, model, method, forget, retain, seed):
        self.runs.append((method, seed))
        return super().__call__(model, method, forget, retain, seed)


@pytest.fixture
def audit_setup(digits, one_thread):
    train = digits["train"].select(range(400))
    return train, random_indices(len(train), 0.05, 0), digits["test"]


def test_the_audit_scores_caches_and_reports(audit_setup, tmp_path):
    train, forget, test = audit_setup
    trainer, unlearn = CountingTrainer(), CountingUnlearning(train)
    report = run_audit(trainer, train, forget, test, output_dir=tmp_path, methods=["none", "finetune"],
                       num_models=4, unlearn=unlearn, ceiling=True, progress=False)
    # the original once, 4 retrains, 4 more for the ceiling (seeds apart); 4 unlearning runs, none for "none"
    assert len(trainer.seeds) == 9 and len(set(trainer.seeds)) == 9
    assert sorted(unlearn.runs) == [("finetune", s) for s in range(4)]
    families = report["families"]
    assert list(families) == ["none", "finetune", "ceiling"]
    # doing nothing: the same model N times, a point mass at every example: every example is given away
    assert families["none"]["forget_score"] == 0.0 and families["none"]["final_score"] == 0.0
    assert families["none"]["ulira"]["model_auc"] == 1.0 and families["none"]["spread_ratio"] == 0.0
    assert families["ceiling"]["forget_score"] > 0
    # the report names forget examples by their index in the training set
    worst = families["finetune"]["most_distinguishable"]
    assert worst and {e["index"] for e in worst} <= set(forget)
    assert report["setup"]["forget_indices"] == sorted(forget)
    assert [s["num_models"] for s in families["finetune"]["by_num_models"]] == [4]
    assert sum(h["examples"] for h in families["finetune"]["epsilon_histogram"]) == len(forget)
    text = (tmp_path / "report.md").read_text()
    assert f"| {worst[0]['index']} |" in text and "## finetune" in text
    assert json.loads((tmp_path / "report.json").read_text())["families"]["none"]["forget_score"] == 0.0

    # a rerun trains nothing and reports the same; one more model trains one of each
    again_trainer, again_unlearn = CountingTrainer(), CountingUnlearning(train)
    again = run_audit(again_trainer, train, forget, test, output_dir=tmp_path, methods=["none", "finetune"],
                      num_models=4, unlearn=again_unlearn, ceiling=True, progress=False)
    assert again_trainer.seeds == [] and again_unlearn.runs == []
    assert again["families"]["finetune"]["forget_score"] == families["finetune"]["forget_score"]
    more_trainer, more_unlearn = CountingTrainer(), CountingUnlearning(train)
    more = run_audit(more_trainer, train, forget, test, output_dir=tmp_path, methods=["none", "finetune"],
                     num_models=5, unlearn=more_unlearn, progress=False)
    assert more_trainer.seeds == [5] and more_unlearn.runs == [("finetune", 4)]
    assert [s["num_models"] for s in more["families"]["finetune"]["by_num_models"]] == [4, 5]

    # another forget set is another audit: nothing is reused
    other_trainer = CountingTrainer()
    run_audit(other_trainer, train, forget[1:], test, output_dir=tmp_path, methods=["none"], num_models=3,
              progress=False)
    assert len(other_trainer.seeds) == 4


def test_the_default_path_runs_with_its_space_built_once(audit_setup, tmp_path):
    train, forget, test = audit_setup
    trainer = CountingTrainer()
    report = run_audit(trainer, train, forget, test, output_dir=tmp_path, methods=["auto"], num_models=3,
                       progress=False)
    spaces = list((tmp_path / "cache").glob("*/original/space/cgs_config.json"))
    assert len(spaces) == 1
    family = report["families"]["auto"]
    assert family["ulira"] is None  # 3 models a side leave too few shadows for the attack; the score still runs
    assert 0 <= family["forget_score"] <= 1 and family["incomplete_runs"] is not None


def test_bad_requests_are_refused_before_any_training(audit_setup, tmp_path):
    train, forget, test = audit_setup
    trainer = CountingTrainer()
    with pytest.raises(ValueError, match="cannot be audited"):
        run_audit(trainer, train, forget, test, output_dir=tmp_path, methods=["nonsense"], progress=False)
    with pytest.raises(ValueError, match="cannot be audited"):
        run_audit(trainer, train, forget, test, output_dir=tmp_path, methods=["ceiling"], progress=False)
    with pytest.raises(ValueError, match="at least 3"):
        run_audit(trainer, train, forget, test, output_dir=tmp_path, num_models=2, progress=False)
    with pytest.raises(ValueError, match="proper subset"):
        run_audit(trainer, train, [len(train)], test, output_dir=tmp_path, progress=False)
    assert trainer.seeds == []


def test_the_command_runs_on_digits(tmp_path, one_thread, capsys):
    from hf_unlearn.scripts.audit import main

    assert COMMANDS["audit"] == "hf_unlearn.scripts.audit"
    report = main(["--num_models", "3", "--num_train_epochs", "1", "--methods", "none,finetune",
                   "--forget_fraction", "0.05", "--output_dir", str(tmp_path), "--no_progress"])
    assert report["families"]["none"]["forget_score"] == 0.0
    assert (tmp_path / "report.md").is_file()
    assert "| finetune |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--methods", "none,unknown", "--output_dir", str(tmp_path)])
    assert "unknown methods ['unknown']" in capsys.readouterr().err
