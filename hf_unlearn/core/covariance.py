"""Stream a dataset through a model once and keep, per protected layer, the Gram matrix G = Σ x xᵀ.

The Gram is all PGU needs from the training data: its eigenvectors span the inputs a layer has
seen, and G_retain = G_total − G_forget later gives the retain space with no training data at
hand. We never hold the representation matrix R (rows = every token / every conv patch); each
batch's RᵀR (its blocks on and above the diagonal, see ``symmetric.py``) is added to a float64
accumulator and dropped.

State lives in a dict keyed by layer name (never as attributes on modules) and the hooks are
removed when collection ends, also when it fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .errors import on_meta_device
from .labels import LABEL_KEYS
from .layers import (
    LINEAR,
    TRANSPOSED_LINEAR,
    LayerInfo,
    find_protectable_layers,
    input_rows,
    layer_info,
    layer_kind,
)
from .loaders import read_loader
from .symmetric import add_blocks, block_edges, mirror_upper, upper_blocks

PRECISIONS = {"float64": torch.float64, "float32": torch.float32}
# what a padding token's row is: "masked" = left out (rows of real tokens only), "counted" = a row like any other
PADDING_POLICIES = ("masked", "counted")


@dataclass
class GramStatistics:
    """Per-layer Gram matrices (float64, on CPU) and how many examples produced them."""

    grams: dict[str, torch.Tensor]
    layers: dict[str, LayerInfo]
    num_examples: int
    num_rows: dict[str, int] = field(default_factory=dict)
    padding: str = "masked"  # how padding tokens were treated (see ``PADDING_POLICIES``)


def default_forward(model: nn.Module, batch, device: torch.device | None) -> None:
    """Run ``model`` on a batch the way its type suggests: dict → ``model(**tensors)``, tuple → ``model(x)``."""
    if isinstance(batch, Mapping):
        # labels and non-tensor columns (raw text, ids as strings) are not model inputs
        inputs = {k: _to(v, device) for k, v in batch.items() if k not in LABEL_KEYS and torch.is_tensor(v)}
        model(**inputs)
    elif isinstance(batch, list | tuple):
        model(_to(batch[0], device))
    else:
        model(_to(batch, device))


def _to(value, device):
    return value.to(device) if device is not None and torch.is_tensor(value) else value


def floats_as(batch, dtype: torch.dtype | None):
    """``batch`` with its floating-point tensors in the model's dtype (a bfloat16 model fed float32 pixels would
    raise a dtype error in its first layer; Hugging Face vision models cast their inputs the same way)."""
    if dtype is None or not dtype.is_floating_point:
        return batch
    def cast(value):
        return value.to(dtype) if torch.is_tensor(value) and value.is_floating_point() else value
    if isinstance(batch, Mapping):
        return {k: v if k in LABEL_KEYS else cast(v) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(cast(v) for v in batch)
    return cast(batch)


def batch_size_of(batch) -> int:
    if isinstance(batch, Mapping):
        batch = next(v for v in batch.values() if torch.is_tensor(v))
    elif isinstance(batch, list | tuple):
        batch = batch[0]
    return int(batch.shape[0])


class GramCollector:
    """Forward hooks that add each protected layer's RᵀR to a float64 accumulator.

    Use as a context manager; the hooks are removed on exit whatever happens. Consecutive layers fed
    the very same input tensor (the query, key and value projections of an attention block) share
    one product instead of computing it three times.

    ``token_mask`` (set per batch, ``(batch, tokens)``, True for real tokens) drops the rows of padding
    tokens from every token-shaped Linear input: which positions are padding depends on how examples
    were batched, so counting them would make a Gram depend on the batching, and G_total − G_forget
    would not be the retain set's Gram.
    """

    def __init__(
        self, layers: Mapping[str, nn.Module], precision: str = "float64", row_fraction: float = 1.0, seed: int = 0
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if not 0.0 < row_fraction <= 1.0:
            raise ValueError(f"row_fraction must lie in (0, 1], got {row_fraction}")
        self.row_fraction = row_fraction
        self._generator = torch.Generator().manual_seed(seed)
        self.layers = dict(layers)
        self.product_dtype = PRECISIONS[precision]
        self.grams: dict[str, torch.Tensor] = {}
        self.num_rows: dict[str, int] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        # (input, its version, product blocks, rows): the last shareable input and what it gave
        self._last: tuple[torch.Tensor, int, list, int] | None = None
        self._edges: dict[str, list[int]] = {}  # column blocks of each Gram (only the upper ones are summed)
        self.token_mask: torch.Tensor | None = None

    def __enter__(self) -> GramCollector:
        for name, module in self.layers.items():
            info = layer_info(module)
            device = module.weight.device
            self.grams[name] = torch.zeros(info.input_dim, info.input_dim, dtype=torch.float64, device=device)
            self._edges[name] = block_edges(info.input_dim)
            self.num_rows[name] = 0
            self._handles.append(module.register_forward_hook(self._make_hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for name, gram in self.grams.items():
            mirror_upper(gram, self._edges[name])
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._last = None

    def _product(self, module: nn.Module, x: torch.Tensor) -> tuple[list, int]:
        shareable = layer_kind(module) in (LINEAR, TRANSPOSED_LINEAR)
        if shareable and self._last is not None:
            last_x, version, product, n_rows = self._last
            if last_x is x and x._version == version:
                return product, n_rows
        mask = self.token_mask
        if shareable and mask is not None and x.dim() == 3 and tuple(x.shape[:2]) == tuple(mask.shape):
            rows = x.detach()[mask].to(self.product_dtype)  # real tokens only
        else:  # cast before a convolution unfolds its input: up to k² times fewer values to convert
            rows = input_rows(module, x.detach().to(self.product_dtype))
        count = rows.shape[0]
        if self.row_fraction < 1.0 and count > 1:  # a uniform sample, scaled so the Gram stays unbiased
            keep = max(1, round(count * self.row_fraction))
            chosen = torch.randperm(count, generator=self._generator)[:keep].to(rows.device)
            rows = rows[chosen] * (count / keep) ** 0.5
        product = upper_blocks(rows, block_edges(rows.shape[1]))  # added to the float64 total as it is
        if shareable:
            self._last = (x, x._version, product, count)
        return product, count

    def _make_hook(self, name: str) -> Callable:
        def hook(module: nn.Module, args: tuple, output) -> None:
            product, n_rows = self._product(module, args[0])
            add_blocks(self.grams[name], product)
            self.num_rows[name] += n_rows

        return hook

    def all_reduce(self) -> None:
        """Sum the accumulators over all processes (sorted names: every rank reduces in one order)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        for name in sorted(self.grams):
            dist.all_reduce(self.grams[name], op=dist.ReduceOp.SUM)
        counts = torch.tensor([self.num_rows[n] for n in sorted(self.grams)], dtype=torch.float64)
        counts = counts.to(next(iter(self.grams.values())).device)
        dist.all_reduce(counts, op=dist.ReduceOp.SUM)
        for name, count in zip(sorted(self.grams), counts.tolist()):
            self.num_rows[name] = int(count)


