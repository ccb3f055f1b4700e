"""Pushing an unlearned model to the Hub, for real through ``huggingface_hub``, against a local fake Hub.

The fake Hub (``tests/hub_server.py``) runs on 127.0.0.1 and stores what it receives; every other
connection is refused for the duration of the test, so nothing can reach the real network.
"""

import dataclasses
import json
import socket

import pytest
import torch
import transformers.utils.hub
import yaml
from card_fixtures import COMPARISON, card_data
from hub_server import FakeHub, git_blob_oid
from huggingface_hub import _upload_pipeline, constants
from huggingface_hub.utils import _detect_agent
from huggingface_hub.utils._runtime import is_xet_available
from safetensors.torch import load as load_safetensors

from hf_unlearn import CoreGradientSpace, UnlearningArguments, UnlearningTrainer
from hf_unlearn.cards.model_card import comparison_table, render_model_card
from hf_unlearn.data.forget import indices_of_classes, split_forget_retain

REPO_ID = "someone/digits-unlearned"
# by hand: pgu (|98-100| + |98.5-99| + |97-97.5| + |96-100|) / 4 = (2 + 0.5 + 0.5 + 4) / 4 = 1.75
#          original (99 + 1 + 0.5 + 98) / 4 = 49.625 -> "49.62" (round half to even on the binary value)
PGU_ROW = "| pgu | 98.00 | 98.50 | 97.00 | 96.00 | 1.75 |"
RETRAIN_ROW = "| retrain | 100.00 | 99.00 | 97.50 | 100.00 |  |"
ORIGINAL_ROW = "| original | 1.00 | 100.00 | 98.00 | 2.00 | 49.62 |"
NOT_MEASURED = "Not measured in this run: no model retrained without the forget set was evaluated."
UNKNOWN_CLOSENESS = "closeness to retraining is unknown"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class _NoXetSession:
    """Stands in for hf_xet's session in the upload pipeline: opening an upload fails the test."""

    def __init__(self):
        self.requested = 0  # the pipeline asks for the session once per push, before it knows the upload modes

    def __call__(self):
        self.requested += 1
        return self

    def new_upload_commit(self, *args, **kwargs):
        raise AssertionError("hf_xet was asked to upload a file; every file should have gone inline")


@pytest.fixture
def no_remote_connections(monkeypatch):
    """Refuse any name lookup or socket connection that is not for the loopback interface."""
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            raise AssertionError(f"The test tried to reach {address}: only the local fake Hub is allowed")
        return connect(sock, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host not in LOOPBACK:
            raise AssertionError(f"The test tried to resolve {host!r}: only the local fake Hub is allowed")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)


@pytest.fixture
def xet_spy(monkeypatch):
    spy = _NoXetSession()
    monkeypatch.setattr(_upload_pipeline, "get_xet_session", spy)
    return spy


@pytest.fixture
def hub(tmp_path, monkeypatch, no_remote_connections, xet_spy):
    """The fake Hub, with huggingface_hub and transformers pointed at it (restored afterwards)."""
    home = tmp_path / "hf_home"
    with FakeHub() as server:
        # Environment, for anything that reads it at call time (the token, hf_xet's cache) ...
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.setenv("HF_HOME", str(home))
        monkeypatch.setenv("HF_TOKEN", "hf_fake")
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        for name in ("TRANSFORMERS_OFFLINE", "HF_OIDC_RESOURCE", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_DISABLE_XET"):
            monkeypatch.delenv(name, raising=False)
        # ... and huggingface_hub's constants, which were read from it at import time.
        monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HOME", str(home))
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
        monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
        monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(home / ".agent_harnesses.json"))
        monkeypatch.setattr(_detect_agent, "_registry", None)  # fetched once per process: from here, then forgotten
        # transformers caches one HfApi (with its endpoint) for the process: start from a fresh one.
        monkeypatch.setattr(transformers.utils.hub, "_hf_api", None)
        yield server


def _card(files: dict[str, bytes]) -> str:
    return files["README.md"].decode()


