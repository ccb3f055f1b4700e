"""Where benchmark numbers live: one JSON file per benchmark, ``benchmarks/results/<name>.json``.

Every benchmark script hands its numbers to :func:`write_results`, which adds what a reader needs to trust
them — the command, the commit, the date and the machine — so the docs never have to say when or where a
number was measured. The tables in ``docs/*.md`` and ``README.md`` are rendered from these files by
``benchmarks/render_docs.py``; ``tests/test_docs.py`` fails when a rendered table and its file disagree.

A file holds ``benchmark``, ``command``, ``commit``, ``date``, ``machine`` and ``tables``: a dict of named tables,
each ``{"columns": [...], "rows": [[...], ...]}`` with an optional ``title`` and ``notes``, and with the
``command``, ``commit``, ``date`` and ``machine`` of the run that measured it. A run replaces the tables it
writes and keeps the others (a benchmark run with other flags writes its own table beside the default one);
the file's ``command`` lists every table's command, its ``commit``/``date``/``machine`` are the last run's.
Anything else the script wants to keep (raw per-seed results) may sit beside them.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
PROVENANCE = ("command", "commit", "date", "machine")
REQUIRED = ("benchmark", *PROVENANCE, "tables")


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None,
          notes: str | None = None) -> dict:
    """A table as the results files store it (cells are kept as given: strings keep their formatting)."""
    if any(len(row) != len(columns) for row in rows):
        raise ValueError(f"every row needs {len(columns)} cells (the columns: {list(columns)})")
    out: dict[str, Any] = {"columns": list(columns), "rows": [list(row) for row in rows]}
    if title:
        out["title"] = title
    if notes:
        out["notes"] = notes
    return out


def table_from_markdown(text: str, title: str | None = None, notes: str | None = None) -> dict:
    """The first pipe table in ``text`` (as ``hf_unlearn.evaluation.tables.markdown_table`` writes it)."""
    lines = [line.strip() for line in text.splitlines()]
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None or start + 1 >= len(lines) or not set(lines[start + 1]) <= set("|-: "):
        raise ValueError("no Markdown pipe table (header line, then a |---| rule) in the text")
    cells = [_cells(line) for line in _block(lines, start)]
    return table(cells[0], cells[2:], title=title, notes=notes)


def _block(lines: list[str], start: int) -> list[str]:
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return lines[start:end]


def _cells(line: str) -> list[str]:
    inner = line.strip()[1:-1] if line.strip().endswith("|") else line.strip()[1:]
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", inner)]


def current_commit() -> str:
    """HEAD of the repository, with ``+changes`` when the library or benchmarks differ from it."""
    try:
        head = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--", "hf_unlearn", "benchmarks", "recipes")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + ("+changes" if dirty else "")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def machine() -> str:
    """CPU count, platform and the library versions the numbers depend on."""
    parts = [f"{os.cpu_count()} CPU cores", platform.machine(), f"Python {platform.python_version()}"]
    for name in ("torch", "transformers"):
        module = sys.modules.get(name)
        if module is not None:
            parts.append(f"{name} {module.__version__}")
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name(0))
    return ", ".join(parts)


def invoked_command(argv: Sequence[str] | None = None) -> str:
    """The command line that ran this script, as a reader would type it from the repository root."""
    argv = list(sys.argv if argv is None else argv)
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name.startswith("benchmarks."):  # python -m benchmarks.x
        return shlex.join([".venv/bin/python", "-m", spec.name, *argv[1:]])
    try:  # python benchmarks/x.py
        script = str(Path(argv[0]).resolve().relative_to(ROOT))
    except ValueError:
        script = argv[0]
    return shlex.join([".venv/bin/python", script, *argv[1:]])


def results_path(name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"a results name is a plain file stem such as 'sisa', got {name!r}")
    return RESULTS_DIR / f"{name}.json"


def load_results(name: str) -> dict:
    path = results_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run the benchmark, which writes it through write_results")
    return json.loads(path.read_text())


def write_results(name: str, payload: dict, command: str | None = None) -> Path:
    """Write ``payload``'s tables (and any raw numbers beside them) to ``benchmarks/results/<name>.json``, each
    table stamped with this run's command, commit, date and machine; tables of earlier runs with other keys
    stay. Returns the path; ``python -m benchmarks.render_docs`` then updates the docs' tables."""
    if not isinstance(payload.get("tables"), dict) or not payload["tables"]:
        raise ValueError("payload['tables'] must be a non-empty dict of tables (see results_io.table)")
    run = {
        "command": command or invoked_command(),
        "commit": current_commit(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    path = results_path(name)
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    tables = {**earlier.get("tables", {}), **{key: {**tab, **run} for key, tab in payload["tables"].items()}}
    record = {
        "benchmark": name,
        **run,
        "command": commands_of(tables),
        **{k: v for k, v in payload.items() if k not in {"benchmark", "tables", *PROVENANCE}},
        "tables": tables,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False, default=float) + "\n")
    print(f"results written to {path.relative_to(ROOT)}; render the docs with: .venv/bin/python -m "
          "benchmarks.render_docs", flush=True)
    return path


def commands_of(tables: dict) -> list[str]:
    """Every table's command(s), in order, each once."""
    commands: list[str] = []
    for tab in tables.values():
        for command in tab["command"] if isinstance(tab["command"], list) else [tab["command"]]:
            if command not in commands:
                commands.append(command)
    return commands
