"""Reading a saved Core Gradient Space without trusting it: every failure names the path and the fix.

The space is the record of which deletion requests were honoured, so a flipped byte, a truncated file
or a hand-edited config must never load silently. The config stores a SHA-256 of the tensor file, and
the tensor file (format 6 on) a SHA-256 of the rest of the config in its header: together they cover
the whole record, so an edited ledger, γ or example count is refused like a flipped byte. (A checksum
is not a signature: whoever rewrites both files consistently is caught only by the checks on what
they hold, see docs/guarantees.md.)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

CONFIG_DIGEST_KEY = "config_sha256"  # in the tensor file's header: the digest of the config without its checksum


class CGSLoadError(ValueError):
    """A saved space that cannot be trusted: unreadable, incomplete, altered or corrupted."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def config_digest(config: dict) -> str:
    """SHA-256 of the config as JSON (keys sorted), without ``tensors_sha256`` (which depends on the digest)."""
    body = {k: v for k, v in config.items() if k != "tensors_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def check_config_digest(path: Path, config_name: str, tensors_name: str, config: dict) -> None:
    """The config is the one the tensor file was written with (format 6 on; older files carry no digest)."""
    fix = f"Restore {path} from a backup (or rebuild it with CoreGradientSpace.from_model)."
    with safe_open(str(path / tensors_name), "pt") as handle:
        recorded = (handle.metadata() or {}).get(CONFIG_DIGEST_KEY)
    if recorded is None:
        if config["format_version"] >= 6:
            raise CGSLoadError(f"{path / tensors_name} carries no digest of {config_name}: it was rewritten. {fix}")
        return
    if recorded != config_digest(config):
        raise CGSLoadError(
            f"{path / config_name} was edited after it was saved (its ledger, thresholds, example count or "
            f"layers no longer match the digest in {tensors_name}): a changed record could let a request run "
            f"twice. {fix}"
        )


def read_saved(
    path: Path, config_name: str, tensors_name: str, readable_versions: tuple[int, ...]
) -> tuple[dict, dict[str, torch.Tensor]]:
    """The config and tensors of a saved space, verified against the checksum the config records."""
    fix = f"Rebuild it with CoreGradientSpace.from_model (or restore {path} from a backup)."
    if not (path / config_name).is_file():
        raise FileNotFoundError(f"No {config_name} in {path}: not a saved Core Gradient Space. {fix}")
    try:
        config = json.loads((path / config_name).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CGSLoadError(f"{path / config_name} is not valid JSON ({error}). {fix}") from error
    if not isinstance(config, dict) or config.get("format_version") not in readable_versions:
        version = config.get("format_version") if isinstance(config, dict) else None
        raise CGSLoadError(f"Unsupported CGS format version {version!r} in {path} (readable: {readable_versions}).")
    tensors_path = path / tensors_name
    if not tensors_path.is_file():
        raise CGSLoadError(f"{tensors_path} is missing: the space was not saved completely. {fix}")
    expected = config.get("tensors_sha256")
    if expected is None and config["format_version"] >= 2:
        raise CGSLoadError(f"{path / config_name} records no checksum of {tensors_name}. {fix}")
    if expected is not None and sha256_of(tensors_path) != expected:
        raise CGSLoadError(
            f"{tensors_path} does not match the checksum in {config_name}: the file was altered or corrupted. {fix}"
        )
    try:
        tensors = load_file(str(tensors_path))
    except Exception as error:  # safetensors raises its own error types for truncated or foreign files
        raise CGSLoadError(f"{tensors_path} cannot be read ({error}). {fix}") from error
    return config, tensors