def test_trainer_pushes_model_space_and_an_honest_card(hub, xet_spy, trained_model, digits, tmp_path, one_thread):
    forget, retain = split_forget_retain(digits["train"], indices_of_classes(digits["train"], [3]))
    args = UnlearningArguments(
        output_dir=str(tmp_path / "run"), method="pgu", disable_tqdm=True, seed=0, logging_strategy="no",
        save_strategy="epoch", push_to_hub=True, hub_model_id=REPO_ID, hub_strategy="end",
        push_core_gradient_space=True, acknowledge_space_history=True,  # it records the request: see below
    )
    trainer = UnlearningTrainer(
        model=trained_model, args=args, forget_dataset=forget, retain_dataset=retain,
        eval_dataset=digits["validation"], original_dataset=digits["train"],
    )
    assert "/api/repos/create" in [r.path for r in hub.requests]  # the Trainer creates the repo up front
    trainer.train()
    assert list((tmp_path / "run").glob("checkpoint-*")), "the run should leave checkpoints to be ignored"
    assert trainer.comparison is None

    # 1. save_model() pushes by itself when push_to_hub=True
    trainer.save_model()
    assert len(hub.commits) == 1 and hub.commits[0].summary == "Model save"
    files = hub.files(REPO_ID)
    assert {"README.md", "config.json", "model.safetensors",
            "core_gradient_space/cgs_config.json", "core_gradient_space/cgs.safetensors"} <= set(files)
    assert not [p for p in files if p.startswith("checkpoint-") or p.startswith("_")]
    assert (tmp_path / "run" / "training_args.bin").is_file() and "training_args.bin" not in files  # stays local

    weights = load_safetensors(files["model.safetensors"])
    for name, param in trainer.model.state_dict().items():
        torch.testing.assert_close(weights[name], param, rtol=0, atol=0)
    assert json.loads(files["config.json"])["model_type"] == trained_model.config.model_type
    space_config = json.loads(files["core_gradient_space/cgs_config.json"])
    assert len(space_config["ledger"]) == 1 and space_config["ledger"][0]["num_examples"] == len(forget)
    # the published space is float32 (half the size); the local one keeps float64
    grams = {k: v for k, v in load_safetensors(files["core_gradient_space/cgs.safetensors"]).items()
             if k.startswith("gram.")}
    assert grams and {v.dtype for v in grams.values()} == {torch.float32}
    assert space_config["gram_dtype"] == "float32"
    for name, gram in trainer.core_gradient_space.grams.items():
        torch.testing.assert_close(grams[f"gram.{name}"], gram.float(), rtol=0, atol=0)

    card = _card(files)
    request = trainer.core_gradient_space.ledger[0]
    assert card.startswith("---\n") and "- pgu\n" in card  # the method is a tag in the metadata
    assert "with the method `pgu` (class removal)" in card
    assert f"{len(forget)} training examples were removed" in card
    assert f"| 1 | {len(forget)} | {request['created_at']} | {request['note']} |" in card
    assert f"pgu: {len(forget)} examples" in request["note"]
    assert NOT_MEASURED in card and UNKNOWN_CLOSENESS in card and "Avg. Gap" not in card
    assert card == (tmp_path / "run" / "README.md").read_text()
    assert set(hub.validated_cards) == {card}  # the client checked the metadata before uploading

    # 2. with a measured comparison, an explicit push_to_hub() updates the card
    trainer.comparison = COMPARISON
    trainer.push_to_hub(commit_message="Add comparison", dataset_tags="someone/digits")
    assert len(hub.commits) == 2 and hub.commits[1].summary == "Add comparison"
    assert "README.md" in hub.commits[1].files
    assert "model.safetensors" not in hub.commits[1].files  # unchanged: the client dropped it (oid match)
    card = _card(hub.files(REPO_ID))
    assert "| model | UA | RA | TA | MIA | Avg. Gap |" in card
    assert PGU_ROW in card and RETRAIN_ROW in card and ORIGINAL_ROW in card
    assert NOT_MEASURED not in card and UNKNOWN_CLOSENESS not in card
    assert "compare it with such a model, retrained in the same run" in card
    assert "datasets:\n- someone/digits\n" in card  # the training data, named as the Trainer's card would

    # the traffic: only the known routes, always with the token, the files sent inline (no LFS, no Xet)
    assert hub.unknown == []
    paths = [r.path for r in hub.requests]
    history = {f"/api/models/{REPO_ID}/commits/main"} | {f"/api/models/{REPO_ID}/tree/{c.oid}" for c in hub.commits}
    assert set(paths) <= {"/api/agent-harnesses", "/api/repos/create", "/api/validate-yaml",
                          f"/api/models/{REPO_ID}/preupload/main", f"/api/models/{REPO_ID}/commit/main", *history}
    # the user-agent's harness registry is fetched without credentials; everything else carries the token
    assert {r.authorization for r in hub.requests if r.path != "/api/agent-harnesses"} == {"Bearer hf_fake"}
    assert paths.count("/api/repos/create") == 1
    assert paths.count(f"/api/models/{REPO_ID}/preupload/main") == 2
    assert paths.count(f"/api/models/{REPO_ID}/commit/main") == 2
    assert not [p for p in paths if "xet" in p or "lfs" in p or p.endswith(".git/info/lfs/objects/batch")]
    assert all(not c.lfs_files for c in hub.commits)
    # with hf_xet installed the push went through its pipeline, which never opened a Xet upload
    assert xet_spy.requested == (2 if is_xet_available() else 0)
    local = tmp_path / "run"
    for path, content in hub.files(REPO_ID).items():
        if not path.startswith("core_gradient_space/"):  # published in float32, see above
            assert git_blob_oid(content) == git_blob_oid((local / path).read_bytes()), path


