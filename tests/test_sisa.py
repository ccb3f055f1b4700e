"""SISA: a deletion retrains exactly the affected shards, and the result equals training them from scratch."""

import json

import pytest
import torch

from hf_unlearn.exact import SISAEnsemble, TrainingRecipe
from hf_unlearn.exact.sisa import SISA_CONFIG
from hf_unlearn.models import SmallCNNConfig

pytestmark = pytest.mark.usefixtures("one_thread")
RECIPE = TrainingRecipe(num_train_epochs=4, per_device_train_batch_size=32, learning_rate=3e-3, seed=0)


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sisa")
    train = digits["train"]
    ensemble = SISAEnsemble.train(SmallCNNConfig(), train, RECIPE, output_dir=folder, num_shards=3, num_slices=3)
    return ensemble, folder


def test_ensemble_predicts_well_and_both_aggregations_agree_mostly(trained, digits):
    ensemble, _ = trained
    labels = digits["test"][:]["labels"]
    mean = ensemble.predict(digits["test"], aggregation="mean")
    vote = ensemble.predict(digits["test"], aggregation="vote")
    assert (mean == labels).float().mean() > 0.85
    assert (vote == labels).float().mean() > 0.85
    with pytest.raises(ValueError, match="aggregation"):
        ensemble.predict(digits["test"], aggregation="median")


def test_vote_counts_shards_and_breaks_ties_by_mean_probability(trained, monkeypatch):
    ensemble, _ = trained
    probabilities = torch.tensor(
        [
            [[0.51, 0.0, 0.49], [0.0, 0.9, 0.1]],
            [[0.51, 0.0, 0.49], [0.1, 0.2, 0.7]],
            [[0.0, 0.0, 1.0], [0.4, 0.3, 0.3]],
        ]
    )  # example 0: two votes for class 0, the larger mean for class 2; example 1: one vote each for 1, 2, 0
    monkeypatch.setattr(ensemble, "shard_probabilities", lambda *a, **k: probabilities)
    assert ensemble.predict(None, aggregation="vote").tolist() == [0, 1]
    assert ensemble.predict(None, aggregation="mean").tolist() == [2, 1]
    probabilities[0, 1] = torch.tensor([0.0, 0.5, 0.5])  # votes still tied; the mean now favours class 2
    assert ensemble.predict(None, aggregation="vote").tolist() == [0, 2]


def test_deletion_retrains_only_the_affected_shard_and_equals_training_it_from_scratch(digits, tmp_path):
    train = digits["train"]
    ensemble = SISAEnsemble.train(
        SmallCNNConfig(), train, RECIPE, output_dir=tmp_path / "e", num_shards=3, num_slices=3
    )
    shard = 1
    forget = ensemble.state["assignment"][shard][1][:4]  # slice 1 of shard 1: slice 0 stays, slices 1-2 retrain
    before = [_weights(ensemble._final(s)) for s in range(3)]
    checkpoint_0 = (ensemble.stage_dir(shard, 0) / "model.safetensors").read_bytes()
    report = ensemble.unlearn(forget)
    assert report["shards_retrained"] == [shard] and report["stages_retrained"] == 2
    assert (ensemble.stage_dir(shard, 0) / "model.safetensors").read_bytes() == checkpoint_0
    for other in (0, 2):
        assert _equal(_weights(ensemble._final(other)), before[other])
    assert not _equal(_weights(ensemble._final(shard)), before[shard])
    from_scratch = ensemble.retrain_shard(shard, from_slice=0, output_dir=tmp_path / "scratch")
    assert _equal(_weights(from_scratch), _weights(ensemble._final(shard)))
    assert not set(forget) & set(ensemble.live_indices(shard, 2))

    # a saved ensemble loads with the same predictions and refuses the same request twice
    loaded = SISAEnsemble.from_pretrained(tmp_path / "e", train)
    assert torch.equal(loaded.predict(digits["test"]), ensemble.predict(digits["test"]))
    with pytest.raises(ValueError, match="already deleted"):
        loaded.unlearn(forget[:1])


