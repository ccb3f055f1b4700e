"""Content fingerprints: of a model (to refuse a cache built for another one) and of examples.

Example fingerprints let the space keep a ledger of what has been forgotten without keeping the
data: a request that repeats examples already subtracted, or names examples the cache never saw,
is refused before any weight changes. Values are normalised (floats to float32, integers to
int64) so a row hashes the same whether it comes as Python lists or as tensors.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .errors import CGSMismatchError, on_meta_device
from .labels import LABEL_KEYS
from .layers import has_adapters, layer_kind
from .ledger_key import ledger_key


def _normalise(value) -> bytes:
    if isinstance(value, str):
        return b"s" + value.encode("utf-8")
    if torch.is_tensor(value):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind == "f":
        array = array.astype(np.float32)
    elif array.dtype.kind in "iub":
        array = array.astype(np.int64)
    elif array.dtype.kind in "UO":
        return b"o" + json.dumps(array.tolist(), sort_keys=True, default=str).encode("utf-8")
    return array.dtype.str.encode() + str(array.shape).encode() + np.ascontiguousarray(array).tobytes()


LOCAL_KEY = "local"  # fingerprint_examples' default: this owner's key (see ledger_key.py)


def digest(*parts, length: int | None = None) -> str:
    """The SHA-256 hex digest of ``parts`` in order, cut to ``length`` characters: bytes as they are, text as
    UTF-8, tensors by their bytes, anything else as JSON with sorted keys.

    The one hash of records that name a data set, a request or a recipe (checkpoint markers, cache keys);
    single examples and weights get the fingerprints of this module instead.
    """
    hasher = hashlib.sha256()
    for part in parts:
        if isinstance(part, str):
            part = part.encode()
        elif torch.is_tensor(part):
            part = part.detach().cpu().contiguous().numpy().tobytes()
        elif not isinstance(part, bytes):
            part = json.dumps(part, sort_keys=True, default=str).encode()
        hasher.update(part)
    return hasher.hexdigest()[:length]


def example_fingerprint(example: Mapping, columns: Sequence[str], key: bytes | None = None) -> int:
    """A signed 64-bit fingerprint of one example's values in ``columns`` (HMAC-SHA256 when keyed)."""
    digest = hmac.new(key, digestmod=hashlib.sha256) if key is not None else hashlib.sha256()
    for column in columns:
        digest.update(column.encode("utf-8"))
        digest.update(_normalise(example[column]))
    return int.from_bytes(digest.digest()[:8], "little", signed=True)


def fingerprint_examples(
    rows: Iterable[Mapping], columns: Sequence[str], key: bytes | str | None = LOCAL_KEY
) -> torch.Tensor:
    """Fingerprints of every row, as an int64 tensor (one entry per row, duplicates kept).

    Keyed by this owner's ledger key by default; ``key=None`` gives the unkeyed fingerprints of spaces
    saved before keys existed (``CoreGradientSpace.fingerprint_key`` says which a space needs).
    """
    key = ledger_key() if key == LOCAL_KEY else key
    columns = list(columns)
    if not columns:
        raise ValueError("At least one column is needed to fingerprint examples.")
    if hasattr(rows, "with_format") and hasattr(rows, "column_names"):  # a datasets.Dataset: one Arrow read
        source = label_aliases(columns, rows.column_names)
        missing = [c for c in columns if source[c] not in rows.column_names]
        if missing:
            raise KeyError(f"Dataset has no column(s) {missing}; fingerprint columns are {columns}.")
        read = sorted(set(source.values()))
        batch = rows.select_columns(read).with_format("numpy")[:] if len(rows) else {c: [] for c in read}
        rows = ({c: batch[source[c]][i] for c in columns} for i in range(len(rows)))
    values = []
    for row in rows:
        missing = [c for c in columns if c not in row]
        if missing:
            raise KeyError(f"Example has no column(s) {missing}; fingerprint columns are {columns}.")
        values.append(example_fingerprint(row, columns, key))
    return torch.tensor(values, dtype=torch.int64)


def label_aliases(columns: Sequence[str], available: Sequence[str]) -> dict[str, str]:
    """Where to read each fingerprint column: a label column renamed since (``label`` → ``labels``) is
    read under its new name and still hashed under the old one, so the same example keeps its fingerprint."""
    present = [c for c in LABEL_KEYS if c in available]
    return {c: present[0] if c in LABEL_KEYS and c not in available and len(present) == 1 else c for c in columns}


