"""The secret that keys example fingerprints, so a published ledger cannot confirm a guessed row.

An unsalted hash of a row is a test anyone can run: hash your guess, look it up in the pushed space.
Fingerprints are therefore HMAC-SHA256 under a key that stays with the model's owner: the
``HF_UNLEARN_LEDGER_KEY`` environment variable (random, at least 128 bits, e.g. 32 hex digits; use a secret
manager in production), else a random key created once in ``$HF_UNLEARN_HOME/ledger.key`` (default
``~/.cache/hf_unlearn/ledger.key``, mode 0600). A space records only the key's *id* (a hash of the
key), so loading it on a machine with another key fails with a clear message instead of silently
treating every row as unknown. Keep the key as you keep the data: whoever holds it can test guesses.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import string
import tempfile
from functools import lru_cache
from pathlib import Path

from .errors import LedgerError

KEY_ENV = "HF_UNLEARN_LEDGER_KEY"
HOME_ENV = "HF_UNLEARN_HOME"


def key_path() -> Path:
    home = os.environ.get(HOME_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "hf_unlearn")
    return Path(home) / "ledger.key"


def _create_key_file(file: Path) -> None:
    """Write a new key whole, then link it into place: under torchrun every rank may get here at once, and
    the losers must read the winner's complete key (an O_EXCL create let one rank fail, another read a
    half-written file)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=file.parent, prefix=".ledger.key.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(os.urandom(32))
        os.chmod(temporary, 0o600)
        with contextlib.suppress(FileExistsError):  # another process linked its key first: theirs is used
            os.link(temporary, file)
    finally:
        os.unlink(temporary)


MIN_KEY_BITS = 128
_ALPHABETS = (string.ascii_lowercase, string.ascii_uppercase, string.digits)


def key_strength_bits(value: str) -> float:
    """An upper estimate of a key's entropy: its length times log2 of the alphabets it draws from (lowercase,
    uppercase, digits: 26, 26, 10; any other character adds 33; hex digits alone count 16). A key chosen by a person
    is weaker still."""
    pool = sum(len(a) for a in _ALPHABETS if any(c in a for c in value))
    pool += 33 if any(not any(c in a for a in _ALPHABETS) for c in value) else 0
    if all(c in string.hexdigits for c in value) and not all(c in string.digits for c in value):
        pool = 16  # hex digits (of either case): 4 bits each
    if len(set(value)) < 8:  # "aaaa…", "1212…": a long key from a handful of characters is guessed by its pattern
        return len(set(value)) * math.log2(max(pool, 2))
    return len(value) * math.log2(max(pool, 2))


def check_key_strength(value: str) -> None:
    """Refuse a ledger key that can be guessed: the fingerprints a pushed space holds plus one public training row
    are enough to test guesses offline (a 4-digit key fell in 92 seconds)."""
    bits = key_strength_bits(value)
    if bits < MIN_KEY_BITS:
        raise LedgerError(
            f"{KEY_ENV} is too weak to key the ledger (about {bits:.0f} bits; at least {MIN_KEY_BITS} are needed): "
            "anyone holding a published space and one training row could recover it by trying keys. Set it to a "
            "random value, e.g. the output of `python -c \"import secrets; print(secrets.token_hex(32))\"`, or "
            f"unset it to use a random key file ({key_path()}). Spaces built under the weak key keep its "
            "fingerprints: rebuild them under the new key."
        )


@lru_cache(maxsize=8)
def _key_from(env_value: str | None, path: str) -> bytes:
    if env_value:
        check_key_strength(env_value)
        return hashlib.sha256(env_value.encode("utf-8")).digest()
    file = Path(path)
    if not file.is_file():
        _create_key_file(file)
    key = file.read_bytes()
    if len(key) < 16:
        raise ValueError(f"The ledger key in {file} is too short ({len(key)} bytes): restore it from your backup.")
    return key


def ledger_key() -> bytes:
    """This owner's fingerprint key (from the environment, else the key file, created on first use)."""
    return _key_from(os.environ.get(KEY_ENV), str(key_path()))


def key_id(key: bytes | None) -> str | None:
    """A public name for a key (None for the unkeyed fingerprints of spaces saved before keys existed)."""
    return None if key is None else hashlib.sha256(b"hf_unlearn ledger key id:" + key).hexdigest()[:16]
