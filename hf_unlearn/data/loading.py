"""Load a classification dataset from the Hub, a local folder, local files or the embedded sets.

Everything ends as a ``DatasetDict`` whose examples carry the model's inputs (``pixel_values`` or
token ids) and a ``labels`` column, so the trainer never needs to know where the data came from.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from datasets import DatasetDict, load_dataset, load_from_disk

from .builtin import load_digits_dataset, load_mnist5k_dataset
from .fictitious_facts import load_fictitious_facts_dataset
from .tokenization import count_truncated

BUILTIN = {
    "digits": load_digits_dataset,
    "mnist5k": load_mnist5k_dataset,
    "fictitious_facts": load_fictitious_facts_dataset,
}
# the command line's split of an embedded set; a model trained on another split (the loaders' own defaults
# keep no validation rows) would have trained on the validation rows its stop rule reads
EMBEDDED_SPLIT = {"test_size": 0.2, "validation_size": 0.1}
logger = logging.getLogger(__name__)
_FILE_TYPES = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".txt": "text"}


def load_raw(name: str | None, config: str | None = None, data_files: list[str] | None = None,
             seed: int = 0, validation_file: str | None = None) -> DatasetDict:
    """``digits``/``mnist5k``/``fictitious_facts`` (embedded), local files, a ``save_to_disk`` folder, or a Hub id
    / script folder."""
    if data_files:
        kind = _FILE_TYPES.get(Path(data_files[0]).suffix)
        if kind is None:
            raise ValueError(f"Cannot tell the format of {data_files[0]}; use .csv, .json, .jsonl or .parquet files.")
        files = {"train": list(data_files)}
        if validation_file:
            files["validation"] = [validation_file]
        return load_dataset(kind, data_files=files)
    if validation_file:
        raise ValueError("--validation_file goes with --data_files (local training files).")
    if not name:
        raise ValueError(
            "Give dataset_name (a Hub id, a local path, or 'digits'/'mnist5k'/'fictitious_facts') or data_files."
        )
    if name in BUILTIN:
        data = BUILTIN[name](**EMBEDDED_SPLIT, seed=seed)
        sizes = ", ".join(f"{len(rows)} {split}" for split, rows in data.items())
        logger.info(
            "Embedded %r: %s rows, the split of load_%s_dataset(test_size=0.2, validation_size=0.1, seed=%d); "
            "a model trained on any other split has seen some of these validation or test rows",
            name, sizes, name, seed,
        )
        return data
    if Path(name).is_dir() and (Path(name) / "dataset_dict.json").is_file():
        return load_from_disk(name)
    return load_dataset(name, config)


def ensure_splits(
    data: DatasetDict, eval_split: str | None, seed: int, validation_percentage: float | None = None
) -> tuple[DatasetDict, list[int] | None]:
    """The data with its held-out split, and which training-file rows the ``train`` split kept.

    A dataset without a held-out split gets one only when asked (``validation_percentage``): carving it
    silently would compare the stop rule against rows the model was trained on. The carved rows leave
    ``train`` in file order, and the kept file rows are returned so row numbers from the user's file can
    still be mapped (``None``: nothing was carved, train rows are the file's).
    """
    if eval_split:
        if eval_split not in data:
            raise ValueError(f"No split {eval_split!r} in the dataset (splits: {list(data)}).")
        return data, None
    if any(candidate in data for candidate in ("validation", "test")):
        return data, None
    if not validation_percentage:
        return data, None
    if not 0 < validation_percentage < 100:
        raise ValueError(f"validation_split_percentage must lie in (0, 100), got {validation_percentage}")
    rows = len(data["train"])
    count = max(1, int(round(rows * validation_percentage / 100)))
    held_out = set(np.random.default_rng(seed).choice(rows, size=count, replace=False).tolist())
    kept = [i for i in range(rows) if i not in held_out]
    carved = DatasetDict(train=data["train"].select(kept), validation=data["train"].select(sorted(held_out)))
    return carved, kept


def file_rows_to_train_rows(file_rows: list[int], kept: list[int] | None) -> list[int]:
    """Row numbers of the user's training file as rows of the ``train`` split (after carving)."""
    if kept is None:
        return list(file_rows)
    position = {row: i for i, row in enumerate(kept)}
    carved = [row for row in file_rows if row not in position]
    if carved:
        raise ValueError(
            f"{len(carved)} forget row(s) (e.g. {carved[:5]}) were carved into the validation split by "
            "--validation_split_percentage: they are held out, not trained on. Give a --validation_file instead."
        )
    return [position[row] for row in file_rows]


def rename_label(data: DatasetDict, label_column: str) -> DatasetDict:
    if label_column == "labels":
        return data
    if label_column not in data["train"].column_names:
        raise ValueError(f"Label column {label_column!r} not found; columns: {data['train'].column_names}")
    return data.rename_column(label_column, "labels")


def tokenize(data: DatasetDict, tokenizer, text_column: str, max_length: int) -> DatasetDict:
    if text_column not in data["train"].column_names:
        raise ValueError(f"Text column {text_column!r} not found; columns: {data['train'].column_names}")
    tokenized = data.map(lambda batch: tokenizer(batch[text_column], truncation=True, max_length=max_length),
                         batched=True, desc="Tokenizing")
    for split, rows in tokenized.items():
        if cut := count_truncated(rows[text_column], rows["input_ids"], tokenizer, max_length):
            logger.warning(
                "%d of %d %s texts are longer than max_length %d tokens and are cut there. Use the max_length the "
                "model was trained with (--max_length); a space built now records it for every later run.",
                cut, len(rows), split, max_length,
            )
    return tokenized


def process_images(data: DatasetDict, processor, image_column: str) -> DatasetDict:
    if image_column not in data["train"].column_names:
        raise ValueError(f"Image column {image_column!r} not found; columns: {data['train'].column_names}")

    def transform(batch):
        images = [image.convert("RGB") for image in batch[image_column]]
        return {"pixel_values": processor(images, return_tensors="np")["pixel_values"]}

    return data.map(transform, batched=True, desc="Preprocessing images")
