"""Labels written as names ("ham", "spam") in a user's files, turned into the ids the model predicts.

Many users keep their data as a csv of names; the model only knows ids. Its config says which id is
which when it was trained with ``id2label``; a config with transformers' placeholder names (``LABEL_0``
...) says nothing, and then the names are numbered in sorted order, the order transformers'
text-classification example gives them. Either way the mapping is logged, and a name the model cannot
have been trained on is refused before anything runs.
"""

from __future__ import annotations

import logging

import numpy as np
from datasets import ClassLabel, DatasetDict, Value

from .columns import label_column

logger = logging.getLogger(__name__)


def named_labels(config) -> dict[int, str] | None:
    """``id2label`` with int keys, or None when it is transformers' placeholder ``LABEL_i`` naming."""
    id2label = getattr(config, "id2label", None)
    if not id2label:
        return None
    mapping = {int(k): str(v) for k, v in id2label.items()}
    if all(v == f"LABEL_{k}" for k, v in mapping.items()):
        return None
    return mapping


def _names_in(data: DatasetDict) -> list[str] | None:
    """The distinct label values over every split when they are strings, else None."""
    values: set[str] = set()
    for split in data.values():
        name = label_column(split)
        if name is None:
            continue
        column = np.asarray(split.select_columns([name]).with_format("numpy")[:][name])
        if column.dtype.kind not in "USO":
            return None
        values.update(str(v) for v in column.tolist())
    return sorted(values) or None


def label_ids(names: list[str], config) -> dict[str, int]:
    """Name → id: the config's own names when it has them, else the sorted order (refused if they cannot fit)."""
    num_labels = getattr(config, "num_labels", None)
    known = named_labels(config)
    if known is not None:
        by_name = {name: i for i, name in known.items()}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ValueError(
                f"Label(s) {unknown[:5]} are not among the model's labels {sorted(by_name)} (its config.id2label): "
                "these rows cannot come from its training data. Check --label_column, or map the names yourself."
            )
        return {n: by_name[n] for n in names}
    if num_labels is not None and len(names) > num_labels:
        raise ValueError(
            f"The data names {len(names)} labels ({names[:5]}...) but the model predicts {num_labels}: it was not "
            "trained on these labels. Check --label_column."
        )
    return {name: i for i, name in enumerate(names)}


def encode_labels(data: DatasetDict, config) -> tuple[DatasetDict, dict[str, int] | None]:
    """``data`` with its string ``labels`` replaced by ids, and the mapping used (None: they were ids already)."""
    names = _names_in(data)
    if names is None:
        return data, _class_label_ids(data)
    mapping = label_ids(names, config)
    words = ", ".join(f"{n!r} -> {i}" for n, i in mapping.items())
    if named_labels(config) is not None:
        logger.info("Labels are names; mapped %s by the model's config.id2label", words)
    else:  # a guess the user must be able to see: the order they trained with is not recorded anywhere
        logger.warning("Labels are names and the model's config names none; mapped them in sorted order, %s (as "
                       "transformers' text-classification example does). If the model was trained with another "
                       "order, save its id2label/label2id in config.json first.", words)
    encoded = DatasetDict({name: _ids_in(split, mapping) for name, split in data.items()})
    return encoded, mapping


def _ids_in(split, mapping: dict[str, int]):
    """``split`` with its label column (``labels`` or ``label``) turned into ids by ``mapping``."""
    column = label_column(split)
    if column is None:
        return split
    return split.map(lambda batch: {column: [mapping[str(v)] for v in batch[column]]}, batched=True,
                     desc="Label names to ids").cast_column(column, Value("int64"))  # map keeps the strings' type


def _class_label_ids(data: DatasetDict) -> dict[str, int] | None:
    """A Hub dataset's ``ClassLabel`` names, so classes can be named on the command line."""
    feature = next(iter(data.values())).features.get("labels")
    return {name: i for i, name in enumerate(feature.names)} if isinstance(feature, ClassLabel) else None


def class_ids(classes: list, mapping: dict[str, int] | None, config=None) -> list[int]:
    """``--forget_class`` values as ids: an id as it is, a name through the data's mapping or the model's names."""
    by_name = dict(mapping or {})
    for i, name in (named_labels(config) or {}).items():
        by_name.setdefault(name, i)
    ids = []
    for value in classes:
        if isinstance(value, (int, np.integer)) or str(value).lstrip("-").isdigit():
            ids.append(int(value))
        elif str(value) in by_name:
            ids.append(by_name[str(value)])
        else:
            known = f"names: {sorted(by_name)}" if by_name else "the data and the model name no labels"
            raise ValueError(f"--forget_class {value!r} is neither a label id nor a label name ({known}).")
    return ids