def test_bad_requests_are_refused_before_anything_changes(trained, digits):
    ensemble, folder = trained
    state = (folder / SISA_CONFIG).read_text()
    with pytest.raises(ValueError, match="empty"):
        ensemble.unlearn([])
    with pytest.raises(ValueError, match="outside the training set"):
        ensemble.unlearn([len(digits["train"])])
    with pytest.raises(ValueError, match="not in the training set"):
        ensemble.unlearn(digits["test"].select(range(3)))
    assert (folder / SISA_CONFIG).read_text() == state
    rows = digits["train"].select([5, 17])
    resolved = ensemble.resolve(rows)  # a row is matched on its contents: exact duplicates are deleted with it
    assert {5, 17} <= set(resolved)
    for index in resolved:
        row = digits["train"][index]
        assert any(torch.equal(row["pixel_values"], r["pixel_values"]) and row["labels"] == r["labels"] for r in rows)
    with pytest.raises(ValueError, match="not the training set"):
        SISAEnsemble.from_pretrained(folder, digits["train"].select(range(100)))
    with pytest.raises(ValueError, match="train_dataset"):
        SISAEnsemble.from_pretrained(folder).unlearn([0])


def test_an_interrupted_deletion_is_finished_on_load(digits, tmp_path, monkeypatch):
    train = digits["train"]
    ensemble = SISAEnsemble.train(
        SmallCNNConfig(), train, RECIPE, output_dir=tmp_path / "e", num_shards=2, num_slices=2
    )
    forget = ensemble.state["assignment"][0][1][:3]

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-deletion")

    monkeypatch.setattr(SISAEnsemble, "retrain_shard", crash)
    with pytest.raises(KeyboardInterrupt):
        ensemble.unlearn(forget)
    state = json.loads((tmp_path / "e" / SISA_CONFIG).read_text())
    assert state["pending"] == [0] and set(forget) <= set(state["deleted"])
    monkeypatch.undo()
    with pytest.raises(ValueError, match="pending"):
        SISAEnsemble.from_pretrained(tmp_path / "e")
    loaded = SISAEnsemble.from_pretrained(tmp_path / "e", train)
    assert loaded.state["pending"] == []
    from_scratch = loaded.retrain_shard(0, from_slice=0, output_dir=tmp_path / "scratch")
    assert _equal(_weights(from_scratch), _weights(loaded._final(0)))


def test_a_missing_shard_model_is_found_at_load_and_repaired_on_request(digits, tmp_path):
    train = digits["train"].select(range(240))
    recipe = TrainingRecipe(num_train_epochs=1, per_device_train_batch_size=32, seed=0)
    ensemble = SISAEnsemble.train(SmallCNNConfig(), train, recipe, output_dir=tmp_path / "e", num_shards=2,
                                  num_slices=2)
    expected = _weights(ensemble._final(0))
    (ensemble.stage_dir(0, 1) / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"cannot be used: shard 0: .*slice-1/model.safetensors is missing.*repair"):
        SISAEnsemble.from_pretrained(tmp_path / "e")
    repaired = SISAEnsemble.from_pretrained(tmp_path / "e", train, repair=True)
    assert _equal(_weights(repaired._final(0)), expected)  # retrained from slice 0's checkpoint: the same model
    altered = ensemble.stage_dir(1, 1) / "model.safetensors"
    altered.write_bytes(altered.read_bytes()[:-8] + bytes(8))
    with pytest.raises(ValueError, match=r"shard 1: .*does not match its recorded checksum"):
        SISAEnsemble.from_pretrained(tmp_path / "e")


def test_a_deletion_behind_a_missing_checkpoint_reports_the_stages_it_retrained(digits, tmp_path):
    import shutil

    train = digits["train"].select(range(240))
    recipe = TrainingRecipe(num_train_epochs=1, per_device_train_batch_size=32, seed=0)
    ensemble = SISAEnsemble.train(SmallCNNConfig(), train, recipe, output_dir=tmp_path / "e", num_shards=2,
                                  num_slices=2)
    shutil.rmtree(ensemble.stage_dir(0, 0))  # the checkpoint a deletion in slice 1 would start from
    report = ensemble.unlearn(ensemble.state["assignment"][0][1][:2])
    assert report["shards_retrained"] == [0] and report["stages_retrained"] == 2  # retrained whole: both stages
    assert ensemble.stage_problem(0, 0) is None and ensemble.stage_problem(0, 1) is None
