"""Reading a saved Core Gradient Space without trusting it: every failure names the path and the fix.

The space is the record of which deletion requests were honoured, so a flipped byte, a truncated file
or a hand-edited config must never load silently. The config stores a SHA-256 of the tensor file;
both are checked before a single tensor is used.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file


class CGSLoadError(ValueError):
    """A saved space that cannot be trusted: unreadable, incomplete, altered or corrupted."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
