"""The record of served requests cannot be rewritten by a new build, a hand edit or a forged Gram."""

import copy
import json

import pytest
import torch
from digits_models import make_args
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hf_unlearn import UnlearningTrainer
from hf_unlearn.core import CGSLoadError, CoreGradientSpace, LedgerError, collect_gram_matrices, fingerprint_examples
from hf_unlearn.core.storage import sha256_of
from hf_unlearn.data.forget import indices_of_classes, split_forget_retain
from hf_unlearn.models import SmallCNNForImageClassification
from hf_unlearn.scripts import unlearn as recipe
from hf_unlearn.training.checkpoints import REQUEST_MARKER

pytestmark = pytest.mark.usefixtures("one_thread")


def _recipe(model_path, out, *extra):
    return recipe.main(["--model_name_or_path", str(model_path), "--dataset_name", "digits", "--output_dir", str(out),
                        "--disable_tqdm", "true", "--logging_strategy", "no", *extra])


@pytest.fixture(scope="module")
def unlearned_folder(_trained, tmp_path_factory):
    """A model folder after one request (class 3 forgotten), with its space and ledger."""
    root = tmp_path_factory.mktemp("records")
    _trained.save_pretrained(root / "original")
    _recipe(root / "original", root / "first", "--forget_class", "3")
    assert len(_ledger(root / "first" / "core_gradient_space")) == 1
    return root / "first"


def _ledger(folder):
    return json.loads((folder / "cgs_config.json").read_text())["ledger"]


# ---------------------------------------------------------------------------------------------- carried ledger
def test_a_new_space_built_for_an_unlearned_folder_carries_its_ledger_and_refuses_the_repeat(
    unlearned_folder, digits, tmp_path
):
    fresh = tmp_path / "fresh_cgs"
    with pytest.raises(LedgerError, match="already forgotten by an earlier request"):
        _recipe(unlearned_folder, tmp_path / "again", "--forget_class", "3", "--core_gradient_space", str(fresh),
                "--build_core_gradient_space", "true")
    assert not (tmp_path / "again" / "model.safetensors").exists()
    built = CoreGradientSpace.from_pretrained(fresh)
    forgotten = len(indices_of_classes(digits["train"], [3]))
    assert [r["num_examples"] for r in built.ledger] == [forgotten]  # the history, copied
    assert built.num_examples == len(digits["train"]) - forgotten  # the forgotten rows left out of the build
    _recipe(unlearned_folder, tmp_path / "second", "--forget_class", "5", "--core_gradient_space", str(fresh),
            "--max_steps", "2")
    ledger = _ledger(tmp_path / "second" / "core_gradient_space")
    assert [r["num_examples"] for r in ledger] == [forgotten, len(indices_of_classes(digits["train"], [5]))]


def test_from_model_on_an_unlearned_folder_leaves_the_forgotten_rows_out_or_refuses(unlearned_folder, digits):
    model = SmallCNNForImageClassification.from_pretrained(unlearned_folder)
    train = digits["train"]
    rows = indices_of_classes(train, [3])
    space = CoreGradientSpace.from_model(model, train, show_progress=False)
    kept = CoreGradientSpace.from_model(model, train.select(sorted(set(range(len(train))) - set(rows))),
                                        show_progress=False)
    assert len(space.ledger) == 1 and space.num_examples == len(train) - len(rows)
    name = next(iter(space.grams))
    torch.testing.assert_close(space.grams[name], kept.grams[name], rtol=1e-10, atol=1e-8)
    with pytest.raises(LedgerError, match="already forgotten"):
        space.check_request(space.train_fingerprints[torch.tensor(rows[:2])])
    batches = [{"pixel_values": train[:8]["pixel_values"]}]
    with pytest.raises(LedgerError, match="needs the training set as a datasets.Dataset"):
        CoreGradientSpace.from_model(model, batches, show_progress=False)
    with pytest.raises(LedgerError, match="lacks"):
        CoreGradientSpace.from_model(model, train.select_columns(["pixel_values"]), show_progress=False)


# ---------------------------------------------------------------------------------------------- the whole record
@pytest.fixture
def served_space(trained_model, digits, tmp_path):
    """A space with one request served, saved."""
    space = CoreGradientSpace.from_model(trained_model, digits["train"], show_progress=False)
    forget = digits["train"].select(range(4))
    stats = collect_gram_matrices(trained_model, forget.select_columns(["pixel_values"]), show_progress=False)
    space.subtract(stats, fingerprint_examples(forget, space.fingerprint_columns))
    space.save_pretrained(tmp_path / "cgs")
    return tmp_path / "cgs"


