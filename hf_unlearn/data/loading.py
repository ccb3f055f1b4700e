"""Load a classification dataset from the Hub, a local folder, local files or the embedded sets.

Everything ends as a ``DatasetDict`` whose examples carry the model's inputs (``pixel_values`` or
token ids) and a ``labels`` column, so the trainer never needs to know where the data came from.
"""

from __future__ import annotations

from pathlib import Path

from datasets import DatasetDict, load_dataset, load_from_disk

from .builtin import load_digits_dataset, load_mnist5k_dataset

BUILTIN = {"digits": load_digits_dataset, "mnist5k": load_mnist5k_dataset}
_FILE_TYPES = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".txt": "text"}


def load_raw(name: str | None, config: str | None = None, data_files: list[str] | None = None,
             seed: int = 0) -> DatasetDict:
    """``digits``/``mnist5k`` (embedded), local files, a ``save_to_disk`` folder, or a Hub id / script folder."""
    if data_files:
        kind = _FILE_TYPES.get(Path(data_files[0]).suffix)
        if kind is None:
            raise ValueError(f"Cannot tell the format of {data_files[0]}; use .csv, .json, .jsonl or .parquet files.")
        return load_dataset(kind, data_files={"train": data_files})
    if not name:
        raise ValueError("Give dataset_name (a Hub id, a local path, or 'digits'/'mnist5k') or data_files.")
    if name in BUILTIN:
        return BUILTIN[name](test_size=0.2, validation_size=0.1, seed=seed)
    if Path(name).is_dir() and (Path(name) / "dataset_dict.json").is_file():
        return load_from_disk(name)
    return load_dataset(name, config)


def ensure_splits(data: DatasetDict, eval_split: str | None, seed: int) -> DatasetDict:
    """Carve a held-out split from ``train`` when the dataset has none (10 %, seeded)."""
    if eval_split and eval_split in data:
        return data
    for candidate in ("validation", "test"):
        if candidate in data:
            return data
    split = data["train"].train_test_split(test_size=0.1, seed=seed)
    return DatasetDict(train=split["train"], validation=split["test"])


def rename_label(data: DatasetDict, label_column: str) -> DatasetDict:
    if label_column == "labels":
        return data
    if label_column not in data["train"].column_names:
        raise ValueError(f"Label column {label_column!r} not found; columns: {data['train'].column_names}")
    return data.rename_column(label_column, "labels")


def tokenize(data: DatasetDict, tokenizer, text_column: str, max_length: int) -> DatasetDict:
    if text_column not in data["train"].column_names:
        raise ValueError(f"Text column {text_column!r} not found; columns: {data['train'].column_names}")
    return data.map(lambda batch: tokenizer(batch[text_column], truncation=True, max_length=max_length),
                     batched=True, desc="Tokenizing")


def process_images(data: DatasetDict, processor, image_column: str) -> DatasetDict:
    if image_column not in data["train"].column_names:
        raise ValueError(f"Image column {image_column!r} not found; columns: {data['train'].column_names}")

    def transform(batch):
        images = [image.convert("RGB") for image in batch[image_column]]
        return {"pixel_values": processor(images, return_tensors="np")["pixel_values"]}

    return data.map(transform, batched=True, desc="Preprocessing images")
