"""Saving and loading a Core Gradient Space: safetensors plus a JSON config, checksummed, no pickle.

The tensor file is written first and the config last, each through a rename, so a crash mid-save
never leaves a config that names other tensors; loading verifies the checksum before any tensor is
used (storage.py). Equal Grams (layers sharing an input) are written once and named in
``gram_aliases``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file

from .errors import CGSMismatchError
from .layers import LayerInfo
from .low_rank import LowRankGram
from .shared_grams import aliases
from .storage import CONFIG_DIGEST_KEY, CGSLoadError, check_config_digest, config_digest, read_saved, sha256_of

CONFIG_NAME = "cgs_config.json"
TENSORS_NAME = "cgs.safetensors"
# 2: the tensor file's checksum, whole-model fingerprint; 3: keyed example fingerprints; 4: equal Grams stored once;
# 5: low-rank layers (top eigenpairs + tail sums) and the padding policy; 6: the config's digest in the tensor file,
# each dense Gram's trace
FORMAT_VERSION = 6
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6)


def save_space(space, path: Path, gram_dtype: torch.dtype = torch.float64) -> None:
    """``space`` to ``path`` (see ``CoreGradientSpace.save_pretrained``)."""
    path.mkdir(parents=True, exist_ok=True)
    shared = aliases(space.grams)  # equal Grams (q, k, v) are written once
    owners = {n: g for n, g in space.grams.items() if n not in shared}
    tensors = {f"gram.{n}": g.to(gram_dtype).contiguous() for n, g in owners.items() if not isinstance(g, LowRankGram)}
    low_rank = {n: g for n, g in owners.items() if isinstance(g, LowRankGram)}
    for n, g in low_rank.items():
        tensors[f"lowrank.{n}.values"] = g.values.contiguous()
        tensors[f"lowrank.{n}.vectors"] = g.vectors.contiguous()
    if space.train_fingerprints is not None:
        tensors["train_fingerprints"] = space.train_fingerprints.contiguous()
    for i, fps in enumerate(space.ledger_fingerprints):
        tensors[f"ledger.{i}"] = fps.contiguous()
    config = {
        "format_version": FORMAT_VERSION,
        "gram_dtype": str(gram_dtype).removeprefix("torch."),
        "gram_aliases": shared,
        "layers": {n: {"kind": i.kind, "weight_shape": list(i.weight_shape)} for n, i in space.layers.items()},
        "num_examples": space.num_examples,
        "gamma": space.gamma,
        "gamma_overrides": space.gamma_overrides,
        "energy": space.energy,
        "model_fingerprint": space.model_fingerprint,
        "fingerprint_columns": space.fingerprint_columns,
        "fingerprint_key_id": space.fingerprint_key_id,
        "padding": space.padding,
        "low_rank": {
            n: {"tail_sigma": g.tail_sigma, "tail_sigma2": g.tail_sigma2, "dropped_bound": g.dropped_bound}
            for n, g in low_rank.items()
        },
        "ledger": space.ledger,
        "provenance": space.provenance,
        # each stored dense Gram's trace: a Gram replaced in the tensor file (its checksum fixed) no longer matches
        "traces": {n[len("gram."):]: float(t.double().trace()) for n, t in tensors.items() if n.startswith("gram.")},
    }
    config = json.loads(json.dumps(config))  # as it will read back (tuples as lists), so the digest matches
    staged = path / f".{TENSORS_NAME}.partial"
    save_file(tensors, str(staged), metadata={CONFIG_DIGEST_KEY: config_digest(config)})
    staged.replace(path / TENSORS_NAME)
    config["tensors_sha256"] = sha256_of(path / TENSORS_NAME)
    # the config goes last, through a rename: a crash mid-save never leaves a config naming other tensors
    partial = path / f".{CONFIG_NAME}.partial"
    partial.write_text(json.dumps(config, indent=2))
    partial.replace(path / CONFIG_NAME)


def load_space(
    cls,
    path: Path,
    *,
    gamma: float | None = None,
    gamma_overrides: Mapping[str, float] | None = None,
    energy: str | None = None,
):
    """A ``cls`` space read from ``path``, every failure named with the fix (``CGSLoadError``)."""
    config, tensors = read_saved(path, CONFIG_NAME, TENSORS_NAME, READABLE_VERSIONS)
    fix = f"Rebuild it with CoreGradientSpace.from_model (or restore {path} from a backup)."
    where = f"The saved Core Gradient Space in {path}"
    try:
        layers = {n: LayerInfo(v["kind"], tuple(v["weight_shape"])) for n, v in config["layers"].items()}
        space = cls(
            _grams(config, tensors, layers),
            layers,
            config["num_examples"],
            gamma=config["gamma"] if gamma is None else gamma,
            gamma_overrides=config["gamma_overrides"] if gamma_overrides is None else gamma_overrides,
            energy=config["energy"] if energy is None else energy,
            model_fingerprint=config["model_fingerprint"],
            train_fingerprints=tensors.get("train_fingerprints"),
            fingerprint_columns=config["fingerprint_columns"],
            ledger=config["ledger"],
            ledger_fingerprints=[tensors[f"ledger.{i}"] for i in range(len(config["ledger"]))],
            fingerprint_key_id=config.get("fingerprint_key_id"),  # absent: unkeyed (format 1 and 2)
            padding=config.get("padding", "counted"),  # absent: saved before padding rows were masked
            provenance=config.get("provenance"),
        )
    except KeyError as error:
        raise CGSLoadError(f"{where} is incomplete: {error} is missing. {fix}") from error
    except (TypeError, AttributeError) as error:
        raise CGSLoadError(f"{where} has a malformed config ({error}). {fix}") from error
    except CGSMismatchError:
        raise
    except ValueError as error:
        raise CGSLoadError(f"{where} cannot be used: {error} {fix}") from error
    check_config_digest(path, CONFIG_NAME, TENSORS_NAME, config)
    _check_ledger(config, tensors, where, fix)
    _check_traces(config, tensors, where, fix)
    return space


def _check_traces(config: dict, tensors: dict[str, torch.Tensor], where: str, fix: str) -> None:
    """Each dense Gram has the trace recorded when it was saved (format 6 on)."""
    for name, recorded in config.get("traces", {}).items():
        trace = float(tensors[f"gram.{name}"].double().trace())
        if abs(trace - recorded) > 1e-9 * max(abs(recorded), 1e-300):
            raise CGSLoadError(
                f"{where}: the Gram of layer '{name}' has trace {trace:.6g}, but {recorded:.6g} was recorded when "
                f"it was saved: the tensor file was rewritten. {fix}"
            )


def _check_ledger(config: dict, tensors: dict[str, torch.Tensor], where: str, fix: str) -> None:
    """The JSON ledger lists exactly the requests whose fingerprints the tensor file holds, each with its count."""
    entries = config["ledger"]
    stored = sorted(int(k.split(".", 1)[1]) for k in tensors if k.startswith("ledger."))
    if stored != list(range(len(entries))):
        raise CGSLoadError(
            f"{where} lists {len(entries)} request(s) in its ledger, but its tensor file holds the fingerprints of "
            f"{len(stored)}: the ledger was edited, and a forgotten request could run again. {fix}"
        )
    for i, entry in enumerate(entries):
        count = tensors[f"ledger.{i}"].numel()
        if not isinstance(entry, dict) or entry.get("request") != i + 1 or entry.get("num_examples") != count:
            raise CGSLoadError(
                f"{where}: ledger entry {i + 1} ({entry}) does not match the {count} fingerprints stored for it: "
                f"the ledger was edited. {fix}"
            )


def _grams(config: dict, tensors: dict[str, torch.Tensor], layers) -> dict:
    """Each layer's Gram (dense tensor or ``LowRankGram``); layers saved as aliases get their owner's object."""
    owners = config.get("gram_aliases", {})
    low_rank = config.get("low_rank", {})
    built: dict[str, object] = {}
    for name in layers:
        owner = owners.get(name, name)
        if owner not in built:
            if owner in low_rank:
                tail = low_rank[owner]
                built[owner] = LowRankGram(tensors[f"lowrank.{owner}.values"], tensors[f"lowrank.{owner}.vectors"],
                                           tail["tail_sigma"], tail["tail_sigma2"], tail["dropped_bound"])
            else:
                built[owner] = tensors[f"gram.{owner}"]
    return {name: built[owners.get(name, name)] for name in layers}
