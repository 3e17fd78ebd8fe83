import json
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine.alerts import MAX_TEXT, Alert, Webhook, redact

SECRET = "xoxb-s3cr3t-T0K3N"


@dataclass
class Posted:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class FakeWebhook:
    """A webhook receiver on 127.0.0.1 that answers ``status`` and records every post."""

    base_url: str = ""
    status: int = 200
    posts: list[Posted] = field(default_factory=list)

    @property
    def url(self) -> str:
        """A URL that carries a secret in its path and query, as a Slack webhook's does."""
        return f"{self.base_url}/services/T000/B000/{SECRET}?token={SECRET}"


@contextmanager
def serve_webhook() -> Iterator[FakeWebhook]:
    hook = FakeWebhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            hook.posts.append(Posted(self.path, dict(self.headers), body))
            reply = b"ok" if hook.status == 200 else b"no_service"
            self.send_response(hook.status)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


def dead_url() -> str:
    """A URL (with the secret in it) where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/services/T000/B000/{SECRET}?token={SECRET}"


HALT = Alert(
    kind="trading_halt",
    title="trading HALTED by risk desk: drawdown",
    lines=("halt by risk desk at 2024-06-28 15:00:00 UTC: drawdown",),
    fields={"halted": True, "actor": "risk desk", "events": 1},
)


def test_an_alert_is_posted_as_slack_compatible_json(caplog: pytest.LogCaptureFixture) -> None:
    with serve_webhook() as hook, caplog.at_level(logging.DEBUG):
        delivery = Webhook(hook.url).post(HALT)
    assert delivery.sent and delivery.detail == "HTTP 200"
    [post] = hook.posts
    assert post.headers["Content-Type"] == "application/json"
    assert post.json() == {
        "text": "[tradeflow] trading HALTED by risk desk: drawdown\n"
        "halt by risk desk at 2024-06-28 15:00:00 UTC: drawdown",
        "kind": "trading_halt",
        "fields": {"halted": True, "actor": "risk desk", "events": 1},
    }
    assert "trading HALTED by risk desk" in caplog.text  # logged as well as posted


def test_no_secret_reaches_the_payload_or_the_logs(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    leaky = Alert(
        kind="run_failure",
        title="run of ingest failed",
        lines=(
            f"HTTPError: 403 for url: https://api.polygon.io/v2/aggs?apiKey={SECRET}&limit=5",
            f"connecting with api_key={SECRET} and Authorization: Bearer {SECRET}",
        ),
        fields={"error": f"https://user:{SECRET}@db.example.com/x failed"},
    )
    with serve_webhook() as hook, caplog.at_level(logging.DEBUG):
        assert Webhook(hook.url).post(leaky).sent
        hook.status = 500
        assert not Webhook(hook.url).post(leaky).sent
        assert not Webhook(dead_url(), retries=0).post(leaky).sent
    assert len(hook.posts) == 2
    assert SECRET in hook.posts[0].path  # the webhook did get its URL...
    assert all(SECRET not in p.body.decode() for p in hook.posts)  # ...but no payload has it
    body = hook.posts[0].json()
    assert "HTTPError: 403 for url: https://[url]" in body["text"]
    assert "api_key=[redacted]" in body["text"]
    assert body["fields"]["error"] == "https://[url] failed"
    out, err = capfd.readouterr()
    assert SECRET not in caplog.text + out + err
    assert "/services/T000/B000/" not in caplog.text  # nor the webhook's path


def test_a_webhook_answering_an_error_is_reported_not_raised_nor_repeated() -> None:
    with serve_webhook() as hook:
        hook.status = 503
        delivery = Webhook(hook.url).post(HALT)
    assert not delivery.sent and delivery.detail == "HTTP 503"
    assert len(hook.posts) == 1  # a post that may have arrived is never repeated


def test_a_webhook_that_is_down_is_reported_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        delivery = Webhook(dead_url(), timeout=2.0).post(HALT)
    assert not delivery.sent and delivery.detail == "post failed: ConnectionError"
    assert "not delivered to the webhook: post failed: ConnectionError" in caplog.text


def test_without_a_url_an_alert_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        delivery = Webhook(None).post(HALT)
    assert delivery.sent and delivery.detail == "no webhook configured: logged only"
    assert "alert trading_halt: [tradeflow] trading HALTED" in caplog.text
    assert repr(Webhook(dead_url())) == "Webhook(configured=True)"


def test_redact_keeps_the_words_and_drops_what_could_be_a_secret() -> None:
    assert redact("GET https://hooks.slack.com/services/T/B/abc?x=1 failed") == (
        "GET https://[url] failed"
    )
    assert redact("secret_key: abc123, client_token=xyz; ok") == (
        "secret_key: [redacted], client_token=[redacted]; ok"
    )
    assert redact("Authorization: Bearer abc.def") == "Authorization: Bearer [redacted]"
    assert redact("max_order_notional: order notional 5,000.00 > 1.00") == (
        "max_order_notional: order notional 5,000.00 > 1.00"
    )


def test_a_long_alert_is_cut_to_what_slack_shows() -> None:
    text = Alert("orders_blocked", "many", lines=("x" * 5000,)).text()
    assert len(text) == MAX_TEXT and text.endswith("…")
