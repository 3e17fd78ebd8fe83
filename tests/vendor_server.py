"""A scriptable HTTP server on 127.0.0.1 that answers as a vendor would.

Each path has a queue of scripted responses (status, JSON or raw body, headers, delay); when a
path's queue is empty its last response is repeated. Requests are recorded for assertions.
"""

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    body: object = None
    status: int = 200
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def payload(self) -> bytes:
        return self.raw if self.raw is not None else json.dumps(self.body).encode()


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class Route:
    path: str
    when: dict[str, str]
    replies: list[Reply]


class FakeVendor:
    def __init__(self) -> None:
        self.routes: list[Route] = []
        self.requests: list[Request] = []
        self.base_url = ""

    def script(self, path: str, *replies: Reply, when: dict[str, str] | None = None) -> None:
        """Answer GET ``path`` (whose query contains ``when``) with ``replies`` in turn."""
        self.routes = [r for r in self.routes if (r.path, r.when) != (path, when or {})]
        self.routes.append(Route(path, when or {}, list(replies)))

    def requests_to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def _next(self, path: str, query: dict[str, list[str]]) -> Reply:
        matching = [
            r
            for r in self.routes
            if r.path == path and all(query.get(k) == [v] for k, v in r.when.items())
        ]
        if not matching:
            return Reply({"status": "NOT_FOUND", "message": f"no route {path}"}, status=404)
        queue = max(matching, key=lambda r: len(r.when)).replies
        return queue.pop(0) if len(queue) > 1 else queue[0]


@contextmanager
def serve() -> Iterator[FakeVendor]:
    vendor = FakeVendor()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            parts = urlsplit(self.path)
            vendor.requests.append(Request(parts.path, parse_qs(parts.query), dict(self.headers)))
            reply = vendor._next(parts.path, parse_qs(parts.query))
            if reply.delay:
                time.sleep(reply.delay)
            payload = reply.payload()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    vendor.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield vendor
    finally:
        server.shutdown()
        server.server_close()
