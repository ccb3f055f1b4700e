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