def test_comparison_table_avg_gap_by_hand():
    table = comparison_table(COMPARISON).splitlines()
    assert table[0] == "| model | UA | RA | TA | MIA | Avg. Gap |"
    assert table[1] == "|---|---|---|---|---|---|"
    assert table[2:] == [ORIGINAL_ROW, RETRAIN_ROW, PGU_ROW]
    # without a retrained reference there is no gap to report
    alone = comparison_table({"pgu": COMPARISON["pgu"]}).splitlines()
    assert alone[2] == "| pgu | 98.00 | 98.50 | 97.00 | 96.00 |  |"
    # a metric that was not measured leaves its cell and the gap empty instead of failing
    partial = {"retrain": COMPARISON["retrain"], "pgu": {"UA": 98.0, "RA": 98.5, "TA": 97.0}}
    assert comparison_table(partial).splitlines()[3] == "| pgu | 98.00 | 98.50 | 97.00 |  |  |"


def test_render_model_card_on_hand_made_numbers():
    ledger = [{"request": 1, "num_examples": 7, "created_at": "2025-01-02T03:04:05", "note": "pgu: 7 examples"}]
    card = render_model_card(card_data(COMPARISON, ledger, model_name="digits-unlearned"))
    # huggingface_hub's ModelCardData writes its keys in its own order: the base model first
    assert card.startswith("---\nbase_model: org/base-model\nlibrary_name: transformers\ntags:\n")
    assert "# digits-unlearned\n" in card
    assert "This model is **org/base-model** after machine unlearning" in card
    assert "7 training examples were removed with the method `pgu` (samples removal)" in card
    assert "| 1 | 7 | 2025-01-02T03:04:05 | pgu: 7 examples |" in card
    assert "gamma=0.8, energy `sigma`" in card
    assert "stopped at epoch 3" in card and "12.3 s" in card
    assert "`pgu_delta`=0.05" in card  # the method's own hyperparameters
    assert "https://arxiv.org/abs/2312.04095" in card and "@inproceedings{hoang2024," in card  # its paper
    assert PGU_ROW in card and RETRAIN_ROW in card and "Avg. Gap = mean |metric − retrained model's metric|" in card
    assert NOT_MEASURED not in card
    assert "Closer to retraining than the original: Avg. Gap 1.75 against the untouched original's 49.62." in card
    # a run that ended farther from the retrained model than the original says so in words, not only in the table
    worse = {**COMPARISON, "original": {"UA": 99.0, "RA": 99.0, "TA": 97.5, "MIA": 100.0}}  # gap 0.25
    card = render_model_card(card_data(worse))
    assert "**Farther from retraining than the original:** Avg. Gap 1.75 against the untouched original's 0.25" in card
    # a request that took no step: the unlearned model is the original, neither closer nor farther
    unchanged = {**COMPARISON, "original": dict(COMPARISON["pgu"])}
    card = render_model_card(card_data(unchanged))
    assert "As far from retraining as the original: Avg. Gap 1.75, the untouched original's too" in card
    assert "Closer to retraining" not in card and "Farther from retraining" not in card
    incomplete = {k: v for k, v in COMPARISON.items() if k != "original"}
    assert "than the original" not in render_model_card(card_data(incomplete))

    plain = render_model_card(card_data(projection=None))
    assert "# my-model\n" in plain
    assert "| 1 | 7 | this run | no Core Gradient Space was used |" in plain
    assert "This run used no Core Gradient Space" in plain
    assert "none beyond the method's own loss" in plain
    assert NOT_MEASURED in plain and UNKNOWN_CLOSENESS in plain and "Avg. Gap" not in plain


