"""One home for the threshold γ: a space keeps the γ (and energy measure) it was built with, and only a run
that sets one replaces it, saying so in the log."""

import copy
import logging

import pytest
from digits_models import make_args

from hf_unlearn import UnlearningArguments, UnlearningTrainer
from hf_unlearn.core import CoreGradientSpace
from hf_unlearn.core.energy import DEFAULT_ENERGY, DEFAULT_GAMMA
from hf_unlearn.data.forget import indices_of_classes, split_forget_retain
from hf_unlearn.scripts.cgs import BuildArguments

pytestmark = pytest.mark.usefixtures("one_thread")
REPLACES = "replaces the"


def _saved_space(model, digits, tmp_path, **threshold):
    """A space built and saved the way ``hf-unlearn cgs build --gamma ...`` does, then loaded back."""
    space = CoreGradientSpace.from_model(model, digits["train"], show_progress=False, **threshold)
    space.save_pretrained(tmp_path / "space")
    return CoreGradientSpace.from_pretrained(tmp_path / "space", model)


def _prepared(model, digits, tmp_path, space=None, **kw):
    forget, retain = split_forget_retain(digits["train"], indices_of_classes(digits["train"], [3]))
    trainer = UnlearningTrainer(
        model=model, args=make_args(tmp_path / "run", **kw), forget_dataset=forget, retain_dataset=retain,
        eval_dataset=digits["validation"], core_gradient_space=space,
        original_dataset=digits["train"] if space is None else None,
    )
    trainer.prepare_unlearning()
    return trainer


@pytest.mark.parametrize("energy", ["sigma", "sigma2"])
def test_a_run_that_sets_no_gamma_keeps_the_spaces_own(trained_model, digits, tmp_path, caplog, energy):
    space = _saved_space(trained_model, digits, tmp_path, gamma=0.95, energy=energy)
    assert UnlearningArguments(output_dir=str(tmp_path), report_to="none").gamma is None  # unset, not 0.8
    with caplog.at_level(logging.WARNING, logger="hf_unlearn"):
        trainer = _prepared(trained_model, digits, tmp_path, space)
    used = trainer.core_gradient_space
    assert (used.gamma, used.energy) == (0.95, energy)
    assert f"gamma=0.95, energy `{energy}`" in trainer._projection_summary()  # what the card states
    assert REPLACES not in caplog.text
    # the projectors follow that threshold, and here it matters: the library default protects other ranks
    at_default = copy.deepcopy(used)
    at_default.set_threshold(DEFAULT_GAMMA, DEFAULT_ENERGY)
    assert [used.rank(n) for n in used.layers] != [at_default.rank(n) for n in used.layers]
    protected = {key: p.rank for key, p in trainer.projection.projectors.items()}
    assert protected == {n: used.rank(n) for n in used.layers}


def test_a_gamma_the_run_sets_replaces_the_spaces_and_is_logged(trained_model, digits, tmp_path, caplog):
    space = _saved_space(trained_model, digits, tmp_path, gamma=0.95)
    with caplog.at_level(logging.WARNING, logger="hf_unlearn"):
        trainer = _prepared(trained_model, digits, tmp_path, space, gamma=0.8)
    assert trainer.core_gradient_space.gamma == 0.8
    assert "gamma=0.8 replaces the gamma=0.95" in caplog.text
    assert "gamma_energy" not in caplog.text  # the energy measure was not set: the space's stays, unannounced
    assert trainer.core_gradient_space.energy == "sigma"


def test_a_space_the_run_builds_gets_the_library_default_or_the_runs_gamma(trained_model, digits, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="hf_unlearn"):
        built = _prepared(trained_model, digits, tmp_path / "default").core_gradient_space
        chosen = _prepared(trained_model, digits, tmp_path / "set", gamma=0.9).core_gradient_space
    assert (built.gamma, built.energy) == (DEFAULT_GAMMA, DEFAULT_ENERGY) and chosen.gamma == 0.9
    assert REPLACES not in caplog.text  # built with the run's own value: nothing was replaced


@pytest.mark.parametrize("bad", [{"gamma": 0.0}, {"gamma": 1.5}, {"gamma_energy": "sigma3"}])
def test_one_validator_refuses_a_bad_threshold_before_anything_loads(tmp_path, bad):
    message = "gamma must lie in \\(0, 1\\]" if "gamma" in bad else "gamma_energy must be one of"
    with pytest.raises(ValueError, match=message):
        UnlearningArguments(output_dir=str(tmp_path), report_to="none", **bad)
    with pytest.raises(ValueError, match=message):
        BuildArguments(**bad)
