"""A real HTTP server on 127.0.0.1 for the built-in actions' tests: it records each request and answers by path.

Paths (the first segment; a GDL test's order key is the segment, ``/{o}``):

- ``/ok...``: 200, JSON echoing the method, path, Idempotency-Key, Authorization and body;
- ``/flaky...``: 503 for the first two requests to that path, then as ``/ok``;
- ``/busy``: 429; ``/bad``: 400 with a JSON error; ``/text``: 200 text/plain of 100,000 bytes;
- ``/slow...``: 200 after the ``slow`` event is set (or 5 s);
- ``/hang...``: records the request and never answers until ``release`` is set;
- ``/redirect-away``: 302 to ``http://localhost:PORT/ok`` (another host name for the same server);
- ``/redirect-here``: 302 to ``/ok-after-redirect`` on the same host;
- ``/hook``: 200 ``ok`` (a Slack-like webhook).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class LocalServer:
    """Serve on 127.0.0.1 (a free port) in a thread; ``requests`` holds what came in."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.slow = threading.Event()
        self.release = threading.Event()
        self.hanging = threading.Event()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def _answer(self, status: int, body: bytes, kind: str = "application/json", **headers: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name.replace("_", "-"), value)
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                record = {
                    "method": self.command,
                    "path": self.path,
                    "host": self.headers.get("Host"),
                    "key": self.headers.get("Idempotency-Key"),
                    "authorization": self.headers.get("Authorization"),
                    "content_type": self.headers.get("Content-Type"),
                    "body": raw.decode(),
                }
                first = "/" + self.path.lstrip("/").split("/")[0].split("?")[0]
                with server.lock:
                    server.requests.append(record)
                    server.counts[self.path] += 1
                    count = server.counts[self.path]
                echo = json.dumps({**record, "count": count}).encode()
                if first.startswith("/flaky") and count <= 2:
                    self._answer(503, b'{"error": "try again"}')
                elif first.startswith("/ok") or first.startswith("/flaky"):
                    self._answer(200, echo, X_Request_Count=str(count))
                elif first == "/busy":
                    self._answer(429, b'{"error": "slow down"}')
                elif first == "/bad":
                    self._answer(400, b'{"error": "no such order"}')
                elif first == "/text":
                    self._answer(200, b"x" * 100_000, "text/plain; charset=utf-8")
                elif first.startswith("/slow"):
                    server.slow.wait(5)
                    self._answer(200, echo)
                elif first.startswith("/hang"):
                    server.hanging.set()
                    server.release.wait(30)
                    self._answer(200, echo)
                elif first == "/redirect-away":
                    self._answer(302, b"", Location=f"http://localhost:{server.port}/ok-after-redirect")
                elif first == "/redirect-here":
                    self._answer(302, b"", Location="/ok-after-redirect")
                elif first == "/hook":
                    self._answer(200, b"ok", "text/plain")
                else:
                    self._answer(404, b'{"error": "not found"}')

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-http", daemon=True)

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.slow.set()
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def paths(self) -> list[str]:
        with self.lock:
            return [r["path"] for r in self.requests]
