"""Render the benchmark tables of README.md and docs/*.md from ``benchmarks/results/*.json``.

    .venv/bin/python -m benchmarks.render_docs            # rewrite the marked regions in place
    .venv/bin/python -m benchmarks.render_docs --check    # exit 1 (naming the files) when a region is stale

A region is everything between a start marker and ``<!-- /results -->``:

* ``<!-- results:NAME -->`` — the benchmark's command(s) as a bash block, then every table of ``NAME.json``
  (each with its title and notes);
* ``<!-- results:NAME/TABLE -->`` — that one table only;
* ``<!-- results:NAME/command -->`` — the command(s) only.

The renderer owns what is inside a region; the prose around it is written by hand. The commit, date and
machine of each measurement stay in the JSON file.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .results_io import ROOT, load_results

START = re.compile(r"<!-- results:([A-Za-z0-9_.-]+)(?:/([A-Za-z0-9_.-]+))? -->")
END = "<!-- /results -->"


def doc_files(root: Path = ROOT) -> list[Path]:
    """README.md and every page under docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def _cell(value) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\|", "|").replace("|", "\\|")


def markdown(tab: dict) -> str:
    """One table as a Markdown pipe table, its title (bold) above and its notes below."""
    lines = []
    if tab.get("title"):
        lines += [f"**{tab['title']}**", ""]
    lines.append("| " + " | ".join(_cell(c) for c in tab["columns"]) + " |")
    lines.append("|" + "---|" * len(tab["columns"]))
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in tab["rows"]]
    if tab.get("notes"):
        lines += ["", tab["notes"]]
    return "\n".join(lines)


def _commands(results: dict) -> list[str]:
    command = results["command"]
    return list(command) if isinstance(command, list) else [command]


def render_region(name: str, table_name: str | None = None) -> str:
    """The text that belongs inside a region (without the markers)."""
    results = load_results(name)
    tables = results["tables"]
    commands = "```bash\n" + "\n".join(_commands(results)) + "\n```"
    if table_name == "command":
        return commands
    if table_name is not None:
        if table_name not in tables:
            raise KeyError(f"benchmarks/results/{name}.json has no table {table_name!r}; it has {sorted(tables)}")
        return markdown(tables[table_name])
    parts = [commands]
    parts += [markdown(tab) for tab in tables.values()]
    return "\n\n".join(parts)


def render_text(text: str) -> str:
    """``text`` with every region re-rendered; raises on a start marker without its end."""
    out, position = [], 0
    for match in START.finditer(text):
        if match.start() < position:
            continue  # a marker inside a region being replaced
        end = text.find(END, match.end())
        if end < 0:
            raise ValueError(f"{match.group(0)} has no closing {END}")
        out += [text[position:match.end()], "\n", render_region(match.group(1), match.group(2)), "\n"]
        position = end
    out.append(text[position:])
    return "".join(out)


def regions(text: str) -> list[tuple[str, str | None]]:
    """The (results name, table name) of every region in ``text``."""
    return [(m.group(1), m.group(2)) for m in START.finditer(text)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="Change nothing; exit 1 if a region is stale.")
    args = parser.parse_args(argv)
    stale = []
    for path in doc_files():
        text = path.read_text()
        try:
            rendered = render_text(text)
        except (KeyError, OSError, ValueError) as error:
            raise SystemExit(f"{path.relative_to(ROOT)}: {error}") from error
        if rendered != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(rendered)
    verb = "stale" if args.check else "updated"
    print("\n".join(f"{verb}: {p}" for p in stale) or "every results region is up to date")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
