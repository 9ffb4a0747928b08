"""An HTTP proxy on loopback in front of one real server, failing the requests a rule picks.

The fault tests put it between a client (the store's S3 client, MLflow's) and the real server
(moto_server, an MLflow tracking server): every request goes through unchanged unless
``rule(n, method, path)`` (``n`` counts the requests from 0; ``path`` is unquoted) names a
fault:

- ``"error"``: answer ``503 SlowDown`` (S3's throttling answer; MLflow's client sees a 503)
  without passing the request on;
- ``"drop"``: close the connection without an answer (a server that died mid-request);
- ``"hang"``: answer nothing until the client gives up (or ``release()``), then close.

``requests`` records each request and what was done with it.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import unquote, urlsplit

Fault = Literal["error", "drop", "hang"]
Rule = Callable[[int, str, str], Fault | None]

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}
_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class FaultyProxy:
    """Forward to ``upstream`` (``http://host:port``); ``rule`` picks the requests that fail."""

    def __init__(self, upstream: str, rule: Rule | None = None) -> None:
        self.upstream = urlsplit(upstream).netloc
        self.rule: Rule = rule or (lambda n, method, path: None)
        self.requests: list[tuple[str, str, str]] = []  # (method, path, "ok" or the fault)
        self._lock = threading.Lock()
        self._released = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = unquote(self.path)  # S3 keys as written (``=`` travels as %3D)
                with proxy._lock:
                    n = len(proxy.requests)
                    fault = proxy.rule(n, self.command, path)
                    proxy.requests.append((self.command, path, fault or "ok"))
                if fault == "hang":
                    proxy._released.wait(timeout=120)
                if fault in ("drop", "hang"):
                    self.close_connection = True
                    return
                if fault == "error":
                    self._answer(503, [("Content-Type", "application/xml")], _SLOW_DOWN)
                    return
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                    kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP]
                    self._answer(answer.status, kept, data)
                finally:
                    upstream.close()

            def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response_only(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def faults(self) -> list[tuple[str, str, str]]:
        """The requests that were failed."""
        with self._lock:
            return [r for r in self.requests if r[2] != "ok"]

    def release(self) -> None:
        """End every ``hang`` now (and every later one at once)."""
        self._released.set()

    @contextmanager
    def running(self) -> Iterator[FaultyProxy]:
        self._thread.start()
        try:
            yield self
        finally:
            self.release()
            self._server.shutdown()
            self._server.server_close()
