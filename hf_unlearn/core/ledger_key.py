"""The secret that keys example fingerprints, so a published ledger cannot confirm a guessed row.

An unsalted hash of a row is a test anyone can run: hash your guess, look it up in the pushed space.
Fingerprints are therefore HMAC-SHA256 under a key that stays with the model's owner: the
``HF_UNLEARN_LEDGER_KEY`` environment variable (any string; use a secret manager in production),
else a random key created once in ``$HF_UNLEARN_HOME/ledger.key`` (default
``~/.cache/hf_unlearn/ledger.key``, mode 0600). A space records only the key's *id* (a hash of the
key), so loading it on a machine with another key fails with a clear message instead of silently
treating every row as unknown. Keep the key as you keep the data: whoever holds it can test guesses.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path

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


@lru_cache(maxsize=8)
def _key_from(env_value: str | None, path: str) -> bytes:
    if env_value:
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
