"""The services the agent example (gdl/examples/agent) calls, on 127.0.0.1, for running it offline.

- ``GET /primary/{topic}``: 503, always (the primary source is down: the goal re-plans to the mirror);
- ``GET /mirror/{topic}``: 200, ``{"topic": ..., "summary": ..., "facts": [...]}``;
- ``POST /v1/chat/completions``: an OpenAI-compatible answer, its content built from the prompt's facts.

    python -m workers.agent_stubs [--port 8765]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FACTS = {
    "tides": ["tides are caused by the moon's gravity", "there are two high tides a day"],
    "volcanoes": ["volcanic ash can ground flights", "lava is molten rock"],
}


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

    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "primary":
            self._answer(503, {"error": "the primary source is down"})
        elif len(parts) == 2 and parts[0] == "mirror":
            facts = FACTS.get(parts[1], [f"nothing is known about {parts[1]}"])
            self._answer(200, {"topic": parts[1], "summary": f"what the mirror knows about {parts[1]}", "facts": facts})
        else:
            self._answer(404, {"error": "no such path"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path != "/v1/chat/completions":
            self._answer(404, {"error": "no such path"})
            return
        prompt = body["messages"][-1]["content"]
        facts = prompt.split("Facts: ", 1)[-1]
        content = f"From what I found: {facts}"
        self._answer(
            200,
            {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": {
                    "prompt_tokens": len(prompt.split()),
                    "completion_tokens": len(content.split()),
                    "total_tokens": len(prompt.split()) + len(content.split()),
                },
            },
        )


class Stubs:
    """Serve the stubs in a thread (``port`` 0: a free one); ``port`` is the one bound."""

    def __init__(self, port: int = 0) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Stubs:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--port", type=int, default=8765)
    args = p.parse_args()
    with Stubs(args.port) as stubs:
        print(f"serving the agent example's stubs on http://127.0.0.1:{stubs.port} (Ctrl-C stops)")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
