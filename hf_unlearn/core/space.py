"""The Core Gradient Space: what each protected layer must keep, built once, reused per request.

The space stores per-layer Gram matrices of the data still to be kept (float64). Bases and ranks
are derived from them on demand, so a deletion request is one subtraction, G ← G − G_forget, and
never needs the training data again. A ledger of example fingerprints records every request so
the same examples are never subtracted twice and examples the cache never saw are refused.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from .carried_ledger import CarriedLedger
from .covariance import PADDING_POLICIES, GramStatistics, collect_gram_matrices
from .decomposition import SpaceDecompositions
from .energy import DEFAULT_ENERGY, DEFAULT_GAMMA, check_energy, check_gamma
from .errors import CGSMismatchError, LedgerError, not_training_examples
from .fingerprint import LOCAL_KEY, fingerprint_examples, fingerprint_mismatch, model_fingerprint
from .gram_checks import check_grams, check_low_rank
from .layers import LayerInfo
from .ledger_key import KEY_ENV, key_id, key_path, ledger_key
from .low_rank import LowRankGram, compress_grams, subtract_grams
from .paged_grams import page_out
from .processing import forward_inputs, is_tokenizer
from .shared_grams import share_equal
from .space_io import load_space, save_space

logger = logging.getLogger(__name__)


class CoreGradientSpace(SpaceDecompositions):
    """Per-layer spaces of the retained data's inputs, with thresholds, a ledger and persistence."""

    def __init__(
        self,
        grams: Mapping[str, torch.Tensor],
        layers: Mapping[str, LayerInfo],
        num_examples: int,
        *,
        gamma: float = DEFAULT_GAMMA,
        gamma_overrides: Mapping[str, float] | None = None,
        energy: str = DEFAULT_ENERGY,
        model_fingerprint: Mapping[str, str] | None = None,
        train_fingerprints: torch.Tensor | None = None,
        fingerprint_columns: Iterable[str] | None = None,
        ledger: list[dict] | None = None,
        ledger_fingerprints: list[torch.Tensor] | None = None,
        fingerprint_key_id: str | None = LOCAL_KEY,
        padding: str = "masked",
        provenance: Mapping | None = None,
    ):
        if set(grams) != set(layers):
            raise ValueError("grams and layers must name the same layers")
        for name, gram in grams.items():
            d = layers[name].input_dim
            if tuple(gram.shape) != (d, d):
                raise CGSMismatchError(f"Layer '{name}': Gram is {tuple(gram.shape)}, the layer needs ({d}, {d}).")
        if padding not in PADDING_POLICIES:
            raise ValueError(f"padding must be one of {PADDING_POLICIES}, got {padding!r}")
        self.padding = padding  # how padding tokens were treated; a request's Grams must be collected the same way
        dense = share_equal({n: g.to(torch.float64) for n, g in grams.items() if not isinstance(g, LowRankGram)})
        check_grams(dense, "The Core Gradient Space")
        check_low_rank({n: g for n, g in grams.items() if isinstance(g, LowRankGram)}, "The Core Gradient Space")
        self.grams = {name: dense.get(name, gram) for name, gram in grams.items()}  # low-rank ones as given
        self.layers = dict(layers)
        self.num_examples = int(num_examples)
        self.gamma = check_gamma(gamma)
        overrides = gamma_overrides or {}
        self.gamma_overrides = {p: check_gamma(g, f"gamma_overrides[{p!r}]") for p, g in overrides.items()}
        self.energy = check_energy(energy)
        self.model_fingerprint = dict(model_fingerprint or {})
        self.train_fingerprints = train_fingerprints
        self.fingerprint_columns = list(fingerprint_columns) if fingerprint_columns else None
        self.ledger = list(ledger or [])
        self.ledger_fingerprints = list(ledger_fingerprints or [])
        # which key made the fingerprints: this owner's by default, None for unkeyed ones (saved before keys)
        self.fingerprint_key_id = key_id(ledger_key()) if fingerprint_key_id == LOCAL_KEY else fingerprint_key_id
        # eigenvalues of every decomposed layer; eigenvectors only of those whose ``eigen`` was asked for
        self._values: dict[str, torch.Tensor] = {}
        self._vectors: dict[str, torch.Tensor] = {}
        # how the Grams were collected (e.g. during training, on moving weights): a record for the user, never checked
        self.provenance = dict(provenance or {})

    # ----------------------------------------------------------------- building
    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        data,
        *,
        include: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        fingerprint_columns: Iterable[str] | None = None,
        batch_size: int = 64,
        gamma: float = DEFAULT_GAMMA,
        gamma_overrides: Mapping[str, float] | None = None,
        energy: str = DEFAULT_ENERGY,
        show_progress: bool = True,
        processing_class=None,
        fingerprint_data=None,
        **collect_kwargs,
    ) -> CoreGradientSpace:
        """Build the space from the full training data (a ``datasets.Dataset``, DataLoader or batches).

        With a ``datasets.Dataset`` and ``fingerprint_columns`` (default: all its columns), the
        fingerprints of every training example are kept so later requests can be checked against them.
        ``processing_class`` (a tokenizer) pads each batch, and only the columns ``model.forward``
        takes are fed to the model, as ``UnlearningTrainer`` does: a tokenised dataset that still has
        its raw text column works as it is. ``fingerprint_data`` is fingerprinted instead of ``data`` when
        the rows requests will name differ from what the model reads (raw texts of a tokenised LM set).
        """
        record = CarriedLedger.of(model, cls)  # the model folder's ledger is carried in (carried_ledger.py)
        if record is not None:
            data, fingerprint_data = record.leave_out(data, fingerprint_data)
        # a forward_fn picks its own inputs
        model_inputs = data if "forward_fn" in collect_kwargs else forward_inputs(model, data)
        if is_tokenizer(processing_class):
            collect_kwargs.setdefault("collate_fn", lambda rows: processing_class.pad(rows, return_tensors="pt"))
        stats = collect_gram_matrices(
            model,
            model_inputs,
            include=include,
            exclude=exclude,
            batch_size=batch_size,
            show_progress=show_progress,
            **collect_kwargs,
        )
        train_fps, columns = None, None
        rows = fingerprint_data if fingerprint_data is not None else data
        if hasattr(rows, "column_names"):
            columns = list(fingerprint_columns) if fingerprint_columns else list(rows.column_names)
            train_fps = fingerprint_examples(rows.select_columns(columns), columns)
        space = cls(
            stats.grams,
            stats.layers,
            stats.num_examples,
            gamma=gamma,
            gamma_overrides=gamma_overrides,
            energy=energy,
            model_fingerprint=model_fingerprint(model, stats.layers),
            train_fingerprints=train_fps,
            fingerprint_columns=columns,
            padding=stats.padding,
        )
        return record.carry_into(space) if record is not None else space

    # ----------------------------------------------------------------- thresholds and bases
    def gamma_for(self, name: str) -> float:
        for pattern, gamma in self.gamma_overrides.items():
            if fnmatch.fnmatchcase(name, pattern):
                return gamma
        return self.gamma

    def set_threshold(self, gamma: float, energy: str | None = None) -> None:
        """Change the default γ (and energy measure); bases are derived, so nothing is recomputed."""
        self.gamma = check_gamma(gamma)
        if energy is not None:
            self.energy = check_energy(energy)

    def compress(self, rank: int) -> None:
        """Keep each layer's Gram as its top-``rank`` eigenpairs (see ``low_rank.py`` for what is lost).

        Layers that share one Gram share its compressed form. The space then stores ``(d + 1) · rank``
        numbers per distinct input instead of ``d²``; requests subtract from it as before.
        """
        self.grams = compress_grams(self.grams, rank)
        self.clear_decompositions()

    @property
    def low_rank(self) -> bool:
        return any(isinstance(g, LowRankGram) for g in self.grams.values())

    def nbytes(self) -> int:
        """Bytes the Grams (or their compressed forms) take in memory, shared ones counted once."""
        distinct = {id(g): g for g in self.grams.values()}.values()
        return sum(g.nbytes if isinstance(g, LowRankGram) else g.element_size() * g.numel() for g in distinct)

    def summary(self) -> list[dict]:
        rows = []
        for n, i in self.layers.items():
            row = {"layer": n, "kind": i.kind, "dim": i.input_dim, "rank": self.rank(n), "gamma": self.gamma_for(n)}
            if isinstance(self.grams[n], LowRankGram):
                row["stored_rank"] = self.grams[n].rank_kept
            rows.append(row)
        return rows

    # ----------------------------------------------------------------- model checks
    def check_model(
        self, model: nn.Module, *, check_weights: bool = True, modules: Mapping[str, nn.Module] | None = None
    ) -> None:
        """Raise :class:`CGSMismatchError` unless ``model`` is the model this space describes.

        ``modules`` maps the space's layer names to modules when the model renames them (PEFT).
        """
        modules = dict(modules) if modules is not None else dict(model.named_modules())
        for name, info in self.layers.items():
            module = modules.get(name)
            if module is None or not hasattr(module, "weight"):
                raise CGSMismatchError(
                    f"The cache protects layer '{name}', which {type(model).__name__} does not have. "
                    "It was built for another architecture: rebuild it with CoreGradientSpace.from_model."
                )
            if tuple(module.weight.shape) != info.weight_shape:
                raise CGSMismatchError(
                    f"Layer '{name}' has weight shape {tuple(module.weight.shape)} but the cache was built for "
                    f"{info.weight_shape}. Rebuild the cache for this model."
                )
        if check_weights and self.model_fingerprint.get("weights"):
            what = fingerprint_mismatch(self.model_fingerprint, model_fingerprint(model, self.layers, modules))
            if what is None:
                return
            raise CGSMismatchError(
                f"The model is not the one this cache was built (or last updated) with: {what}. The inputs every "
                "protected layer sees depend on all of them, so the cached statistics would be wrong. A cache "
                "describes one trained model: rebuild it for this one, or pass check_weights=False if you know better."
            )

    def bind_model(self, model: nn.Module, modules: Mapping[str, nn.Module] | None = None) -> None:
        """Record ``model``'s current weights as the ones this space now describes (after a request)."""
        self.model_fingerprint = model_fingerprint(model, self.layers, modules)

    # ----------------------------------------------------------------- deletion requests
    def fingerprint_key(self) -> bytes | None:
        """The key to fingerprint examples with for this space (this owner's; None for an unkeyed space)."""
        if self.fingerprint_key_id is None:
            return None
        key = ledger_key()
        if key_id(key) != self.fingerprint_key_id:
            raise LedgerError(
                f"This space's example fingerprints were made with ledger key {self.fingerprint_key_id}, but this "
                f"machine's key is {key_id(key)}. Set {KEY_ENV} (or copy the key file {key_path()}) from where the "
                "space was built; see docs/guarantees.md."
            )
        return key

    def check_request(self, fingerprints: torch.Tensor) -> None:
        """Raise :class:`LedgerError` if these examples cannot be forgotten (nothing changes)."""
        self.fingerprint_key()  # fingerprints made under another key would all look unknown
        if fingerprints.numel() == 0:
            raise LedgerError("The forget set is empty: there is nothing to unlearn.")
        wanted = Counter(fingerprints.tolist())
        done = Counter(torch.cat(self.ledger_fingerprints).tolist()) if self.ledger_fingerprints else Counter()
        have = Counter(self.train_fingerprints.tolist()) if self.train_fingerprints is not None else None
        if have is not None:
            unknown = [fp for fp in wanted if fp not in have]
            if unknown:
                rows = [i for i, fp in enumerate(fingerprints.tolist()) if fp not in have]
                raise LedgerError(not_training_examples(rows, fingerprints.numel(), self.fingerprint_columns))
        twice = [fp for fp, n in wanted.items() if n > 1 and (have is None or n > have[fp])]
        if twice:
            raise LedgerError(
                f"{len(twice)} example(s) appear more than once in this request"
                f"{' (more often than in the training data)' if have is not None else ''}: remove the duplicates."
            )
        if have is not None:
            repeated = [fp for fp, n in wanted.items() if n + done[fp] > have[fp]]
        else:
            repeated = [fp for fp in wanted if done[fp]]
        if repeated:
            raise LedgerError(
                f"{len(repeated)} forget examples were already forgotten by an earlier request "
                f"(ledger has {len(self.ledger)} request(s)); subtracting them again would corrupt the space."
            )

    def subtract(self, forget: GramStatistics, fingerprints: torch.Tensor, note: str = "") -> None:
        """Apply a deletion request: G ← G − G_forget for every layer, recorded in the ledger."""
        self.check_request(fingerprints)
        if set(forget.grams) != set(self.grams):
            raise CGSMismatchError("The forget statistics cover other layers than the cache.")
        if forget.padding != self.padding:
            raise CGSMismatchError(
                f"The forget statistics were collected with padding tokens {forget.padding} but the cache with them "
                f"{self.padding}: the subtraction would not give the retain set's Gram. Collect them with "
                f"collect_gram_matrices(..., padding={self.padding!r})."
            )
        if forget.num_examples != fingerprints.numel():
            raise LedgerError(
                f"The forget statistics come from {forget.num_examples} examples but {fingerprints.numel()} "
                "fingerprints were given."
            )
        check_grams(forget.grams, "The forget set's statistics", symmetric=False)
        for name, gram in forget.grams.items():
            if gram.shape != self.grams[name].shape:
                raise CGSMismatchError(
                    f"Layer '{name}': forget Gram {tuple(gram.shape)} vs cache {tuple(self.grams[name].shape)}"
                )
        self.grams = subtract_grams(self.grams, forget.grams)  # all layers or none
        dense = share_equal({n: g for n, g in self.grams.items() if not isinstance(g, LowRankGram)})
        self.grams = {name: dense.get(name, gram) for name, gram in self.grams.items()}
        self.num_examples -= forget.num_examples
        self.ledger.append(
            {
                "request": len(self.ledger) + 1,
                "num_examples": int(fingerprints.numel()),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "note": note,
            }
        )
        self.ledger_fingerprints.append(fingerprints.to(torch.int64).clone())
        self.clear_decompositions()

    def page_out_grams(self, directory: str | Path) -> bool:
        """Map the dense Grams from a file written in ``directory`` (``paged_grams.py``); False if they stay."""
        paged = page_out(self.grams, directory)
        if paged is not None:
            self.grams = paged
        return paged is not None

    def request_copy(self) -> CoreGradientSpace:
        """A deep copy that shares this space's Gram tensors and none of its decompositions: a request replaces the
        copy's Grams with new ones and never writes into them, so copying them would only double the memory."""
        memo = {id(gram): gram for gram in self.grams.values()}
        memo.update({id(self._values): {}, id(self._vectors): {}})
        return copy.deepcopy(self, memo)

    # ----------------------------------------------------------------- persistence (space_io.py)
    def save_pretrained(self, save_directory: str | Path, gram_dtype: torch.dtype = torch.float64) -> None:
        """Write ``cgs.safetensors`` (Grams, fingerprints) and ``cgs_config.json``; no pickle.

        ``gram_dtype=torch.float32`` halves the size (for publishing); a loaded space computes in float64.
        """
        save_space(self, Path(save_directory), gram_dtype)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        model: nn.Module | None = None,
        *,
        check_weights: bool = True,
        gamma: float | None = None,
        gamma_overrides: Mapping[str, float] | None = None,
        energy: str | None = None,
    ) -> CoreGradientSpace:
        """Load a saved space; with ``model``, refuse it unless it was built for that model.

        ``gamma``, ``gamma_overrides`` and ``energy`` replace the saved thresholds when given.
        """
        space = load_space(cls, Path(directory), gamma=gamma, gamma_overrides=gamma_overrides, energy=energy)
        if model is not None:
            space.check_model(model, check_weights=check_weights)
        return space
