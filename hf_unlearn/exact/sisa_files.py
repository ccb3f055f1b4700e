"""The files of a SISA ensemble, verified: a shard model or checkpoint that was deleted or altered is found when the
ensemble loads, not when ``predict`` reaches it, and a deletion never starts from a broken checkpoint.

Every stage's folder gets the SHA-256 of each file ``save_pretrained`` wrote, recorded in ``sisa_config.json``;
ensembles saved before these records are checked for a weights file only.
"""

from __future__ import annotations

from pathlib import Path

from ..core.storage import sha256_of

WEIGHT_FILES = (
    "model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json"
)


def folder_checksums(folder: Path) -> dict[str, str]:
    """``{file name: SHA-256}`` of every file a stage's ``save_pretrained`` wrote into ``folder``."""
    return {p.name: sha256_of(p) for p in sorted(Path(folder).iterdir()) if p.is_file()}


def stage_problem(folder: Path, recorded: dict[str, str] | None) -> str | None:
    """What is wrong with a saved stage (a missing folder or file, a changed file), or None when it is intact."""
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} is missing"
    if recorded:
        for name, expected in recorded.items():
            path = folder / name
            if not path.is_file():
                return f"{path} is missing"
            if sha256_of(path) != expected:
                return f"{path} does not match its recorded checksum (altered or corrupted)"
        return None
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        return f"{folder} holds no weights file ({', '.join(WEIGHT_FILES[:2])})"
    return None
