"""The one Markdown table writer, used by the model card, the report and the demo."""

from __future__ import annotations

from collections.abc import Sequence


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align_right_from: int | None = None) -> str:
    """Pipe table; columns from ``align_right_from`` on are right-aligned (numbers)."""
    if align_right_from is None:
        rule = "|" + "---|" * len(header)
    else:
        rule = "|" + "|".join([" --- "] * align_right_from + [" ---: "] * (len(header) - align_right_from)) + "|"
    lines = ["| " + " | ".join(header) + " |", rule]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
