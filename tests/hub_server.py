"""A tiny in-memory Hugging Face Hub on 127.0.0.1, enough for ``huggingface_hub`` 2.x to push a folder.

It speaks the routes a push uses:

* ``POST /api/repos/create`` — creates the repo (409 with its URL when it already exists, like the Hub);
* ``POST /api/validate-yaml`` — parses the README's YAML front matter (400 with ``errors`` when invalid);
* ``POST /api/{type}s/{repo}/preupload/{rev}`` — answers every file ``"uploadMode": "regular"`` with the
  git oid of the stored version, so the client sends contents inline and drops unchanged files;
* ``POST /api/{type}s/{repo}/commit/{rev}`` — reads the ndjson body, stores base64 ``file`` contents and
  applies deletions;
* ``GET /api/{type}s/{repo}/commits/{rev}`` and ``GET /api/{type}s/{repo}/tree/{rev}`` — the commit history
  (newest first) and the files at a commit (every commit's files are kept, as the Hub keeps every version);
* ``GET /api/whoami-v2`` — the fake token's user;
* ``GET /api/agent-harnesses`` — an empty registry (the client fetches it once for its user agent).

Anything else (an LFS or Xet upload included) is recorded in ``unknown`` and answered 404, so a test can
assert that nothing outside these routes was needed. Every request is kept in ``requests``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import yaml

USER = "someone"
_TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_REPO_ROUTE = re.compile(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)/(preupload|commit)/(.+)$")
_READ_ROUTE = re.compile(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)/(commits|tree)/([^/]+)(/.*)?$")


def git_blob_oid(content: bytes) -> str:
    """The git object id of a blob: what the Hub reports as a regular file's ``oid``."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Request:
    method: str
    path: str
    authorization: str | None


@dataclass
class Commit:
    repo_id: str
    revision: str
    summary: str
    files: dict[str, bytes] = field(default_factory=dict)
    lfs_files: list[dict] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    oid: str = ""


