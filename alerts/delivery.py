"""Delivery: a Teams Workflows webhook (Adaptive Card), a generic JSON webhook, Graph sendMail.

A webhook URL carries its own secret (Teams Workflows URLs a ``sig=`` signature), so a target is
only ever shown by its name: ``webhook:<host>``, ``teams:<host>``, ``mail:<address>``; the URL
never reaches output, logs or the store. Each target gets one message per run with every alert
it has not received yet; failures are retried with exponential back-off (honouring
``Retry-After``), and a target that still fails leaves those alerts pending for the next run.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pandas as pd

from alerts.config import Config, Delivery, Targets
from ingest import settings
from ingest.errors import UsageError
from reports.export import records

log = logging.getLogger(__name__)

ENV_WEBHOOK = "PROVLENS_ALERT_WEBHOOK"
ENV_TEAMS = "PROVLENS_ALERT_TEAMS"
CARD_MAX_ALERTS = 20  # a Teams message is limited to ~28 KB; the rest is summed up in one line
RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
USER_AGENT = "provlens-alerts"


class DeliveryError(Exception):
    """A target refused or could not be reached (the message never holds a URL)."""


@dataclass(frozen=True)
class Target:
    """A place alerts go. ``url`` is a secret: it is left out of repr and never logged."""

    kind: str  # webhook, teams, mail
    name: str
    url: str = field(default="", repr=False)
    mail_from: str | None = None


def _host(url: str, option: str) -> str:
    parts = urlsplit(url)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{option}: a URL is expected (https://...); the value is not shown")
    if parts.scheme == "http" and not loopback:
        raise UsageError(
            f"{option}: {parts.hostname} must use https (http only for localhost); "
            "the URL is not shown because it carries a secret"
        )
    return parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"


def _env_list(name: str) -> tuple[str, ...]:
    raw = settings.get(name) or ""
    return tuple(v.strip() for v in raw.split(",") if v.strip())


def resolve_targets(
    config: Config,
    *,
    webhook: Sequence[str] = (),
    teams: Sequence[str] = (),
    mail_to: Sequence[str] = (),
    mail_from: str | None = None,
) -> list[Target]:
    """Return the targets: command-line flags, else the environment, else the config file.

    Each kind is taken from the first of those that names any (flags replace, not add to, the
    environment), so a cron job's environment can be overridden for one run.
    """
    file: Targets = config.targets
    hooks = tuple(webhook) or _env_list(ENV_WEBHOOK) or file.webhook
    flows = tuple(teams) or _env_list(ENV_TEAMS) or file.teams
    rcpts = tuple(mail_to) or file.mail_to
    sender = mail_from or file.mail_from
    out: list[Target] = []
    used: dict[str, int] = {}

    def name_for(base: str) -> str:
        used[base] = used.get(base, 0) + 1
        return base if used[base] == 1 else f"{base}#{used[base]}"

    for url in hooks:
        out.append(Target("webhook", name_for(f"webhook:{_host(url, '--webhook')}"), url))
    for url in flows:
        out.append(Target("teams", name_for(f"teams:{_host(url, '--teams')}"), url))
    if rcpts:
        if not sender:
            raise UsageError(
                "--mail-to needs --mail-from UPN (the mailbox provlens sends as, through Graph "
                "sendMail with Mail.Send), or targets.mail_from in the config file"
            )
        for addr in rcpts:
            if "@" not in addr or any(c in addr for c in ",;<> \t"):
                raise UsageError(f"--mail-to {addr!r} is not an email address")
            out.append(Target("mail", name_for(f"mail:{addr}"), mail_from=sender))
    return out


# --- payloads ----------------------------------------------------------------------------------

_MD = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~<])")


def escape_markdown(text: str) -> str:
    """Return ``text`` with the characters Adaptive Cards' Markdown reacts to backslash-escaped."""
    return _MD.sub(r"\\\1", text)


def headline(row: dict[str, Any]) -> str:
    """Return one plain-text line for an alert row: state, severity, rule and summary."""
    state = "RESOLVED" if row["state"] == "resolved" else f"FIRING {row['severity']}"
    return f"[{state}] {row['rule']}: {row['summary']}"


def title(rows: list[dict[str, Any]]) -> str:
    """Return the message title: how many alerts fire and resolve."""
    firing = sum(1 for r in rows if r["state"] == "firing")
    resolved = len(rows) - firing
    parts = [f"{firing} firing"] if firing else []
    parts += [f"{resolved} resolved"] if resolved else []
    return f"provlens alerts: {', '.join(parts)}"


