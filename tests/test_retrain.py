"""Retrain-from-scratch: the reference is cached by config, retain fingerprints and recipe."""

import torch

from hf_unlearn.exact import TrainingRecipe, retrain_from_scratch
from hf_unlearn.exact.retrain import retrain_key
from hf_unlearn.models import SmallCNNConfig


def test_retraining_is_cached_and_keyed_by_what_defines_it(digits, tmp_path):
    torch.set_num_threads(1)
    retain = digits["train"].select(range(200))
    recipe = TrainingRecipe(num_train_epochs=2, seed=0)
    config = SmallCNNConfig()
    model, seconds, cached = retrain_from_scratch(config, retain, recipe, cache_dir=tmp_path)
    assert not cached and seconds > 0
    again, seconds_again, cached_again = retrain_from_scratch(config, retain, recipe, cache_dir=tmp_path)
    assert cached_again and seconds_again == seconds  # reports the time the retraining really took
    for a, b in zip(model.parameters(), again.parameters()):
        assert torch.equal(a, b)
    key = retrain_key(config, retain, recipe)
    assert retrain_key(config, digits["train"].select(range(1, 201)), recipe) != key
    assert retrain_key(config, retain, TrainingRecipe(num_train_epochs=2, seed=1)) != key
    assert retrain_key(SmallCNNConfig(hidden_size=32), retain, recipe) != key
    trained_on = model(pixel_values=retain[:]["pixel_values"]).logits.argmax(-1)
    assert (trained_on == retain[:]["labels"]).float().mean() > 0.5  # it did learn from the retain set


def test_a_fine_tuned_reference_starts_from_the_base(digits, tmp_path):
    """With ``base_model`` the reference starts from the base's weights, not from a fresh initialisation."""
    torch.set_num_threads(1)
    from hf_unlearn.models import SmallCNNForImageClassification

    torch.manual_seed(123)
    base = SmallCNNForImageClassification(SmallCNNConfig())
    base.save_pretrained(tmp_path / "base")
    retain = digits["train"].select(range(64))
    frozen_recipe = TrainingRecipe(num_train_epochs=1, learning_rate=0.0, seed=0)  # lr 0: weights stay at the start
    tuned, _, _ = retrain_from_scratch(base.config, retain, frozen_recipe, base_model=tmp_path / "base")
    for (name, a), b in zip(base.named_parameters(), tuned.parameters()):
        assert torch.equal(a, b), name
    scratch, _, _ = retrain_from_scratch(base.config, retain, frozen_recipe)
    assert not all(torch.equal(a, b) for a, b in zip(base.parameters(), scratch.parameters()))
    assert retrain_key(base.config, retain, frozen_recipe, tmp_path / "base") != retrain_key(
        base.config, retain, frozen_recipe
    )


def test_training_overrides_reach_the_reference_trainer_but_not_its_cache_key(digits, tmp_path, monkeypatch):
    seen = []
    real = TrainingRecipe.training_arguments

    def spy(self, output_dir, **overrides):
        args = real(self, output_dir, **overrides)
        seen.append(args.ddp_find_unused_parameters)
        return args

    monkeypatch.setattr(TrainingRecipe, "training_arguments", spy)
    recipe = TrainingRecipe(num_train_epochs=1, per_device_train_batch_size=64)
    retain = digits["train"].select(range(64))
    _, _, cached = retrain_from_scratch(SmallCNNConfig(), retain, recipe, cache_dir=tmp_path,
                                        training_overrides={"ddp_find_unused_parameters": True})
    assert seen == [True] and not cached
    _, _, cached = retrain_from_scratch(SmallCNNConfig(), retain, recipe, cache_dir=tmp_path)
    assert cached  # the override does not change what is learnt, so the same reference is reused