class FakeHub:
    """Start with ``with FakeHub() as hub:``; ``hub.endpoint`` is the URL to point the client at."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}  # "model:someone/x" -> {path: content}
        self.commits: list[Commit] = []
        self.history: dict[str, list[tuple[Commit, dict[str, bytes]]]] = {}  # repo key -> (commit, files after it)
        self.requests: list[Request] = []
        self.unknown: list[tuple[str, str]] = []
        self.validated_cards: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-hub", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ what the tests read
    def files(self, repo_id: str, repo_type: str = "model") -> dict[str, bytes]:
        with self._lock:
            return dict(self.repos.get(f"{repo_type}:{repo_id}", {}))

    # ------------------------------------------------------------------ routes
    def repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.endpoint}/{_TYPE_PREFIX[repo_type]}{repo_id}"

    def create_repo(self, body: dict) -> tuple[int, dict]:
        repo_type = body.get("type") or "model"
        if repo_type not in _TYPE_PREFIX or not body.get("name"):
            return 400, {"error": f"Invalid repo type or name: {body}"}
        repo_id = f"{body.get('organization') or USER}/{body['name']}"
        url = self.repo_url(repo_type, repo_id)
        with self._lock:
            key = f"{repo_type}:{repo_id}"
            if key in self.repos:
                return 409, {"error": "You already created this model repo", "url": url}
            self.repos[key] = {}
        return 200, {"url": url, "name": repo_id, "id": repo_id}

    def validate_yaml(self, body: dict) -> tuple[int, dict]:
        content = body.get("content", "")
        with self._lock:
            self.validated_cards.append(content)
        match = re.match(r"^---\n(.*?)\n---\n", content, flags=re.S)
        if match is None:
            return 200, {"errors": [], "warnings": [{"message": "empty or missing yaml metadata in repo card"}]}
        try:
            metadata = yaml.safe_load(match.group(1))
        except yaml.YAMLError as error:
            return 400, {"errors": [{"message": f"Invalid YAML: {error}"}], "warnings": []}
        if not isinstance(metadata, dict):
            return 400, {"errors": [{"message": "Metadata must be a mapping"}], "warnings": []}
        return 200, {"errors": [], "warnings": []}

    def preupload(self, repo_type: str, repo_id: str, body: dict) -> tuple[int, dict]:
        with self._lock:
            stored = self.repos.get(f"{repo_type}:{repo_id}")
            if stored is None:
                return 404, {"error": "Repository not found"}
            files = [
                {
                    "path": entry["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_oid(stored[entry["path"]]) if entry["path"] in stored else None,
                }
                for entry in body.get("files", [])
            ]
        return 200, {"files": files, "commitOid": None}

    def commit(self, repo_type: str, repo_id: str, revision: str, raw: bytes) -> tuple[int, dict]:
        lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            return 400, {"error": "The commit payload must start with a header line"}
        commit = Commit(repo_id=repo_id, revision=revision, summary=lines[0]["value"].get("summary", ""))
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            if key == "file":
                if value.get("encoding") != "base64":
                    return 400, {"error": f"Unsupported encoding {value.get('encoding')!r}"}
                commit.files[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                commit.lfs_files.append(value)
            elif key in ("deletedFile", "deletedFolder"):
                commit.deleted.append(value["path"])
            else:
                return 400, {"error": f"Unknown commit operation {key!r}"}
        if commit.lfs_files:  # never announced by preupload: the content was never sent
            return 422, {"error": f"LFS files were not uploaded: {[f['path'] for f in commit.lfs_files]}"}
        with self._lock:
            stored = self.repos.get(f"{repo_type}:{repo_id}")
            if stored is None:
                return 404, {"error": "Repository not found"}
            for path in commit.deleted:
                for name in [n for n in stored if n == path or n.startswith(path.rstrip("/") + "/")]:
                    del stored[name]
            stored.update(commit.files)
            commit.oid = hashlib.sha1(f"{repo_id}:{len(self.commits)}:{commit.summary}".encode()).hexdigest()
            self.commits.append(commit)
            self.history.setdefault(f"{repo_type}:{repo_id}", []).append((commit, dict(stored)))
        url = f"{self.repo_url(repo_type, repo_id)}/commit/{commit.oid}"
        return 200, {"success": True, "commitOid": commit.oid, "commitUrl": url, "hookOutput": ""}

    def read(self, repo_type: str, repo_id: str, what: str, revision: str) -> tuple[int, dict | list]:
        """The commit history (newest first), or the files at ``revision`` (a commit id, or the newest)."""
        with self._lock:
            key = f"{repo_type}:{repo_id}"
            if key not in self.repos:
                return 404, {"error": "Repository not found"}
            history = self.history.get(key, [])
            if what == "commits":
                return 200, [{"id": c.oid, "title": c.summary, "message": "", "authors": [{"user": USER}],
                              "date": "2026-01-01T00:00:00.000Z"} for c, _ in reversed(history)]
            files = next((f for c, f in history if c.oid == revision), None)
            if files is None:
                files = history[-1][1] if history and revision == "main" else {} if revision == "main" else None
            if files is None:
                return 404, {"error": f"Revision not found: {revision}"}
            return 200, [{"type": "file", "path": p, "oid": git_blob_oid(c), "size": len(c)} for p, c in files.items()]

    def dispatch(self, method: str, path: str, body: bytes) -> tuple[int, dict]:
        if method == "GET" and path == "/api/whoami-v2":
            return 200, {"type": "user", "name": USER, "fullname": USER, "orgs": [], "auth": {"type": "access_token"}}
        if method == "GET" and path == "/api/agent-harnesses":
            return 200, {"standardEnvVars": [], "harnesses": {}}
        if method == "POST" and path == "/api/repos/create":
            return self.create_repo(json.loads(body or b"{}"))
        if method == "POST" and path == "/api/validate-yaml":
            return self.validate_yaml(json.loads(body or b"{}"))
        read = _READ_ROUTE.match(path)
        if method == "GET" and read:
            plural, repo_id, what, revision, _ = read.groups()
            return self.read(plural[:-1], repo_id, what, unquote(revision))
        match = _REPO_ROUTE.match(path)
        if method == "POST" and match:
            plural, repo_id, action, revision = match.groups()
            repo_type = plural[:-1]
            if action == "preupload":
                return self.preupload(repo_type, repo_id, json.loads(body or b"{}"))
            return self.commit(repo_type, repo_id, unquote(revision), body)
        with self._lock:
            self.unknown.append((method, path))
        return 404, {"error": f"Fake hub: no route for {method} {path}"}


class _Handler(BaseHTTPRequestHandler):
    server_hub: FakeHub

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        hub = self.server_hub
        path = urlsplit(self.path).path
        with hub._lock:
            hub.requests.append(Request(self.command, path, self.headers.get("Authorization")))
        status, payload = hub.dispatch(self.command, path, self._read_body())
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 404 and "not found" in payload.get("error", "").lower():
            self.send_header("X-Error-Code", "RepoNotFound")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    def log_message(self, format, *args) -> None:  # keep pytest output clean
        pass
