"""The docs are a reference, and they stay true: no diary words, tables rendered from the benchmark results,
and the examples marked runnable run.

* Patterns: README.md, docs/ and the code (hf_unlearn/, recipes/, benchmarks/) never speak of sessions, stops,
  "issue N", "by me", prose dates or commit hashes; when and where a number was measured lives only in
  benchmarks/results/*.json.
* Tables: rendering every ``<!-- results:... -->`` region from benchmarks/results/*.json reproduces the docs byte
  for byte (``python -m benchmarks.render_docs`` rewrites them after a benchmark run).
* Runnable examples: a fenced block whose info string is ``python runnable`` is executed, in order, with the
  blocks before it in the same file. An HTML comment ``<!-- runnable setup ... -->`` right before a block is run
  first (it gets its model and data from ``fixtures`` below); ``<!-- runnable check ... -->`` right after it
  asserts what the block must have done. Every runnable block has a check.
"""

from __future__ import annotations

import copy
import re
import sys
import types
from functools import lru_cache
from pathlib import Path

import pytest
import torch

from benchmarks.render_docs import doc_files, regions, render_text
from benchmarks.results_io import REQUIRED, RESULTS_DIR, load_results

ROOT = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------------------------------------ diary words
DIARY_PATTERNS = {
    "a work session": r"(?i)\bsessions?\b",
    "a stop of the work": r"(?i)\b(?:this|that|last|previous|next|earlier)\s+stop\b(?![\s-]+(?:rule|signal|condition))"
                          r"|\bstop\s+\d+\b",
    "an issue by number": r"(?i)\bissues?\s*#?\d+|\bthe issue's\b",
    "a first person": r"(?i)\bby me\b|\bof mine\b",
    "a date in prose": r"\b20\d\d-[01]\d-[0-3]\d\b",
    "a time of day": r"(?i)\b(?:this|that|the same) (?:morning|afternoon|evening)\b|\bearlier the same day\b",
    "a commit hash": r"(?i)\bcommits?\s+`?(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b"
                     r"|`(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}`",
    "a design note outside the repository": r"\bDESIGN(?:\.md)?\s*§",
}


def checked_files() -> list[Path]:
    """README.md, docs/, and every Python file or template of the library, the recipes and the benchmarks."""
    files = doc_files(ROOT)
    for folder in ("hf_unlearn", "recipes", "benchmarks"):
        files += [p for p in sorted((ROOT / folder).rglob("*")) if p.suffix in {".py", ".md", ".yaml", ".jinja"}]
    return files


def diary_lines(text: str) -> list[tuple[int, str, str]]:
    """(line number, what, line) for every line of ``text`` that reads like a work diary."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for what, pattern in DIARY_PATTERNS.items():
            if re.search(pattern, line):
                found.append((number, what, line.strip()))
    return found


def test_no_diary_words_in_docs_or_code():
    hits = [f"{path.relative_to(ROOT)}:{n}: {what}: {line[:120]}"
            for path in checked_files() for n, what, line in diary_lines(path.read_text(encoding="utf-8"))]
    assert not hits, "Write a reference, not a diary (dates and commits live in benchmarks/results/*.json):\n" + \
        "\n".join(hits)


@pytest.mark.parametrize("line, what", [
    ("(a fresh clone's `make demo` on 2026-12-01, seventh session, MIA-efficacy ...", "a work session"),
    ("This stop's rule changes (below) were made after looking at digits", "a stop of the work"),
    ("the new-user run of the last stop", "a stop of the work"),
    ("retain accuracy (issue 9). When the user has retain examples", "an issue by number"),
    ("The issue's bars, checked on this run's numbers.", "an issue by number"),
    ("**A new user's MiniLM** (held out: fine-tuned by me with a plain `Trainer`", "a first person"),
    ("overlapped test runs of mine for some requests", "a first person"),
    ("made their Gram collection 6.3 s instead of 2.1 s sorted (MiniLM, 2026-12-01).", "a date in prose"),
    ("| request | method | before (this morning) | after |", "a time of day"),
    ("Class scenarios ran at commit `d047357`, random and word scenarios at `1aa6388`", "a commit hash"),
    ('"""Accuracy- and privacy-based unlearning metrics (DESIGN.md §5).', "a design note outside the repository"),
])
def test_the_patterns_catch_the_diary_they_are_for(line, what):
    assert what in {w for _, w, _ in diary_lines(line)}


