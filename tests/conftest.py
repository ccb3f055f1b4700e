"""Shared fixtures: the embedded digits data and one small CNN trained on it per session.

The original model is trained with a plain torch loop on in-memory tensors (about two seconds),
and each test takes a deep copy, so tests never affect each other.
"""

import copy
import os
import tempfile

import pytest
import torch
from digits_models import fit_small_cnn
from text_fixtures import fit_token_classifier, marker_token_data, tiny_bert_config
from transformers import BertForSequenceClassification

import hf_unlearn.models  # noqa: F401  (registers the small CNN with the Auto classes)
from hf_unlearn.data.builtin import load_digits_dataset

# the ledger key file is created on first use: in a folder of the test run, never in the user's home;
# subprocesses (torchrun, the fault-injection recipe) inherit it and fingerprint with the same key
os.environ.pop("HF_UNLEARN_LEDGER_KEY", None)
os.environ["HF_UNLEARN_HOME"] = tempfile.mkdtemp(prefix="hf_unlearn_home_")


@pytest.fixture
def one_thread():
    """Tiny models: intra-op threads only add overhead, badly so on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits():
    return load_digits_dataset(test_size=0.2, validation_size=0.1, seed=0).with_format("torch")


@pytest.fixture(scope="session")
def _trained(digits):
    batch = digits["train"][:]
    return fit_small_cnn(batch["pixel_values"], batch["labels"], epochs=25, lr=3e-3)


@pytest.fixture
def trained_model(_trained):
    return copy.deepcopy(_trained)


@pytest.fixture(scope="module")
def base_and_data():
    """A tiny BERT trained on three token classes, its training and validation sets (PEFT tests)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    train = marker_token_data()
    model = fit_token_classifier(BertForSequenceClassification(tiny_bert_config()), train)
    return model, train, marker_token_data(n=90, seed=1)
