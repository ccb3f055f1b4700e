"""How texts were cut into tokens when a space was built, so every later run cuts them the same way.

A space fingerprints the rows it was built from as their token ids: the same text cut at another length (or by
another tokenizer) is another row, and a request naming it is refused as "not in the data". A user whose model
was trained at 64 tokens built the space with the command line's 128 and met exactly that. The space therefore
records its tokenisation (``provenance["tokenization"]``): later runs reuse its ``max_length`` unless they set
one, refuse a different one or another tokenizer by naming both, and a build warns when it cuts texts.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from ..core.space_io import CONFIG_NAME

logger = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 128  # the command line's token limit when neither the run nor a saved space names one



def tokenizer_digest(tokenizer) -> str:
    """A short digest of what the tokenizer maps text to: its definition when fast (without the truncation and
    padding a call leaves set on it), else its vocabulary."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        definition = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
    else:
        definition = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:16]


def tokenization_record(tokenizer, max_length: int) -> dict:
    """What a space records about how its texts were tokenised."""
    return {
        "max_length": int(max_length),
        "truncation": True,
        "padding_side": getattr(tokenizer, "padding_side", "right"),
        "tokenizer": Path(str(getattr(tokenizer, "name_or_path", "") or "")).name,
        "tokenizer_digest": tokenizer_digest(tokenizer),
    }


def recorded_tokenization(space_folder: str | Path | None) -> dict | None:
    """The tokenisation a saved space records (read from its config alone, before anything loads), or None."""
    config = Path(space_folder) / CONFIG_NAME if space_folder else None
    if config is None or not config.is_file():
        return None
    return (json.loads(config.read_text()).get("provenance") or {}).get("tokenization")


def resolve_max_length(requested: int | None, recorded: dict | None, where: str, positions: int | None = None) -> int:
    """The token limit of a run: its own, else the space's, else the default (at most the model's ``positions``); a
    different one than the space's is refused, since the space's rows would not be recognised."""
    if requested is not None and positions is not None and requested > positions:
        raise ValueError(f"--max_length {requested} is more tokens than the model has positions ({positions}): pass "
                         f"--max_length {positions} or less.")
    if recorded is None:
        if requested is None and positions is not None and positions < DEFAULT_MAX_LENGTH:
            logger.info("Texts are cut at max_length %d, the model's number of positions", positions)
            return positions
        return requested or DEFAULT_MAX_LENGTH
    saved = int(recorded["max_length"])
    if requested is None:
        logger.info("Texts are cut at max_length %d, as when the Core Gradient Space in %s was built", saved, where)
        return saved
    if requested != saved:
        raise ValueError(
            f"--max_length {requested} differs from the max_length {saved} the Core Gradient Space in {where} was "
            f"built with: its rows are recognised by their tokens, cut at {saved}. Drop --max_length to use "
            f"{saved}, or rebuild the space with --max_length {requested} (as the model was trained)."
        )
    return requested


def check_tokenizer(recorded: dict | None, tokenizer, where: str) -> None:
    """Refuse a tokenizer other than the one the space was built with, naming both."""
    if recorded is None or tokenizer is None or "tokenizer_digest" not in recorded:
        return
    digest = tokenizer_digest(tokenizer)
    if digest != recorded["tokenizer_digest"]:
        ours = Path(str(getattr(tokenizer, "name_or_path", "") or "")).name or "this run's tokenizer"
        raise ValueError(
            f"The tokenizer {ours} (digest {digest}) is not the one the Core Gradient Space in {where} was built with "
            f"({recorded.get('tokenizer') or 'unnamed'}, digest {recorded['tokenizer_digest']}): the same texts give "
            "other tokens, so no row of the request would be recognised. Use the model's own tokenizer."
        )


def count_truncated(texts: list[str], cut_ids: list[list[int]], tokenizer, max_length: int) -> int:
    """How many ``texts`` have more than ``max_length`` tokens, given their ids as already cut there: only the rows
    that reach the limit are tokenised again, whole."""
    at_limit = [text for text, ids in zip(texts, cut_ids) if len(ids) >= max_length]
    if not at_limit:
        return 0
    return sum(len(ids) > max_length for ids in tokenizer(at_limit, truncation=False)["input_ids"])
