"""A stub of an OpenAI-compatible embeddings endpoint on 127.0.0.1 (``POST /v1/embeddings``).

It answers in the wire format (``data[i].embedding``, ``data[i].index``,
``model``, ``usage``) with a deterministic vector per text: its words hashed
into ``dimensions`` buckets (256 unless asked otherwise), normalised, so
texts sharing words are near. The items are sent in reverse order, so a
client must place them by ``index``. The model picks the behaviour:
``broken`` answers 500, ``short`` vectors of 3 numbers whatever was asked.
A wrong bearer token is 401. ``requests`` keeps what was asked.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


def stub_vector(text: str, dims: int) -> list[float]:
    """Return the stub's vector of ``text``: its lower-cased words hashed into ``dims`` buckets, normalised."""
    out = [0.0] * dims
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        out[int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big") % dims] += 1.0
    norm = math.sqrt(sum(x * x for x in out)) or 1.0
    return [x / norm for x in out]


class EmbeddingsStub:
    """Serve the stub in a thread on a free port; ``base`` is the base URL (``http://127.0.0.1:PORT/v1``)."""

    def __init__(self, key: str = "sk-embed-0123456789") -> None:
        self.key = key
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw or b"{}")
                with stub.lock:
                    stub.requests.append(
                        {"path": self.path, "authorization": self.headers.get("Authorization"), "body": body}
                    )
                if self.path != "/v1/embeddings":
                    self._answer(404, {"error": {"message": "not found"}})
                    return
                if self.headers.get("Authorization") != f"Bearer {stub.key}":
                    self._answer(401, {"error": {"message": "bad key"}})
                    return
                model = body.get("model")
                if model == "broken":
                    self._answer(500, {"error": {"message": "broken"}})
                    return
                texts = body.get("input")
                if isinstance(texts, str):
                    texts = [texts]
                dims = 3 if model == "short" else int(body.get("dimensions") or 256)
                data = [
                    {"object": "embedding", "index": i, "embedding": stub_vector(t, dims)} for i, t in enumerate(texts)
                ]
                self._answer(
                    200,
                    {
                        "object": "list",
                        "data": data[::-1],
                        "model": model,
                        "usage": {"prompt_tokens": 0, "total_tokens": 0},
                    },
                )

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> EmbeddingsStub:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