def _class_removed_for_a_push(model, digits, tmp_path):
    """Two PGU steps removing class 3, with a Hub repo named: a run to push."""
    forget, retain = split_forget_retain(digits["train"], indices_of_classes(digits["train"], [3]))
    args = UnlearningArguments(output_dir=str(tmp_path / "run"), method="pgu", disable_tqdm=True, seed=0,
                               logging_strategy="no", hub_model_id=REPO_ID, max_steps=2)
    trainer = UnlearningTrainer(model=model, args=args, forget_dataset=forget, retain_dataset=retain,
                                eval_dataset=digits["validation"], original_dataset=digits["train"])
    trainer.train()
    return trainer


def test_push_saves_first_so_an_offline_push_loses_nothing(trained_model, digits, tmp_path, no_remote_connections,
                                                            monkeypatch, one_thread):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    trainer = _class_removed_for_a_push(trained_model, digits, tmp_path)
    with pytest.raises(Exception, match="(?i)offline"):
        trainer.push_to_hub()
    out = tmp_path / "run"
    assert (out / "model.safetensors").is_file() and (out / "core_gradient_space" / "cgs_config.json").is_file()
    assert (out / "README.md").is_file()


def test_card_metadata_holds_the_measured_metrics_and_names_adapters():
    metadata = yaml.safe_load(render_model_card(card_data(COMPARISON)).split("---")[1])
    [entry] = metadata["model-index"]
    values = {m["type"]: m["value"] for m in entry["results"][0]["metrics"]}
    assert values == {"ua": 98.0, "ra": 98.5, "ta": 97.0, "mia": 96.0, "avg_gap": 1.75}  # the pgu row, by hand
    assert metadata["library_name"] == "transformers"
    assert "model-index" not in yaml.safe_load(render_model_card(card_data()).split("---")[1])  # nothing measured
    adapter = dataclasses.replace(card_data(), adapter=True)
    assert yaml.safe_load(render_model_card(adapter).split("---")[1])["library_name"] == "peft"
    # an adapter merged before unlearning: a full model whose Hub base is the adapter's base, and the card says so
    merged = render_model_card(dataclasses.replace(card_data(), merged_adapter_base="org/base-model"))
    merged_metadata = yaml.safe_load(merged.split("---")[1])
    assert merged_metadata["base_model"] == "org/base-model" and merged_metadata["library_name"] == "transformers"
    assert "The LoRA adapter was merged into its base, org/base-model, before unlearning" in merged
    # an undefined MIA (one kept class) is left out of the metadata and the gap, and reads n/a in the table
    nan = float("nan")
    one_class = {name: {**row, "MIA": nan} for name, row in COMPARISON.items()}
    card = render_model_card(card_data(one_class))
    [entry] = yaml.safe_load(card.split("---")[1])["model-index"]
    values = {m["type"]: m["value"] for m in entry["results"][0]["metrics"]}
    assert "mia" not in values and values["avg_gap"] == pytest.approx(1.0)  # (2 + 0.5 + 0.5) / 3
    assert "| pgu | 98.00 | 98.50 | 97.00 | n/a | 1.00 |" in card


