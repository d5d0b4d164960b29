"""A loopback OpenAI-compatible chat completions server whose behaviour the request's model name picks.

It is a real HTTP server on 127.0.0.1 (threads, one per connection); the
runner talks to it with its real client. Models:

- ``stream``: streams ``"Hello"``, ``", "``, ``"world"`` as server-sent events.
- ``gated``: streams ``"first "``, then waits for ``release`` before ``"second"``:
  a test that sees ``first`` on a screen before releasing proves the answer streamed.
- ``flaky``: the first request gets 429 with ``Retry-After: 1``, later ones stream ``"ok"``.
- ``unavailable``: the first request gets 503 without ``Retry-After``, later ones stream ``"ok"``.
- ``unauthorized``: 401.
- ``slow``: streams ``"thinking"`` (then sets ``streaming``), then keeps the stream open
  (an SSE comment every 20 ms) until the client goes away, which ``disconnected`` records.
- ``leaky``: echoes the bearer token it got, raw and encoded, each form split
  across two chunks.
- ``plain``: a non-streaming JSON answer ``"plain answer"``.
- ``delayed``: streams ``"done"`` after 100 ms.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote


@dataclass
class Seen:
    model: str
    token: str
    time: float
    body: dict


@dataclass
class FakeModel:
    server: ThreadingHTTPServer
    requests: list[Seen] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    streaming: threading.Event = field(default_factory=threading.Event)
    disconnected: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def count(self, model: str) -> int:
        with self.lock:
            return sum(1 for seen in self.requests if seen.model == model)


def leaked_forms(token: str) -> list[str]:
    raw = token.encode()
    return [
        token,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        quote(token, safe=""),
        json.dumps(token)[1:-1].replace("/", "\\/"),
    ]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeModel

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        model = body["model"]
        with self.fake.lock:
            self.fake.requests.append(Seen(model, token, time.monotonic(), body))
            nth = sum(1 for seen in self.fake.requests if seen.model == model)
        if model == "flaky" and nth == 1:
            return self._json(429, {"error": {"message": "slow down"}}, {"Retry-After": "1"})
        if model == "unavailable" and nth == 1:
            return self._json(503, {"error": {"message": "overloaded"}})
        if model == "unauthorized":
            return self._json(401, {"error": {"message": "invalid api key"}})
        if model == "plain":
            return self._json(200, {"choices": [{"message": {"role": "assistant", "content": "plain answer"}}]})
        self._start_stream()
        try:
            if model == "stream":
                self._chunks("Hello", ", ", "world")
            elif model == "gated":
                self._chunks("first ")
                self.fake.release.wait(60)
                self._chunks("second")
            elif model in ("flaky", "unavailable"):
                self._chunks("ok")
            elif model == "delayed":
                time.sleep(0.1)  # the model "thinking": what keeps several runners busy at once
                self._chunks("done")
            elif model == "leaky":
                pieces = []
                for form in leaked_forms(token):
                    half = len(form) // 2
                    pieces += [f"[{form[:half]}", f"{form[half:]}] "]
                self._chunks("the key: ", *pieces)
            elif model == "slow":
                self._chunks("thinking")
                self.fake.streaming.set()
                for _ in range(3000):  # a minute at most
                    self.wfile.write(b": still thinking\n\n")
                    self.wfile.flush()
                    time.sleep(0.02)
                return
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.fake.disconnected.set()

    def _json(self, code: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()

    def _chunks(self, *texts: str) -> None:
        for text in texts:
            event = {"choices": [{"index": 0, "delta": {"content": text}}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()


def start_fake_model() -> FakeModel:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    fake = FakeModel(server)
    server.RequestHandlerClass = type("Handler", (_Handler,), {"fake": fake})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return fake


def stop_fake_model(fake: FakeModel) -> None:
    fake.release.set()
    fake.server.shutdown()
    fake.server.server_close()