def as_batches(data, batch_size: int = 64, collate_fn: Callable | None = None) -> Iterable:
    """Accept a DataLoader, a ``datasets.Dataset`` or any iterable of batches."""
    if isinstance(data, DataLoader):
        return data
    if hasattr(data, "with_format") and hasattr(data, "column_names"):  # a datasets.Dataset
        if len(data) == 0:
            raise ValueError("The dataset is empty: there is nothing to collect statistics from.")
        if collate_fn is None:
            data = data.with_format("torch")
        return read_loader(data, batch_size, collate_fn)
    if isinstance(data, torch.utils.data.Dataset):
        return read_loader(data, batch_size, collate_fn)
    return data


def shortest_first(data):
    """A tokenised ``datasets.Dataset`` with ragged ``input_ids`` in order of length, else ``data`` as given.

    A batch is padded to its longest text: one 512-token SMS among 74 forget messages of 61 tokens on average
    made their Gram collection 6.3 s instead of 2.1 s sorted (MiniLM). Masked Grams sum over real
    tokens only, so the order changes nothing but the padding.
    """
    if not hasattr(data, "with_format") or "input_ids" not in getattr(data, "column_names", ()) or len(data) < 2:
        return data
    ids = data.with_format("arrow")["input_ids"]
    if not pa.types.is_list(ids.type) and not pa.types.is_large_list(ids.type):
        return data  # fixed-size lists are padded already
    lengths = pc.list_value_length(ids).to_numpy(zero_copy_only=False)
    order = np.argsort(lengths, kind="stable")  # equal lengths keep their order: nothing to gain, nothing moved
    return data if (order == np.arange(len(order))).all() else data.select(order.tolist())