def test_the_card_says_where_the_space_is_and_records_nothing_for_a_run_that_did_not_unlearn():
    kept = render_model_card(dataclasses.replace(card_data(), unlearned=True))
    assert "stays with the model's owner and is not published" in kept and "`core_gradient_space/` keeps" not in kept
    published = render_model_card(dataclasses.replace(card_data(), unlearned=True, space_published=True))
    assert "`core_gradient_space/` keeps only" in published and "have been subtracted" in published
    nothing = render_model_card(dataclasses.replace(card_data(), unlearned=False, space_published=True))
    assert "| — | 0 | — | nothing recorded: this run did not unlearn |" in nothing
    assert "have been subtracted" not in nothing and "| 1 | 7 |" not in nothing


def test_a_card_says_when_the_removal_is_incomplete():
    text = "the forgotten classes are still predicted on 54.3 % of the forget sample"
    card = render_model_card(dataclasses.replace(card_data(), unlearned=True, incomplete=text))
    assert f"**Removal incomplete:** the run ended before its stop rule was met; {text}." in card
    assert "Removal incomplete" not in render_model_card(dataclasses.replace(card_data(), unlearned=True))


def test_dry_run_stages_exactly_what_a_push_uploads(trained_model, digits, tmp_path, no_remote_connections, one_thread):
    forget, retain = split_forget_retain(digits["train"], indices_of_classes(digits["train"], [3]))
    args = UnlearningArguments(output_dir=str(tmp_path / "run"), method="pgu", disable_tqdm=True, seed=0,
                               logging_strategy="no", max_steps=2, save_strategy="steps", save_steps=1)
    trainer = UnlearningTrainer(model=trained_model, args=args, forget_dataset=forget, retain_dataset=retain,
                                eval_dataset=digits["validation"], original_dataset=digits["train"])
    trainer.train()
    files = trainer.stage_for_hub(tmp_path / "staged")
    assert set(files) >= {"README.md", "config.json", "model.safetensors"}
    assert files == sorted(p.relative_to(tmp_path / "staged").as_posix()
                           for p in (tmp_path / "staged").rglob("*") if p.is_file())
    local = tmp_path / "run"
    assert (local / "training_args.bin").is_file() and list(local.glob("checkpoint-*"))
    assert (local / "core_gradient_space" / "cgs_config.json").is_file()
    # left out: the pickled arguments, checkpoints and, unless asked for, the space
    assert not [f for f in files if f == "training_args.bin" or f.startswith(("checkpoint-", "core_gradient_space"))]
    for name in files:
        assert (tmp_path / "staged" / name).read_bytes() == (local / name).read_bytes()
    with pytest.raises(ValueError, match="not empty"):
        trainer.stage_for_hub(tmp_path / "staged")
    with pytest.raises(ValueError, match="outside the output folder"):
        trainer.stage_for_hub(local / "inside")
    trainer.args.push_core_gradient_space = True
    files = trainer.stage_for_hub(tmp_path / "with_space")
    assert {"core_gradient_space/cgs_config.json", "core_gradient_space/cgs.safetensors"} <= set(files)
    published = CoreGradientSpace.from_pretrained(tmp_path / "with_space" / "core_gradient_space", trained_model)
    assert published.ledger == trainer.core_gradient_space.ledger
    size = (tmp_path / "with_space" / "core_gradient_space" / "cgs.safetensors").stat().st_size
    assert size < 0.6 * (local / "core_gradient_space" / "cgs.safetensors").stat().st_size  # float32 Grams