def _edit_config(path, change, *, old_format=False):
    """Change the config; ``old_format``: also rewrite the tensor file as format 5 wrote it (no config digest)."""
    config = json.loads((path / "cgs_config.json").read_text())
    change(config)
    if old_format:
        save_file(load_file(str(path / "cgs.safetensors")), str(path / "cgs.safetensors"))
        config["format_version"] = 5
    config["tensors_sha256"] = sha256_of(path / "cgs.safetensors")
    (path / "cgs_config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "change",
    [lambda c: c.update(ledger=[]), lambda c: c.update(gamma=0.5),
     lambda c: c.update(num_examples=c["num_examples"] + 4),
     lambda c: c["ledger"][0].update(created_at="2020-01-01T00:00:00Z")],
    ids=["ledger emptied", "gamma", "num_examples", "request date"],
)
def test_an_edited_config_is_refused_though_the_tensor_checksum_still_holds(served_space, change):
    CoreGradientSpace.from_pretrained(served_space)  # as saved: accepted
    _edit_config(served_space, change)
    with pytest.raises(CGSLoadError, match="cgs_config.json was edited after it was saved"):
        CoreGradientSpace.from_pretrained(served_space)


def test_the_json_ledger_must_match_the_ledger_tensors_even_without_a_digest(served_space):
    _edit_config(served_space, lambda c: c.update(ledger=[]), old_format=True)
    with pytest.raises(CGSLoadError, match=r"lists 0 request\(s\) in its ledger, but its tensor file holds the "
                                           "fingerprints of 1"):
        CoreGradientSpace.from_pretrained(served_space)


def test_a_miscounted_ledger_entry_is_refused(served_space):
    _edit_config(served_space, lambda c: c["ledger"][0].update(num_examples=3), old_format=True)
    with pytest.raises(CGSLoadError, match="does not match the 4 fingerprints stored for it"):
        CoreGradientSpace.from_pretrained(served_space)


def test_a_tensor_file_rewritten_without_the_config_digest_is_refused(served_space):
    save_file(load_file(str(served_space / "cgs.safetensors")), str(served_space / "cgs.safetensors"))
    _edit_config(served_space, lambda c: None)  # the tensor checksum fixed, the format left at 6
    with pytest.raises(CGSLoadError, match="carries no digest of cgs_config.json"):
        CoreGradientSpace.from_pretrained(served_space)


# ---------------------------------------------------------------------------------------------- resuming at the stop
def test_resuming_from_the_checkpoint_where_the_stop_rule_fired_finishes_without_a_step(_trained, digits, tmp_path):
    forget, retain = split_forget_retain(digits["train"], indices_of_classes(digits["train"], [3]))
    args = dict(max_steps=40, check_every_steps=1, save_strategy="steps", save_steps=1, learning_rate=0.05)

    def trainer(model):
        space = CoreGradientSpace.from_model(_trained, digits["train"], show_progress=False)
        return UnlearningTrainer(model=model, args=make_args(tmp_path, **args), forget_dataset=forget,
                                 retain_dataset=retain, eval_dataset=digits["validation"], core_gradient_space=space)

    first = trainer(copy.deepcopy(_trained))
    first.train()
    stop = first.state.global_step
    assert first.outcome.stopped_by == "rule" and first.outcome.unlearned and stop < 40
    checkpoint = tmp_path / "run" / f"checkpoint-{stop}"
    marker = json.loads((checkpoint / REQUEST_MARKER).read_text())
    assert marker["stopped_by"] == "rule"  # the checkpoint says the run ended there
    final = {n: p.detach().clone() for n, p in first.model.named_parameters()}

    resumed_model = copy.deepcopy(_trained)  # a killed process: the original weights in memory, the checkpoint on disk
    resumed = trainer(resumed_model)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == stop  # not one step more
    assert resumed.outcome.unlearned and resumed.outcome.stopped_by == "rule"
    assert resumed.outcome.reason == first.outcome.reason
    assert len(resumed.core_gradient_space.ledger) == 1
    for name, param in resumed_model.named_parameters():
        assert torch.equal(param, final[name]), name


