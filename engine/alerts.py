"""Alerts to a person: one ``Alert`` posted as JSON to a webhook (a Slack incoming webhook works:
the body's ``text`` is the message; ``kind`` and ``fields`` carry the same facts for other
receivers).

A post that fails is reported (``Delivery``) and logged, never raised: an alert must not stop
the path that raised it. The webhook's URL is a secret (a Slack URL is its own token): it is never
logged or put into a message, and URLs and key-like values in an alert's text are redacted.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

from engine.http import retrying_session

log = logging.getLogger(__name__)

MAX_TEXT = 3_000  # Slack shows about this much of a message's text
_URL = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^\s/?#'\"<>]+[^\s'\"<>]*", re.I)
_KEY_VALUE = re.compile(
    r"\b([\w-]*(?:key|secret|token|password|passwd|signature)[\w-]*)(\s*[=:]\s*)[^\s&,;'\"]+",
    re.I,
)
_BEARER = re.compile(r"\b(bearer|basic)\s+[\w.~+/=-]+", re.I)


class _MaskWebhooks(logging.Filter):
    """urllib3 logs each request's path and query at DEBUG (a Dagster instance may capture
    it): the webhooks' are masked there."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, "[webhook]")
            record.msg, record.args = message, ()
        return True


_masked = _MaskWebhooks()
logging.getLogger("urllib3.connectionpool").addFilter(_masked)


def redact(text: str) -> str:
    """``text`` without what could be a secret: a URL keeps only its scheme (its host, path and
    query may carry a token), a ``key=value`` whose name says key, secret, token or password
    keeps only its name, and an Authorization value goes."""
    text = _URL.sub(lambda m: f"{m.group(1)}[url]", text)
    text = _KEY_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} [redacted]", text)


Field = str | int | float | bool | None


@dataclass(frozen=True)
class Alert:
    """One alert: ``kind`` (run_failure, trading_halt, orders_blocked, check_failed,
    stale_bars), a one-line ``title``, detail ``lines`` and ``fields`` for machines."""

    kind: str
    title: str
    lines: tuple[str, ...] = ()
    fields: Mapping[str, Field] = field(default_factory=dict)

    def text(self) -> str:
        text = redact("\n".join([f"[tradeflow] {self.title}", *self.lines]))
        return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"

    def payload(self) -> dict[str, object]:
        """The JSON body: Slack reads ``text``; every string is redacted."""
        return {
            "text": self.text(),
            "kind": self.kind,
            "fields": {
                name: redact(value) if isinstance(value, str) else value
                for name, value in self.fields.items()
            },
        }


@dataclass(frozen=True)
class Delivery:
    """Whether the alert reached the webhook, and what happened, without the URL."""

    sent: bool
    detail: str


class Webhook:
    """Posts alerts to ``url``; without one, alerts are only logged. A post times out after
    ``timeout`` seconds and is repeated only when the connection failed (nothing was sent)."""

    def __init__(self, url: str | None, timeout: float = 5.0, retries: int = 2) -> None:
        self._url = url or None
        if self._url:
            parts = urlsplit(self._url)
            secrets = (parts.path, parts.query, parts.username, parts.password)
            _masked.secrets |= {s for s in secrets if s and len(s) > 1}
        self._timeout = timeout
        self._retries = retries

    @property
    def configured(self) -> bool:
        return self._url is not None

    def __repr__(self) -> str:  # the URL is a secret
        return f"Webhook(configured={self.configured})"

    def post(self, alert: Alert) -> Delivery:
        """Log the alert and post it; a failure is returned and logged, never raised."""
        body = alert.payload()
        log.warning("alert %s: %s", alert.kind, body["text"])
        if self._url is None:
            return Delivery(True, "no webhook configured: logged only")
        try:
            with retrying_session(self._timeout, self._retries, methods=("GET",)) as session:
                response = session.post(
                    self._url,
                    data=json.dumps(body),
                    headers={"Content-Type": "application/json"},
                    allow_redirects=False,
                )
        except requests.RequestException as e:
            # The exception's text names the URL: only its type is told.
            delivery = Delivery(False, f"post failed: {type(e).__name__}")
        else:
            ok = 200 <= response.status_code < 300
            delivery = Delivery(ok, f"HTTP {response.status_code}")
        if not delivery.sent:
            log.error("alert %s not delivered to the webhook: %s", alert.kind, delivery.detail)
        return delivery