def test_a_card_names_a_local_base_model_by_its_folder_only(tmp_path):
    local = tmp_path / "private" / "my-finetuned-model"
    local.mkdir(parents=True)
    card = render_model_card(dataclasses.replace(card_data(), base_model=str(local)))
    assert str(tmp_path) not in card and "a local model (my-finetuned-model)" in card
    assert "base_model:" not in card  # not a Hub id: no metadata link


def test_cgs_push_uploads_a_verified_space_only(hub, trained_model, digits, tmp_path):
    from hf_unlearn import CoreGradientSpace
    from hf_unlearn.scripts import cgs

    folder = tmp_path / "space"
    CoreGradientSpace.from_model(trained_model, digits["train"], show_progress=False).save_pretrained(folder)
    (folder / "notes.txt").write_text("private notes")
    cgs.main(["push", str(folder), "--repo_id", REPO_ID])
    files = hub.files(REPO_ID)
    assert set(files) == {"core_gradient_space/cgs_config.json", "core_gradient_space/cgs.safetensors"}
    assert files["core_gradient_space/cgs.safetensors"] == (folder / "cgs.safetensors").read_bytes()
    (folder / "cgs.safetensors").write_bytes(b"corrupted")
    with pytest.raises(ValueError, match="does not match the checksum"):
        cgs.main(["push", str(folder), "--repo_id", REPO_ID])


def test_sisa_ensemble_pushes_final_models_and_a_card_with_its_deletions(hub, digits, tmp_path, one_thread):
    from hf_unlearn.exact import SISAEnsemble, TrainingRecipe
    from hf_unlearn.models import SmallCNNConfig

    train = digits["train"].select(range(200))
    recipe = TrainingRecipe(num_train_epochs=1, per_device_train_batch_size=32)
    ensemble = SISAEnsemble.train(SmallCNNConfig(), train, recipe, output_dir=tmp_path / "e", num_shards=2,
                                  num_slices=2)
    ensemble.unlearn([3, 4])
    ensemble.push_to_hub(REPO_ID)
    files = hub.files(REPO_ID)
    weights = {f"shard-{s}/slice-1/model.safetensors" for s in (0, 1)}
    assert weights | {"sisa_config.json", "config.json", "README.md"} <= set(files)
    assert not any("slice-0" in name for name in files)  # checkpoints stay home unless asked
    for name in weights:
        assert files[name] == (tmp_path / "e" / name).read_bytes()
    card = files["README.md"].decode()
    assert "2 shard models" in card and "Deletions carried out: 2 examples in 1 request(s)" in card
    ensemble.push_to_hub(REPO_ID, include_checkpoints=True)
    assert {f"shard-{s}/slice-0/model.safetensors" for s in (0, 1)} <= set(hub.files(REPO_ID))


def test_a_card_says_how_the_step_moved():
    data = dataclasses.replace(card_data(), unlearned=True, outcome="forget accuracy reached the target")
    plain = render_model_card(data)
    assert "The run ended because forget accuracy reached the target." in plain
    both = render_model_card(dataclasses.replace(data, backtracks=1, growths=2))
    assert ("The run ended because forget accuracy reached the target (the utility guard rolled back 1 time(s); "
            "the step doubled 2 time(s) while the forget set's confidence stalled).") in both


