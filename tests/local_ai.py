"""A stub of an OpenAI-compatible chat/completions endpoint on 127.0.0.1, counting what it is asked and paid for.

``POST /v1/chat/completions`` answers in the wire format (``choices[0].message``,
``finish_reason``, ``usage``), the content echoing the last message. The
model picks the behaviour: ``busy`` answers 429, ``broken`` 500, ``bad``
400, ``slow`` waits for ``release`` (or 5 s), ``empty`` 200 without choices.
A wrong bearer token is 401. With ``dedupe`` set, a request whose
``Idempotency-Key`` was answered before gets the same answer again without
being "paid" (``paid`` counts the answers produced; ``requests`` every request).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class ChatStub:
    """Serve the stub in a thread on a free port; ``base`` is the base URL (``http://127.0.0.1:PORT/v1``)."""

    def __init__(self, key: str = "sk-test-0123456789", *, dedupe: bool = False) -> None:
        self.key = key
        self.dedupe = dedupe
        self.requests: list[dict[str, Any]] = []
        self.paid = 0
        self.answers: dict[str, bytes] = {}
        self.release = threading.Event()
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw or b"{}")
                key = self.headers.get("Idempotency-Key") or ""
                with stub.lock:
                    stub.requests.append(
                        {
                            "path": self.path,
                            "key": key,
                            "authorization": self.headers.get("Authorization"),
                            "body": body,
                        }
                    )
                    repeated = stub.answers.get(key) if stub.dedupe and key else None
                if self.path != "/v1/chat/completions":
                    return self._answer(404, b'{"error": "not found"}')
                if self.headers.get("Authorization") != f"Bearer {stub.key}":
                    return self._answer(401, b'{"error": {"message": "invalid api key"}}')
                if repeated is not None:
                    return self._answer(200, repeated)
                model = body.get("model")
                if model == "busy":
                    return self._answer(429, b'{"error": {"message": "rate limited"}}')
                if model == "broken":
                    return self._answer(500, b'{"error": {"message": "internal"}}')
                if model == "bad":
                    return self._answer(400, b'{"error": {"message": "bad request"}}')
                if model == "slow":
                    stub.release.wait(5)
                if model == "empty":
                    return self._answer(200, b'{"object": "chat.completion"}')
                with stub.lock:
                    stub.paid += 1
                    number = stub.paid
                last = body["messages"][-1]["content"]
                answer = json.dumps(
                    {
                        "id": f"chatcmpl-{number}",
                        "object": "chat.completion",
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": f"echo: {last}"},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": len(last.split()),
                            "completion_tokens": 3,
                            "total_tokens": len(last.split()) + 3,
                        },
                    }
                ).encode()
                if stub.dedupe and key:
                    with stub.lock:
                        stub.answers[key] = answer
                return self._answer(200, answer)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, name="chat-stub", daemon=True)

    def __enter__(self) -> ChatStub:
        self._thread.start()
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
