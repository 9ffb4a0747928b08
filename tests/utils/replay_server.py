"""A real HTTP server on 127.0.0.1 that replays recorded provider payloads.

Only the providers' remote hosts are replaced: the real client libraries (yfinance,
alpha_vantage, polygon-api-client) send real HTTP requests to this server. A test
registers routes (path + a subset of query parameters -> a queue of responses); the last
response of a queue repeats, so ``[429, 500, 200]`` means "two failures, then success".
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    """One HTTP answer: status, body and headers; ``delay_s`` stalls it (timeout tests)."""

    body: bytes = b""
    status: int = 200
    content_type: str = "application/json"
    delay_s: float = 0.0

    @classmethod
    def json(cls, data: Any, status: int = 200, delay_s: float = 0.0) -> Reply:
        return cls(json.dumps(data).encode(), status=status, delay_s=delay_s)


@dataclass
class Route:
    """Requests whose path matches ``path`` (a regex, full match) and whose query holds ``query``."""

    path: str
    query: dict[str, str]
    replies: list[Reply]
    hits: int = 0

    def matches(self, path: str, query: dict[str, list[str]]) -> bool:
        if not re.fullmatch(self.path, path):
            return False
        return all(query.get(k, [None])[0] == v for k, v in self.query.items())

    def next_reply(self) -> Reply:
        reply = self.replies[min(self.hits, len(self.replies) - 1)]
        self.hits += 1
        return reply


@dataclass
class ReplayServer:
    """Threaded ``http.server`` replaying registered routes; unmatched requests get 404."""

    routes: list[Route] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, path: str, *replies: Reply, **query: str) -> Route:
        """Register ``replies`` for ``path`` (regex) and query parameters ``query``.

        Later routes win over earlier ones, so a test can override a default route.
        """
        route = Route(path=path, query=query, replies=list(replies))
        with self._lock:
            self.routes.insert(0, route)
        return route

    def reset(self) -> None:
        """Forget every route and logged request (called between tests)."""
        with self._lock:
            self.routes.clear()
            self.requests.clear()
            self.authorizations.clear()

    def _answer(self, raw_path: str, authorization: str | None) -> Reply:
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query)
        with self._lock:
            self.requests.append(raw_path)
            if authorization:
                self.authorizations.append(authorization)
            for route in self.routes:
                if route.matches(parts.path, query):
                    return route.next_reply()
        return Reply.json({"error": f"no route for {raw_path}"}, status=404)

    def start(self) -> ReplayServer:
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                reply = replay._answer(self.path, self.headers.get("Authorization"))
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test): nothing to answer

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # keep pytest output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def recorded_yahoo_body(path: Path) -> dict[str, Any]:
    """The wire payload (``response.bodyJson``) of a node-yahoo-finance2 HTTP recording."""
    return json.loads(path.read_text(encoding="utf-8"))["response"]["bodyJson"]
