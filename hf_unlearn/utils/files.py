"""Records written whole or not at all: a run killed mid-write leaves no half file that the next run would trust."""

from __future__ import annotations

import json
from pathlib import Path


def write_json_atomically(path: Path, value) -> None:
    """``value`` as JSON at ``path`` (its folder made), through a hidden partial file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(value, indent=2))
    partial.replace(path)
