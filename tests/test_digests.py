"""One digest helper for every record that names a data set, a request or a recipe.

Checkpoint markers, SISA folders, request series and reference caches store these digests on disk,
so each must keep the exact bytes it hashed: a changed key would refuse a valid checkpoint or retrain
a cached reference. Each is compared here with the hashlib formula it is defined by.
"""

import hashlib
import json
from dataclasses import asdict

import torch
from datasets import Dataset

from hf_unlearn.core import fingerprint_examples
from hf_unlearn.core.fingerprint import digest


def _rows():
    return Dataset.from_dict({"x": [[1.0, 2.0], [3.0, 4.0], [0.5, 0.1]], "labels": [0, 1, 1]})


def test_digest_hashes_text_bytes_tensors_and_json_in_order():
    tensor = torch.tensor([3, -1, 7], dtype=torch.int64)
    expected = hashlib.sha256()
    for part in (b"raw", b"text", tensor.numpy().tobytes(), json.dumps({"b": 1, "a": [2]}, sort_keys=True).encode()):
        expected.update(part)
    assert digest(b"raw", "text", tensor, {"b": 1, "a": [2]}) == expected.hexdigest()
    assert digest("text", length=12) == hashlib.sha256(b"text").hexdigest()[:12]
    assert digest("a", "b") != digest("b", "a")  # order is part of what is hashed
    assert digest(tensor[::2]) == hashlib.sha256(tensor[::2].contiguous().numpy().tobytes()).hexdigest()


def test_the_request_digest_of_a_checkpoint_marker_is_unchanged():
    from hf_unlearn.training.checkpoints import request_digest

    rows = _rows()
    fingerprints = fingerprint_examples(rows, ["x", "labels"]).sort().values
    old = hashlib.sha256(b"x,labels")
    old.update(fingerprints.numpy().tobytes())
    assert request_digest(rows) == old.hexdigest()[:32]
    assert request_digest(rows.select([2, 0, 1])) == request_digest(rows)  # order-free


def test_the_reference_cache_key_is_unchanged():
    from hf_unlearn.exact import TrainingRecipe
    from hf_unlearn.exact.retrain import _RUNTIME_CONFIG_KEYS, retrain_key
    from hf_unlearn.models import SmallCNNConfig

    config, rows, recipe = SmallCNNConfig(num_labels=10), _rows(), TrainingRecipe()
    old = hashlib.sha256(b"base:me/model")
    defining = {k: v for k, v in config.to_dict().items() if k not in _RUNTIME_CONFIG_KEYS}
    old.update(json.dumps(defining, sort_keys=True, default=str).encode())
    old.update(fingerprint_examples(rows, rows.column_names).numpy().tobytes())
    old.update(json.dumps(asdict(recipe), sort_keys=True).encode())
    assert retrain_key(config, rows, recipe, base_model="me/model") == old.hexdigest()[:16]
    assert retrain_key(config, rows, recipe) != retrain_key(config, rows, recipe, base_model="me/model")


def test_the_series_and_sisa_digests_are_unchanged():
    from hf_unlearn import sequential
    from hf_unlearn.exact import sisa

    assert sequential._digest([5, 2, 9]) == hashlib.sha256(b"[2, 5, 9]").hexdigest()[:16]
    rows = _rows()
    unkeyed = fingerprint_examples(rows, rows.column_names, key=None)
    assert sisa._digest(rows) == hashlib.sha256(unkeyed.numpy().tobytes()).hexdigest()