def collect_gram_matrices(
    model: nn.Module,
    data,
    *,
    layers: Mapping[str, nn.Module] | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    batch_size: int = 64,
    collate_fn: Callable | None = None,
    forward_fn: Callable[[nn.Module, object, torch.device | None], None] = default_forward,
    precision: str = "float64",
    padding: str = "masked",
    row_fraction: float = 1.0,
    show_progress: bool = True,
    desc: str = "Collecting CGS statistics",
) -> GramStatistics:
    """One pass over ``data`` in eval mode and no-grad; returns the per-layer Gram matrices.

    ``data`` is a DataLoader, a ``datasets.Dataset`` (columns as model keyword arguments; label
    columns are ignored) or any iterable of batches. When ``torch.distributed`` is initialised each
    process passes over its own shard and the Grams are summed across processes.
    ``precision="float32"`` computes each batch's product in float32 (faster, ~1e-7 relative
    error) before float64 accumulation; the default is float64 throughout.
    ``padding="masked"`` leaves out the rows of tokens a batch's ``attention_mask`` marks as padding
    (Linear inputs shaped ``(batch, tokens, features)``); ``"counted"`` keeps them, as spaces saved
    without a ``padding`` entry in their config did. Grams that are added or subtracted must use the same policy.
    ``row_fraction < 1`` is the sketched mode (opt-in): each product uses a seeded uniform sample of that
    share of the rows (tokens, conv patches), scaled by 1/fraction, so the Gram is an unbiased estimate
    at a fraction of the cost. How much of the exact top directions' energy it keeps depends on the
    spectrum (docs/performance.md §1b: 0.998 on digits, 0.57-0.78 on random ViT/BERT inputs at 1/4).
    ``num_rows`` counts every row seen.
    """
    if padding not in PADDING_POLICIES:
        raise ValueError(f"padding must be one of {PADDING_POLICIES}, got {padding!r}")
    if padding == "masked" and getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        # the batch's mask describes the encoder's tokens; a decoder input of the same length would be cut by it
        padding = "counted"
    if layers is None:
        layers = find_protectable_layers(model, include=include, exclude=exclude)
    if padding == "masked" and row_fraction == 1.0:  # the Gram then does not depend on the order: pad least
        data = shortest_first(data)
    batches = as_batches(data, batch_size=batch_size, collate_fn=collate_fn)
    weight = next(iter(layers.values())).weight if layers else None
    if weight is not None and weight.is_meta:
        raise ValueError(on_meta_device(f"The model ({type(model).__name__})"))
    device = weight.device if weight is not None else None
    dtype = weight.dtype if weight is not None else None
    was_training = model.training
    model.eval()
    num_examples = 0
    total = len(batches) if hasattr(batches, "__len__") else None
    try:
        with GramCollector(layers, precision=precision, row_fraction=row_fraction) as collector, torch.no_grad():
            for batch in tqdm(batches, total=total, desc=desc, disable=not show_progress, leave=False):
                num_examples += batch_size_of(batch)
                collector.token_mask = _token_mask(batch, device) if padding == "masked" else None
                forward_fn(model, floats_as(batch, dtype), device)
            collector.all_reduce()
    finally:
        model.train(was_training)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        count = torch.tensor([num_examples], dtype=torch.float64, device=device)
        dist.all_reduce(count)
        num_examples = int(count.item())
    if num_examples == 0:
        raise ValueError("No examples were seen: the data yielded no batches.")
    return GramStatistics(
        grams={name: gram.cpu() for name, gram in collector.grams.items()},
        layers={name: layer_info(module) for name, module in layers.items()},
        num_examples=num_examples,
        num_rows=dict(collector.num_rows),
        padding=padding,
    )


def _token_mask(batch, device: torch.device | None) -> torch.Tensor | None:
    """The batch's attention mask as booleans (real tokens), when it has a 2-D one."""
    mask = batch.get("attention_mask") if isinstance(batch, Mapping) else None
    if not torch.is_tensor(mask) or mask.dim() != 2:
        return None
    return _to(mask, device).bool()
