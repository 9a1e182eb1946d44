"""A loopback stand-in for the Hugging Face Hub, enough for push_to_hub -> from_pretrained round trips.

It speaks the endpoints huggingface_hub uses to create a repo, upload a commit (regular, base64 files),
describe a repo and resolve files. It tests this package against the client's protocol, not against the
real Hub. Files and commits live in memory; `HubServer.files(repo_id)` shows what was uploaded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class _Repo:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.sha = hashlib.sha1(b"empty").hexdigest()
        self.commits: list[dict] = []


class HubServer:
    def __init__(self) -> None:
        self.repos: dict[str, _Repo] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                server._resolve(self, body=False)

            def do_GET(self) -> None:
                path = unquote(urlparse(self.path).path)
                if path.startswith("/api/whoami"):
                    return server._json(self, {"name": "tester", "type": "user", "orgs": [], "auth": {}})
                if path.startswith("/api/models/"):
                    return server._info(self, path[len("/api/models/"):])
                return server._resolve(self, body=True)

            def do_POST(self) -> None:
                path = unquote(urlparse(self.path).path)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if path == "/api/repos/create":
                    request = json.loads(body)
                    repo_id = f"{request['organization']}/{request['name']}" if request.get("organization") \
                        else request["name"]
                    with server.lock:
                        server.repos.setdefault(repo_id, _Repo())
                    return server._json(self, {"url": f"{server.url}/{repo_id}", "name": repo_id})
                if path == "/api/validate-yaml":
                    return server._json(self, {"errors": [], "warnings": []})
                if path.startswith("/api/models/") and "/preupload/" in path:
                    files = json.loads(body)["files"]
                    return server._json(self, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                          "shouldIgnore": False, "oid": None} for f in files]})
                if path.startswith("/api/models/") and "/commit/" in path:
                    repo_id = path[len("/api/models/"):].split("/commit/")[0]
                    return server._commit(self, repo_id, body)
                self.send_error(404)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def files(self, repo_id: str) -> dict[str, bytes]:
        return dict(self.repos[repo_id].files)

    # ---- handlers ------------------------------------------------------------------------------------------

    @staticmethod
    def _json(handler, payload, status: int = 200, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _missing(self, handler, code: str, body: bool) -> None:
        handler.send_response(404)
        handler.send_header("X-Error-Code", code)
        handler.send_header("X-Error-Message", code)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _commit(self, handler, repo_id: str, body: bytes) -> None:
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._missing(handler, "RepoNotFound", True)
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        with self.lock:
            for line in lines:
                if line["key"] == "file":
                    repo.files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
                elif line["key"] == "deletedFile":
                    repo.files.pop(line["value"]["path"], None)
            digest = hashlib.sha1(repo.sha.encode())
            for path in sorted(repo.files):
                digest.update(path.encode() + repo.files[path])
            repo.sha = digest.hexdigest()
            repo.commits.append({"sha": repo.sha, "summary": lines[0]["value"].get("summary")})
        self._json(handler, {"commitUrl": f"{self.url}/{repo_id}/commit/{repo.sha}", "commitOid": repo.sha,
                             "pullRequestUrl": None})

    def _info(self, handler, rest: str) -> None:
        repo_id = rest.split("/revision/")[0].split("/tree/")[0]
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._missing(handler, "RepoNotFound", True)
        if "/tree/" in rest:
            return self._json(handler, [{"type": "file", "path": p, "size": len(d),
                                         "oid": hashlib.sha1(d).hexdigest()} for p, d in sorted(repo.files.items())])
        self._json(handler, {"id": repo_id, "modelId": repo_id, "sha": repo.sha, "private": False, "tags": [],
                             "siblings": [{"rfilename": p, "size": len(d)} for p, d in sorted(repo.files.items())]})

    def _resolve(self, handler, body: bool) -> None:
        parts = unquote(urlparse(handler.path).path).lstrip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return self._missing(handler, "RepoNotFound", body)
        repo_id, filename = "/".join(parts[:2]), "/".join(parts[4:])
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._missing(handler, "RepoNotFound", body)
        if filename not in repo.files:
            return self._missing(handler, "EntryNotFound", body)
        data = repo.files[filename]
        handler.send_response(200)
        handler.send_header("X-Repo-Commit", repo.sha)
        handler.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if body:
            handler.wfile.write(data)