# ---------------------------------------------------------------------------------------------- Grams that cannot be
def _replace_gram(path, change):
    """Rewrite one Gram in the tensor file, keep its header (the config's digest) and fix the checksum."""
    with safe_open(str(path / "cgs.safetensors"), "pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path / "cgs.safetensors"))
    name = next(k for k in tensors if k.startswith("gram."))
    tensors[name] = change(tensors[name])
    save_file(tensors, str(path / "cgs.safetensors"), metadata=metadata)
    _edit_config(path, lambda c: None)


def test_a_negated_gram_is_refused_though_its_checksum_was_fixed(served_space):
    _replace_gram(served_space, lambda gram: -gram)
    with pytest.raises(CGSLoadError, match="positive semi-definite"):
        CoreGradientSpace.from_pretrained(served_space)


def test_a_gram_replaced_by_a_small_identity_is_refused_by_its_recorded_trace(served_space):
    _replace_gram(served_space, lambda gram: 1e-3 * torch.eye(gram.shape[0], dtype=gram.dtype))
    with pytest.raises(CGSLoadError, match="was recorded when it was saved: the tensor file was rewritten"):
        CoreGradientSpace.from_pretrained(served_space)


def test_a_gram_with_a_negative_eigenvalue_is_refused_before_it_protects_anything(trained_model, digits):
    space = CoreGradientSpace.from_model(trained_model, digits["train"], show_progress=False)
    name = next(iter(space.grams))
    values, vectors = torch.linalg.eigh(space.grams[name])
    top = vectors[:, -1:]
    forged = space.grams[name] - 1.5 * values[-1] * (top @ top.T)  # the top direction turned negative
    grams = {**space.grams, name: forged}
    with pytest.raises(ValueError, match="positive semi-definite"):
        CoreGradientSpace(grams, space.layers, space.num_examples).projectors()
    space.projectors()  # the real Gram decomposes as before


def test_a_compressed_gram_with_negative_eigenvalues_is_refused(trained_model, digits):
    space = CoreGradientSpace.from_model(trained_model, digits["train"], show_progress=False)
    space.compress(4)
    name = next(iter(space.grams))
    space.grams[name].values = -space.grams[name].values
    with pytest.raises(ValueError, match="positive semi-definite"):
        CoreGradientSpace(space.grams, space.layers, space.num_examples)


# ---------------------------------------------------------------------------------------------- the ledger key
@pytest.mark.parametrize("weak", ["4711", "my-model-ledger", "a" * 64, "abcdef" * 8, "DC6E1DF60A74FC8D2D9E0151"])
def test_a_weak_ledger_key_is_refused_with_the_fix(trained_model, digits, monkeypatch, weak):
    from hf_unlearn.core.ledger_key import KEY_ENV

    monkeypatch.setenv(KEY_ENV, weak)
    with pytest.raises(LedgerError, match=r"HF_UNLEARN_LEDGER_KEY is too weak .*at least 128 are needed.*"
                                          r"secrets.token_hex\(32\)"):
        CoreGradientSpace.from_model(trained_model, digits["train"].select(range(20)), show_progress=False)


def test_a_random_ledger_key_is_accepted(trained_model, digits, monkeypatch):
    import secrets

    from hf_unlearn.core.ledger_key import KEY_ENV

    for strong in (secrets.token_hex(16), secrets.token_urlsafe(32)):
        monkeypatch.setenv(KEY_ENV, strong)
        space = CoreGradientSpace.from_model(trained_model, digits["train"].select(range(20)), show_progress=False)
        assert space.train_fingerprints.numel() == 20


# ---------------------------------------------------------------------------------------------- what a space reveals
def test_two_versions_of_a_space_identify_the_forgotten_row_without_the_model(trained_model, digits):
    """Why a space is not pushed twice (docs/guarantees.md): the first layer's Grams of a space before and after a
    one-row request differ by exactly that row's Gram, which picks it out among candidate rows."""
    train = digits["train"]
    before = CoreGradientSpace.from_model(trained_model, train, show_progress=False)
    after = copy.deepcopy(before)
    forgotten = 17
    forget = train.select([forgotten])
    stats = collect_gram_matrices(trained_model, forget.select_columns(["pixel_values"]), show_progress=False)
    after.subtract(stats, fingerprint_examples(forget, after.fingerprint_columns))
    first = next(iter(before.layers))  # the layer that reads the pixels
    difference = before.grams[first] - after.grams[first]
    candidates = train.select(range(40)).select_columns(["pixel_values"])
    residuals = []
    for row in range(len(candidates)):
        gram = collect_gram_matrices(trained_model, candidates.select([row]), show_progress=False).grams[first]
        residuals.append(float((difference - gram).norm() / difference.norm()))
    others = [r for i, r in enumerate(residuals) if i != forgotten]
    assert residuals[forgotten] < 1e-9 and min(others) > 1e-2