def webhook_payload(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the generic webhook body: the alert rows with the alerts table's columns."""
    return {"source": "provlens", "title": title(rows), "alerts": rows}


def adaptive_card(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Return a Teams Workflows message holding one Adaptive Card (1.4) listing the alerts."""
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": escape_markdown(title(rows)),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
        }
    ]
    for row in rows[:CARD_MAX_ALERTS]:
        colour = (
            "Good"
            if row["state"] == "resolved"
            else "Attention"
            if row["severity"] == "critical"
            else "Warning"
        )
        item: dict[str, Any] = {
            "type": "Container",
            "separator": True,
            "items": [
                {
                    "type": "TextBlock",
                    "text": escape_markdown(headline(row)),
                    "wrap": True,
                    "color": colour,
                },
                {
                    "type": "FactSet",
                    "facts": [
                        {"title": "Subject", "value": escape_markdown(str(row["subject"]))},
                        {"title": "Raised", "value": str(row["raised_at"])},
                        *(
                            [{"title": "Resolved", "value": str(row["resolved_at"])}]
                            if row.get("resolved_at")
                            else []
                        ),
                    ],
                },
            ],
        }
        if row.get("link"):
            item["items"].append(
                {
                    "type": "ActionSet",
                    "actions": [{"type": "Action.OpenUrl", "title": "Open", "url": row["link"]}],
                }
            )
        body.append(item)
    if len(rows) > CARD_MAX_ALERTS:
        body.append(
            {
                "type": "TextBlock",
                "text": f"and {len(rows) - CARD_MAX_ALERTS} more: see the Alerts page",
                "wrap": True,
            }
        )
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": body,
                },
            }
        ],
    }


def mail_html(rows: list[dict[str, Any]]) -> str:
    """Return the mail body: a table of the alerts, every value HTML-escaped."""
    cells = []
    for r in rows:
        link = f'<a href="{html.escape(r["link"], quote=True)}">open</a>' if r.get("link") else ""
        cells.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(v))}</td>"
                for v in (
                    r["state"],
                    r["severity"],
                    r["rule"],
                    r["subject"],
                    r["summary"],
                    r["raised_at"],
                )
            )
            + f"<td>{link}</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>" for h in ("State", "Severity", "Rule", "Subject", "Summary", "Raised", "")
    )
    return (
        f'<p>{html.escape(title(rows))}</p><table border="1" cellpadding="4">'
        f"<tr>{head}</tr>{''.join(cells)}</table>"
    )


# --- sending -----------------------------------------------------------------------------------


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _scrub(text: str, target: Target) -> str:
    """Return ``text`` without the target's URL (exceptions can quote it)."""
    if target.url:
        text = text.replace(target.url, target.name)
        path = urlsplit(target.url).path
        if len(path) > 1:
            text = text.replace(path, "/…")
    return text


def _attempts(
    target: Target,
    send: Callable[[], None],
    policy: Delivery,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Call ``send`` until it succeeds, retrying retryable failures with back-off."""
    delay = policy.backoff_s
    for attempt in range(1, policy.attempts + 1):
        try:
            send()
            return
        except _Retryable as exc:
            if attempt == policy.attempts:
                raise DeliveryError(f"{target.name}: {exc} after {attempt} attempts") from None
            wait = min(policy.max_backoff_s, exc.retry_after if exc.retry_after else delay)
            log.info("%s: %s; retrying in %.1f s (attempt %d)", target.name, exc, wait, attempt)
            sleep(wait)
            delay = min(policy.max_backoff_s, delay * 2)


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _post_json(target: Target, body: dict[str, Any], policy: Delivery) -> None:
    data = json.dumps(body).encode()

    def send() -> None:
        try:
            with httpx.Client(timeout=policy.timeout_s, follow_redirects=False) as client:
                resp = client.post(
                    target.url,
                    content=data,
                    headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
                )
        except httpx.TransportError as exc:
            raise _Retryable(_scrub(f"{type(exc).__name__}: {exc}", target)) from None
        if 200 <= resp.status_code < 300:
            return
        if resp.status_code in RETRYABLE:
            raise _Retryable(
                f"HTTP {resp.status_code}", _retry_after(resp.headers.get("Retry-After"))
            )
        raise DeliveryError(
            f"{target.name}: HTTP {resp.status_code}; check that the webhook still exists "
            "(a Teams Workflows flow stops when its owner leaves)"
        )

    _attempts(target, send, policy)


async def _send_mails(
    targets: list[Target], rows: list[dict[str, Any]], config: Config
) -> dict[str, str | None]:
    """Send one mail per sender to its recipients; return target name -> error (None: sent)."""
    from kiota_abstractions.api_error import APIError
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from kiota_http.middleware.options import RetryHandlerOption
    from msgraph.generated.models.body_type import BodyType
    from msgraph.generated.models.email_address import EmailAddress
    from msgraph.generated.models.item_body import ItemBody
    from msgraph.generated.models.message import Message
    from msgraph.generated.models.recipient import Recipient
    from msgraph.generated.users.item.send_mail.send_mail_post_request_body import (
        SendMailPostRequestBody,
    )

    from ingest.graph.client import _credential_error, build_client, graph_root

    policy = config.delivery
    client, http = build_client(graph_root(config.graph_url))
    results: dict[str, str | None] = {}
    try:
        by_sender: dict[str, list[Target]] = {}
        for t in targets:
            by_sender.setdefault(str(t.mail_from), []).append(t)
        for sender, group in by_sender.items():
            body = SendMailPostRequestBody(
                message=Message(
                    subject=title(rows),
                    body=ItemBody(content_type=BodyType.Html, content=mail_html(rows)),
                    to_recipients=[
                        Recipient(email_address=EmailAddress(address=t.name.split(":", 1)[1]))
                        for t in group
                    ],
                ),
                save_to_sent_items=False,
            )
            cfg: RequestConfiguration[Any] = RequestConfiguration(
                options=[RetryHandlerOption(delay=0, max_retries=0, should_retry=False)]
            )
            error: str | None = None
            delay = policy.backoff_s
            for attempt in range(1, policy.attempts + 1):
                try:
                    await client.users.by_user_id(sender).send_mail.post(
                        body, request_configuration=cfg
                    )
                    error = None
                    break
                except APIError as exc:
                    status = exc.response_status_code
                    error = f"Graph sendMail as {sender}: HTTP {status}"
                    if status in (401, 403):
                        error += (
                            "; the identity needs the Mail.Send application permission, and the "
                            "mailbox must be in its Exchange RBAC for Applications scope"
                        )
                    if status not in RETRYABLE:
                        break
                except httpx.TransportError as exc:
                    error = f"Graph sendMail as {sender}: {type(exc).__name__}"
                except Exception as exc:
                    mapped = _credential_error(exc)
                    if mapped is exc:
                        raise
                    error = str(mapped)
                    break
                if attempt < policy.attempts:
                    log.info("%s; retrying in %.1f s", error, delay)
                    await asyncio.sleep(delay)
                    delay = min(policy.max_backoff_s, delay * 2)
            for t in group:
                results[t.name] = error
    finally:
        await http.aclose()
    return results


def deliver(
    targets: list[Target], pending: pd.DataFrame, config: Config
) -> tuple[pd.DataFrame, list[str]]:
    """Send each target the rows it has not received; return the rows updated and the errors.

    ``delivered_to`` gains the names of targets that took a row; ``delivery_pending`` is True
    for rows some target still lacks. Errors are one line each, naming targets, never URLs.
    """
    out = pending.copy()
    if out.empty or not targets:
        out["delivery_pending"] = False if not targets else out["delivery_pending"]
        return out, []
    got = [set(filter(None, str(v or "").split(","))) for v in out["delivered_to"]]
    rows = records(out)
    errors: list[str] = []
    mail_targets = [t for t in targets if t.kind == "mail"]
    for target in targets:
        if target.kind == "mail":
            continue
        todo = [i for i in range(len(rows)) if target.name not in got[i]]
        if not todo:
            continue
        chosen = [rows[i] for i in todo]
        if target.kind == "teams":
            payload = adaptive_card(chosen)
            if config.delivery.teams_payload == "card":
                payload = payload["attachments"][0]["content"]
        else:
            payload = webhook_payload(chosen)
        try:
            _post_json(target, payload, config.delivery)
        except DeliveryError as exc:
            errors.append(str(exc))
            log.info("alert delivery failed: %s", exc)
            continue
        for i in todo:
            got[i].add(target.name)
    if mail_targets:
        todo = [i for i in range(len(rows)) if any(t.name not in got[i] for t in mail_targets)]
        if todo:
            result = asyncio.run(_send_mails(mail_targets, [rows[i] for i in todo], config))
            for name, error in result.items():
                if error is None:
                    for i in todo:
                        got[i].add(name)
                elif error not in errors:
                    errors.append(error)
                    log.info("alert delivery failed: %s", error)
    names = [t.name for t in targets]
    out["delivered_to"] = [
        ",".join([n for n in names if n in g] + sorted(g - set(names))) for g in got
    ]
    out["delivery_pending"] = [any(n not in g for n in names) for g in got]
    return out, errors
