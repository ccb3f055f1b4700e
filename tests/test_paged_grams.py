"""A space's Grams mapped from a file while the weights move: same bits, shared tensors shared, no file left."""

import logging
import sys

import pytest
import torch

from hf_unlearn.core import CoreGradientSpace
from hf_unlearn.core.low_rank import LowRankGram
from hf_unlearn.core.paged_grams import mapped_from_file, page_out

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")


@linux
def test_paged_tensors_are_the_same_bits_mapped_from_a_removed_file(tmp_path):
    shared = torch.randn(6, 6, dtype=torch.float64)
    low_rank = LowRankGram.from_gram(shared @ shared.T, rank=2)
    grams = {"q": shared, "k": shared, "fc": torch.randn(4, 4, dtype=torch.float64), "lr": low_rank}
    paged = page_out(grams, tmp_path / "out")
    assert paged is not None and list(paged) == list(grams)
    for name in ("q", "fc"):
        assert torch.equal(paged[name], grams[name]) and mapped_from_file(paged[name])
        assert not mapped_from_file(grams[name])  # the control: anonymous memory reads as such
    assert paged["q"].data_ptr() == paged["k"].data_ptr()  # one tensor for the layers that shared one
    assert paged["lr"] is low_rank  # only dense tensors are paged
    assert list((tmp_path / "out").iterdir()) == []  # the file is gone; the mapping keeps its blocks
    paged["fc"].add_(1.0)  # a later in-place write copies the pages it touches
    torch.testing.assert_close(paged["fc"], grams["fc"] + 1.0)


def test_a_directory_that_cannot_be_written_keeps_the_grams_in_memory_and_says_so(tmp_path, caplog):
    blocked = tmp_path / "a_file"
    blocked.write_text("not a directory")
    grams = {"fc": torch.randn(3, 3, dtype=torch.float64)}
    with caplog.at_level(logging.WARNING, logger="hf_unlearn.core.paged_grams"):
        assert page_out(grams, blocked / "sub") is None
    assert "stay in memory" in caplog.text and str(blocked) in caplog.text


@linux
def test_a_paged_space_saves_and_projects_as_before(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    x = torch.randn(30, 5)
    space = CoreGradientSpace.from_model(model, [x], gamma=0.9, show_progress=False)
    twin = space.request_copy()
    assert twin.page_out_grams(tmp_path)
    assert all(mapped_from_file(g) for g in twin.grams.values())
    for name in space.layers:
        torch.testing.assert_close(twin.projectors()[name].basis, space.projectors()[name].basis, rtol=0, atol=0)
    space.save_pretrained(tmp_path / "memory")
    twin.save_pretrained(tmp_path / "paged")
    loaded = CoreGradientSpace.from_pretrained(tmp_path / "paged")
    for name, gram in space.grams.items():
        assert torch.equal(loaded.grams[name], gram)


@linux
def test_the_trainer_maps_the_subtracted_grams_from_its_output_dir_while_the_weights_move(
        trained_model, digits, tmp_path, one_thread):
    from digits_models import make_args

    from hf_unlearn import UnlearningTrainer
    from hf_unlearn.data.forget import random_indices, split_forget_retain

    forget, retain = split_forget_retain(digits["train"], random_indices(len(digits["train"]), 0.05, seed=0))
    trainer = UnlearningTrainer(
        model=trained_model, args=make_args(tmp_path, "pgu", max_steps=2, stop_rule="none"), forget_dataset=forget,
        retain_dataset=retain, eval_dataset=digits["validation"], original_dataset=digits["train"],
    )
    trainer.prepare_unlearning()
    grams = trainer.core_gradient_space.grams
    assert grams and all(mapped_from_file(g) for g in grams.values())
    assert not any(p.name.startswith(".cgs-grams") for p in tmp_path.rglob("*"))  # written, mapped, removed
    assert trainer.train().metrics is not None and trainer.core_gradient_space.ledger  # the request was recorded
