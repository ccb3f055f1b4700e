"""Publishing a Core Gradient Space twice reveals what was forgotten between the two versions.

A space holds, per protected layer, the Gram ``Σ x xᵀ`` of the inputs still kept. A request subtracts the
forgotten rows' Grams, so a space published before a request and one published after differ by exactly those
rows' Grams. For the first protected layer the inputs are the raw data (pixels, patches; for a text model the
embedded tokens): with both versions, anyone can test which training row was removed, without the model. The Hub
keeps every version of a repo. So a space is pushed only when no earlier version of it can be public: never after
a served request, never to a repo whose history already holds a space, unless the owner says they know.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Iterator

from huggingface_hub import constants
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

logger = logging.getLogger(__name__)
ACKNOWLEDGE_FLAG = "--acknowledge_space_history"


def spaces_in_history(api, repo_id: str, *, repo_type: str = "model", token=None) -> list[tuple[str, str]]:
    """``(commit id, path)`` of a saved space's config in each commit of ``repo_id`` that holds one (none when the
    repo does not exist yet)."""
    try:
        commits = api.list_repo_commits(repo_id, repo_type=repo_type, token=token)
    except (RepositoryNotFoundError, RevisionNotFoundError):
        return []
    found = []
    for commit in commits:
        for entry in api.list_repo_tree(repo_id, revision=commit.commit_id, recursive=True, repo_type=repo_type,
                                        token=token):
            if entry.path.rsplit("/", 1)[-1] == "cgs_config.json":
                found.append((commit.commit_id, entry.path))
                break
    return found


def check_space_push(space, api, repo_id: str, *, acknowledged: bool, repo_type: str = "model", token=None) -> None:
    """Refuse to publish ``space`` where an earlier version of it may be public, unless ``acknowledged``."""
    reasons = []
    if space.ledger:
        reasons.append(f"this space records {len(space.ledger)} served request(s): if the space from before them was "
                       "ever published (with the original model, say), the two differ by exactly the forgotten rows' "
                       "Grams")
    history = spaces_in_history(api, repo_id, repo_type=repo_type, token=token)
    if history:
        commit, path = history[0]
        reasons.append(f"{repo_id} already holds a Core Gradient Space in its history ({path} at commit {commit[:10]}, "
                       f"{len(history)} commit(s) in all), and the Hub keeps every version")
    if not reasons:
        return
    if acknowledged:
        logger.warning("Publishing the Core Gradient Space although %s (acknowledged).", "; ".join(reasons))
        return
    raise ValueError(
        f"Not publishing the Core Gradient Space to {repo_id}: {'; and '.join(reasons)}. Two published versions of a "
        "space reveal the rows forgotten between them: the first layer's Gram is the training inputs' second moments "
        "(for images, the pixels), so a forgotten row can be identified without the model (docs/guarantees.md). "
        "Push the model without its space (leave out --push_core_gradient_space), or, if no earlier version of this "
        f"space is public anywhere, pass {ACKNOWLEDGE_FLAG} true (acknowledge_space_history=True)."
    )


class UnreachableHub(ConnectionError):
    """The Hub could not be reached (connection refused, DNS, timeout): said once, with what to check."""


@contextlib.contextmanager
def reaching_the_hub(what: str, saved: str | None = None) -> Iterator[None]:
    """A Hub that cannot be reached ends the push with one message that says where and what to do, not the HTTP
    client's traceback (``ConnectionError``)."""
    kept = f" Nothing is lost: the model is saved in {saved}; push it again once the Hub can be reached." if saved \
        else ""
    try:
        yield
    except UnreachableHub as error:  # an inner step (creating the repo) said it already: add what was kept
        raise UnreachableHub(f"{error}{kept}") from error.__cause__
    except _transport_errors() as error:
        raise UnreachableHub(
            f"Could not reach the Hub at {constants.ENDPOINT} to {what} ({type(error).__name__}: {error}). Check the "
            f"network connection and any proxy, and HF_ENDPOINT if you set it.{kept}"
        ) from error


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's connection-level errors (huggingface_hub 2.x uses ``httpx2``, earlier ones ``httpx``)."""
    found = []
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except ImportError:
            continue
    return tuple(found) or (OSError,)