_ADAPTER_MARKERS = ("lora_", ".modules_to_save.")


def _canonical_name(name: str) -> str | None:
    """A parameter's name as in the plain model (PEFT wrappers removed), or None for adapter weights."""
    if any(marker in name for marker in _ADAPTER_MARKERS):
        return None
    name = name.removeprefix("base_model.model.")
    return name.replace(".base_layer.", ".").replace(".original_module.", ".")


def state_fingerprint(model: nn.Module) -> str:
    """A hash of every parameter and floating-point buffer (biases, norms, running statistics).

    The inputs a protected layer sees depend on everything before it, not only on the protected weights:
    a model whose biases differ gives Grams that differ by hundreds of percent in deeper layers. Integer
    buffers (position ids, BatchNorm's batch counter) are left out; adapter weights (LoRA) too, so a
    space built on a base model still matches the same model wrapped by PEFT.
    """
    tensors = {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        canonical = _canonical_name(name)
        if canonical is not None and tensor.is_floating_point():
            tensors.setdefault(canonical, tensor)
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def model_fingerprint(
    model: nn.Module, layer_names: Iterable[str], modules: Mapping[str, nn.Module] | None = None
) -> dict[str, str]:
    """Hashes of the protected layers' architecture, of their weights and of the whole model state.

    A PEFT model is hashed as the model it computes: its adapters merged (on a copy). A freshly wrapped
    model (LoRA B = 0) therefore matches its base, and after an unlearning run the adapter model and
    its ``merge_and_unload()`` match each other but no longer the base, which still knows the data.
    ``modules`` is ignored then (it maps layer names to a PEFT model's ``base_layer`` modules).
    """
    if has_adapters(model):
        kinds = {str(getattr(c.peft_type, "value", c.peft_type)) for c in model.peft_config.values()}
        if not kinds <= {"LORA"}:
            raise CGSMismatchError(
                f"Only LoRA adapters can be unlearned through a Core Gradient Space; this model has {sorted(kinds)}. "
                "Merge the adapter into the model first, or unlearn the base model."
            )
        if not hasattr(model, "merge_and_unload"):
            raise CGSMismatchError(
                "The model carries adapters but cannot merge them (e.g. loaded with transformers' load_adapter): "
                "wrap it with peft.PeftModel, or merge the adapter into the weights first (a saved adapter folder: "
                "hf_unlearn.models.adapters.load_merged_adapter(folder, AutoModelForSequenceClassification))."
            )
        model, modules = copy.deepcopy(model).merge_and_unload(), None
    modules = dict(modules) if modules is not None else dict(model.named_modules())
    arch, weights, dtypes = hashlib.sha256(), hashlib.sha256(), set()
    for name in sorted(layer_names):
        module = modules.get(name)
        if module is None or layer_kind(module) is None:
            arch.update(f"{name}:missing;".encode())
            continue
        arch.update(f"{name}:{layer_kind(module)}:{tuple(module.weight.shape)};".encode())
        if module.weight.is_meta:
            raise ValueError(on_meta_device(f"The model ({type(model).__name__})"))
        weights.update(module.weight.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        dtypes.add(str(module.weight.dtype).removeprefix("torch."))
    return {
        "architecture": arch.hexdigest()[:16],
        "weights": weights.hexdigest()[:16],
        "state": state_fingerprint(model),
        "dtype": ",".join(sorted(dtypes)),  # named in the refusal when a model was converted
    }


def fingerprint_mismatch(built: Mapping[str, str], current: Mapping[str, str]) -> str | None:
    """How the model of ``current`` (a ``model_fingerprint``) differs from the one a space was ``built`` for, in
    words for the refusal; None when it is that model."""
    dtype, now = built.get("dtype"), current.get("dtype")
    if dtype and now != dtype:  # a float32 space on a bfloat16 copy of its model, say
        return (f"its protected weights are {now}, the cache was built for {dtype} weights (a model in another "
                f"dtype gives every layer other inputs); load the model as {dtype} (torch_dtype=torch.{dtype}), or "
                f"build a cache for the {now} model")
    if current["weights"] != built["weights"]:
        return "the protected layers' weights differ"
    if built.get("state", current["state"]) != current["state"]:
        return ("the protected weights match but other parameters or buffers (biases, norms, running statistics) "
                "differ")
    return None
