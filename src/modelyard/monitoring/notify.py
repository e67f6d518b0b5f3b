"""Alert notifications: the alert's JSON POSTed to webhooks (retried with exponential backoff on
connection errors, 5xx and 429; other 4xx are not retried) and the rule's command run when it
fires. Failures are logged and returned, never raised: an evaluator records them on the incident.
A payload's ``idempotency_key`` is also sent as the ``Idempotency-Key`` header: a notification
delivered again (at least once) carries the same key, so a receiver can drop the copy.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from modelyard.monitoring.alert_rules import ParsedRule
    from modelyard.settings import AlertSettings

__all__ = ["Delivery", "Notifier", "WebhookNotifier", "redact"]

logger = logging.getLogger("modelyard.monitoring.alerts")
_STDERR_LINES = 5
_STDERR_CHARS = 500


# --- notification ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a notification achieved: webhooks that took it, the failures (``None``: none), and
    the rule command's exit code and first lines of standard error."""

    delivered: int = 0
    error: str | None = None
    command_exit: int | None = None
    command_error: str | None = None


class Notifier(Protocol):
    """Tells the world an alert fired or resolved; must not raise."""

    def notify(self, rule: ParsedRule, payload: dict[str, Any]) -> Delivery: ...


class WebhookNotifier:
    """POSTs the alert's JSON to the rule's webhooks and ``webhooks`` (every alert), and runs the
    rule's command when it fires."""

    def __init__(
        self,
        webhooks: Sequence[str] = (),
        *,
        attempts: int = 4,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
        command_timeout_s: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.webhooks = tuple(webhooks)
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.command_timeout_s = command_timeout_s
        self.sleep = sleep

    @classmethod
    def from_settings(cls, settings: AlertSettings) -> WebhookNotifier:
        return cls(
            settings.webhooks,
            attempts=settings.attempts,
            backoff_s=settings.backoff_s,
            timeout_s=settings.timeout_s,
        )

    def notify(self, rule: ParsedRule, payload: dict[str, Any]) -> Delivery:
        body = json.dumps(payload).encode()
        key = payload.get("idempotency_key")
        errors = []
        urls = list(dict.fromkeys((*rule.webhooks, *self.webhooks)))
        for url in urls:
            error = self.post(url, body, key=str(key) if key is not None else None)
            if error is not None:
                errors.append(error)
        exit_code, command_error = None, None
        if rule.command and payload.get("status") == "firing":
            exit_code, command_error = _run_command(rule, body, timeout_s=self.command_timeout_s)
        return Delivery(
            delivered=len(urls) - len(errors),
            error="; ".join(errors) or None,
            command_exit=exit_code,
            command_error=command_error,
        )

    @property
    def budget_s(self) -> float:
        """The longest one webhook's delivery takes: every attempt timing out, and the backoff
        between them."""
        backoff = sum(self.backoff_s * 2.0**i for i in range(self.attempts - 1))
        return float(self.attempts * self.timeout_s + backoff)

    def post(self, url: str, body: bytes, *, key: str | None = None) -> str | None:
        """POST ``body`` (with ``Idempotency-Key: key`` when given), retrying connection errors,
        5xx and 429 with exponential backoff; ``None`` when accepted, else the last failure (the
        URL's secret parts left out)."""
        shown = redact(url)
        attempt, error = 0, ""
        for attempt in range(1, self.attempts + 1):
            error, retry = _post_once(url, body, self.timeout_s, key)
            if not error:
                return None
            logger.warning(
                "alert webhook %s failed (attempt %d of %d): %s",
                shown, attempt, self.attempts, error,
            )  # fmt: skip
            if not retry or attempt == self.attempts:
                break
            self.sleep(self.backoff_s * 2 ** (attempt - 1))
        return f"{shown}: {error} after {attempt} attempt{'s' if attempt > 1 else ''}"


def _post_once(url: str, body: bytes, timeout_s: float, key: str | None) -> tuple[str, bool]:
    """One POST: ``("", False)`` when accepted, else the failure and whether to retry."""
    headers = {"Content-Type": "application/json", "User-Agent": "modelyard-alerts"}
    if key is not None:
        headers["Idempotency-Key"] = key
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        exc.close()
        return f"HTTP {exc.code}", exc.code >= 500 or exc.code == 429
    except urllib.error.URLError as exc:
        return f"connection failed ({exc.reason})", True
    except (OSError, http.client.HTTPException) as exc:
        return f"connection failed ({type(exc).__name__}: {exc})", True
    return "", False


def _run_command(
    rule: ParsedRule, body: bytes, *, timeout_s: float
) -> tuple[int | None, str | None]:
    """Run the rule's command in a shell with ``body`` on standard input; returns its exit code
    (``None`` when it did not finish) and, on failure, the first lines of its standard error."""
    assert rule.command is not None
    try:
        proc = subprocess.Popen(
            rule.command,
            shell=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a timeout kills the whole group, not only the shell
        )
    except OSError as exc:
        logger.warning("alert command of rule %s could not start: %s", rule.name, exc)
        return None, f"could not start: {exc}"
    with proc:
        try:
            _, stderr = proc.communicate(body, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            logger.warning("alert command of rule %s timed out after %g s", rule.name, timeout_s)
            return None, f"timed out after {timeout_s:g} s"
    if proc.returncode == 0:
        logger.info("alert command of rule %s succeeded", rule.name)
        return 0, None
    lines = stderr.decode(errors="replace").strip().splitlines()[:_STDERR_LINES]
    first = "\n".join(lines)[:_STDERR_CHARS] or None
    if first is None:
        logger.warning(
            "alert command of rule %s exited %d and wrote nothing to standard error",
            rule.name, proc.returncode,
        )  # fmt: skip
    else:
        logger.warning("alert command of rule %s exited %d: %s", rule.name, proc.returncode, first)
    return proc.returncode, first


def redact(url: str) -> str:
    """A URL without its path, query or user (webhook URLs often carry a secret token)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        host = None
    if host:
        try:
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            port = ""
        return f"{parts.scheme}://{host}{port}/…"
    scheme, sep, _ = url.partition("://")
    return f"{scheme}://…" if sep else f"{url[:12]}…"