@pytest.mark.parametrize("line", [
    "The stop rule ends the run once forget accuracy reaches validation accuracy.",
    "the run stops at its last good state; a check may stop it early",
    "`save_strategy` writes checkpoints; the Hub returns a commit URL",
    "hashes of the protected layers (SHA-256 of `cgs.safetensors`)",
    "| 0.5 | 2.90 (3, 3) | 3.72 (2, 2) |",
])
def test_the_patterns_leave_reference_prose_alone(line):
    assert diary_lines(line) == []


# ------------------------------------------------------------------------------------------------ tables
def test_every_results_file_says_what_ran_where_and_when():
    files = sorted(RESULTS_DIR.glob("*.json"))
    assert files, "benchmarks/results/ holds no results"
    for path in files:
        results = load_results(path.stem)
        assert set(REQUIRED) <= set(results), f"{path.name} lacks {set(REQUIRED) - set(results)}"
        assert results["benchmark"] == path.stem
        for name, table in results["tables"].items():
            widths = {len(row) for row in table["rows"]}
            assert widths == {len(table["columns"])}, f"{path.name}: table {name} has ragged rows"


def test_the_docs_tables_are_rendered_from_the_results_files():
    stale = [str(p.relative_to(ROOT)) for p in doc_files(ROOT) if render_text(p.read_text()) != p.read_text()]
    assert not stale, f"run `.venv/bin/python -m benchmarks.render_docs`: stale tables in {stale}"
    assert any(regions(p.read_text()) for p in doc_files(ROOT)), "no results region in the docs at all"


def test_a_number_edited_by_hand_is_caught():
    rendered = render_text((ROOT / "docs" / "benchmarks.md").read_text())
    row = next(line for line in rendered.splitlines() if line.startswith("| ") and "---" not in line)
    edited = rendered.replace(row, row.replace("|", "| 9", 2), 1)
    assert edited != rendered and render_text(edited) == rendered


# ------------------------------------------------------------------------------------------------ examples
RUNNABLE = re.compile(
    r"(?:<!-- runnable setup\n(?P<setup>.*?)-->\n)?```python runnable\n(?P<code>.*?)```\n"
    r"(?:<!-- runnable check\n(?P<check>.*?)-->\n)?",
    re.S,
)
RUNNABLE_DOCS = ("README.md", "docs/quickstart.md", "docs/methods.md")


class fixtures:  # noqa: N801 (read as a namespace by the docs' hidden set-up)
    """What the docs' hidden set-up takes its model and data from: built once per test run, copied per use."""

    @staticmethod
    @lru_cache(maxsize=1)
    def _digits():
        from hf_unlearn.data.builtin import load_digits_dataset

        return load_digits_dataset(test_size=0.2, validation_size=0.1, seed=0).with_format("torch")

    @staticmethod
    def digits():
        """sklearn's digits as the demo splits them (train / validation / test), torch format."""
        return fixtures._digits()

    @staticmethod
    @lru_cache(maxsize=1)
    def _small_cnn():
        from digits_models import fit_small_cnn

        batch = fixtures.digits()["train"][:]
        return fit_small_cnn(batch["pixel_values"], batch["labels"], epochs=25, lr=3e-3)

    @staticmethod
    def small_cnn():
        """A SmallCNN trained on the digits' training split (a fresh copy each call)."""
        return copy.deepcopy(fixtures._small_cnn())


def runnable_blocks(text: str) -> list[dict]:
    return [m.groupdict() for m in RUNNABLE.finditer(text)]


@pytest.mark.parametrize("doc", RUNNABLE_DOCS)
def test_every_runnable_block_has_a_check(doc):
    text = (ROOT / doc).read_text()
    blocks = runnable_blocks(text)
    assert blocks, f"{doc} has no block marked ```python runnable"
    assert text.count("```python runnable") == len(blocks), f"{doc}: a runnable block the test cannot parse"
    assert all(b["check"] for b in blocks), f"{doc}: every runnable block needs a <!-- runnable check --> after it"


@pytest.mark.parametrize("doc", RUNNABLE_DOCS)
def test_runnable_examples_run(doc, tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    module = types.ModuleType(f"docs_example_{Path(doc).stem}")  # a real module: dataclasses look theirs up
    module.fixtures = fixtures
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for number, block in enumerate(runnable_blocks((ROOT / doc).read_text()), 1):
        for part in ("setup", "code", "check"):
            if block[part]:
                # dont_inherit: the example runs as its reader runs it, without this file's __future__ imports
                source = compile(block[part], f"{doc} runnable block {number} ({part})", "exec", dont_inherit=True)
                exec(source, module.__dict__)  # noqa: S102 (the docs' own examples)