def test_a_space_is_not_pushed_where_an_earlier_version_may_be_public_unless_acknowledged(
    hub, trained_model, digits, tmp_path, one_thread
):
    from hf_unlearn.core import collect_gram_matrices, fingerprint_examples
    from hf_unlearn.scripts import cgs

    space = CoreGradientSpace.from_model(trained_model, digits["train"], show_progress=False)
    space.save_pretrained(tmp_path / "before")
    cgs.main(["push", str(tmp_path / "before"), "--repo_id", REPO_ID])  # a fresh space to an empty repo: fine
    forget = digits["train"].select([7])  # one person asks to be forgotten
    stats = collect_gram_matrices(trained_model, forget.select_columns(["pixel_values"]), show_progress=False)
    space.subtract(stats, fingerprint_examples(forget, space.fingerprint_columns))
    space.save_pretrained(tmp_path / "after")
    commits = len(hub.commits)
    with pytest.raises(ValueError, match=r"records 1 served request.*already holds a Core Gradient Space in its "
                                         r"history.*--acknowledge_space_history"):
        cgs.main(["push", str(tmp_path / "after"), "--repo_id", REPO_ID])
    with pytest.raises(ValueError, match="records 1 served request"):  # a new repo: the old version may be public
        cgs.main(["push", str(tmp_path / "after"), "--repo_id", "someone/elsewhere"])
    with pytest.raises(ValueError, match="already holds a Core Gradient Space in its history"):
        cgs.main(["push", str(tmp_path / "before"), "--repo_id", REPO_ID])  # pushed again: history holds one
    assert len(hub.commits) == commits  # nothing was uploaded
    cgs.main(["push", str(tmp_path / "after"), "--repo_id", REPO_ID, "--acknowledge_space_history", "true"])
    assert len(hub.commits) == commits + 1 and hub.unknown == []


def test_the_trainer_refuses_to_push_a_space_that_records_a_request_unless_acknowledged(
    hub, trained_model, digits, tmp_path, one_thread
):
    forget, retain = split_forget_retain(digits["train"], indices_of_classes(digits["train"], [3]))
    args = UnlearningArguments(output_dir=str(tmp_path / "run"), method="pgu", disable_tqdm=True, seed=0,
                               logging_strategy="no", hub_model_id=REPO_ID, push_core_gradient_space=True)
    trainer = UnlearningTrainer(model=trained_model, args=args, forget_dataset=forget, retain_dataset=retain,
                                eval_dataset=digits["validation"], original_dataset=digits["train"])
    trainer.train()
    with pytest.raises(ValueError, match="Not publishing the Core Gradient Space to someone/digits-unlearned"):
        trainer.push_to_hub()
    assert hub.commits == [] and (tmp_path / "run" / "model.safetensors").is_file()  # saved, not pushed
    trainer.args.push_core_gradient_space = False  # the model alone is pushed as before
    trainer.push_to_hub()
    assert "model.safetensors" in hub.files(REPO_ID) and "core_gradient_space/cgs.safetensors" not in hub.files(REPO_ID)


@pytest.fixture
def unreachable_hub(tmp_path, monkeypatch, no_remote_connections):
    """An endpoint on 127.0.0.1 where nothing listens: every connection is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setattr(transformers.utils.hub, "_hf_api", None)
    return endpoint


def test_an_unreachable_hub_is_named_with_the_fix_and_the_model_stays_saved(
    unreachable_hub, trained_model, digits, tmp_path, one_thread
):
    from hf_unlearn.scripts import cgs

    trainer = _class_removed_for_a_push(trained_model, digits, tmp_path)
    with pytest.raises(ConnectionError, match=rf"Could not reach the Hub at {unreachable_hub} .*Check the network.*"
                                              rf"the model is saved in {tmp_path / 'run'}"):
        trainer.push_to_hub()
    assert (tmp_path / "run" / "model.safetensors").is_file()
    with pytest.raises(ConnectionError, match=rf"Could not reach the Hub at {unreachable_hub} to create the repo"):
        forget, retain = split_forget_retain(digits["train"], indices_of_classes(digits["train"], [3]))
        UnlearningTrainer(model=trained_model, args=dataclasses.replace(trainer.args, push_to_hub=True),
                          forget_dataset=forget, retain_dataset=retain, original_dataset=digits["train"])
    CoreGradientSpace.from_model(trained_model, digits["train"], show_progress=False).save_pretrained(tmp_path / "s")
    with pytest.raises(ConnectionError, match=rf"Could not reach the Hub at {unreachable_hub} to push"):
        cgs.main(["push", str(tmp_path / "s"), "--repo_id", REPO_ID])
