"""Alert settings: rule thresholds, delivery targets, dashboard links and watch sources (TOML).

Every key is optional; :data:`DEFAULTS` holds the documented defaults (docs/alerts.example.toml
shows them all). A file may set only what it changes::

    dashboard_url = "https://provlens.contoso.example/"

    [rules.failure_spike]
    factor = 3.0
    min_failures = 10

    [targets]
    webhook = ["https://hooks.example/..."]      # secrets: prefer PROVLENS_ALERT_WEBHOOK
    teams = ["https://...logic.azure.com/..."]
    mail_to = ["identity-team@contoso.example"]
    mail_from = "provlens@contoso.example"

An unknown section, rule or key, or a value of the wrong type, is a configuration error (exit
2) naming the file and the key, so a typo never silently leaves a default in place.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ingest.errors import UsageError

RULE_NAMES = (
    "failure_spike",
    "quarantine",
    "quarantine_risk",
    "cycle_slow",
    "stalled",
    "deprovision_missed",
    "wiki_errors",
    "access_slo",
)

# Every rule also takes `enabled` (bool) and `severity` (info, warning, critical).
DEFAULTS: dict[str, dict[str, Any]] = {
    # failures in the last `window_minutes` >= factor x the job's usual rate for such a window
    # (measured over the `baseline_days` before it) and >= min_failures.
    "failure_spike": {
        "severity": "warning",
        "window_minutes": 120,
        "baseline_days": 7,
        "factor": 3.0,
        "min_failures": 10,
    },
    # a job whose latest snapshot says Quarantine.
    "quarantine": {"severity": "critical"},
    # a job at these quarantine-risk levels (the quarantine-risk report's `risk`).
    "quarantine_risk": {"severity": "warning", "levels": ["approaching", "over_threshold"]},
    # the job's latest incremental cycle took > factor x the p90 of its earlier incremental
    # cycles (at least min_history of them, from the last history_days) and > min_duration_s.
    "cycle_slow": {
        "severity": "warning",
        "factor": 2.0,
        "min_history": 5,
        "history_days": 30,
        "min_duration_s": 300,
    },
    # an active, scheduled job with no run for `intervals` schedule intervals.
    "stalled": {"severity": "critical", "intervals": 3},
    # a user out of scope (unassigned, or disabled) but active in the wiki, `grace_hours` after
    # Entra's last event about that user.
    "deprovision_missed": {"severity": "warning", "grace_hours": 24},
    # the wiki answered >= max_error_rate of its SCIM requests with 5xx or 429 in the last
    # window_minutes (at least min_requests requests).
    "wiki_errors": {
        "severity": "warning",
        "window_minutes": 15,
        "max_error_rate": 0.05,
        "min_requests": 20,
    },
    # users who waited (or are still waiting) more than `minutes` for wiki access (the
    # access-time report), assigned in the last lookback_days: one alert per app, or per user.
    "access_slo": {"severity": "warning", "minutes": 60, "lookback_days": 7, "per_user": False},
}
SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class Delivery:
    """How hard delivery tries: attempts per target and the first back-off (doubling)."""

    attempts: int = 4
    backoff_s: float = 2.0
    max_backoff_s: float = 60.0
    timeout_s: float = 20.0
    # "message": the Workflows template's {"type": "message", "attachments": [card]};
    # "card": the bare Adaptive Card, for custom flows that parse the body as the card itself.
    teams_payload: str = "message"


@dataclass(frozen=True)
class Targets:
    """Where alerts go; URLs are secrets (they carry their own signature)."""

    webhook: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    mail_to: tuple[str, ...] = ()
    mail_from: str | None = None

    def __bool__(self) -> bool:
        return bool(self.webhook or self.teams or self.mail_to)


@dataclass(frozen=True)
class Config:
    """Everything `provlens alert` and `provlens watch` read from the config file."""

    rules: dict[str, dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(DEFAULTS))
    targets: Targets = field(default_factory=Targets)
    delivery: Delivery = field(default_factory=Delivery)
    dashboard_url: str = "http://localhost:8501/"
    graph_url: str | None = None
    # watch: the sources each round ingests ("graph", "scim") and their options
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: str | None = None

    def rule(self, name: str) -> dict[str, Any]:
        """Return the settings of rule ``name``."""
        return self.rules[name]

    def enabled(self, name: str) -> bool:
        """Return whether rule ``name`` runs."""
        return bool(self.rules[name].get("enabled", True))


def _where(path: str | None, key: str) -> str:
    # A quoted TOML key may hold a newline or control character: shown escaped, one line.
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in key)
    return f"{path or 'alert config'}: {shown}"


def _check_type(path: str | None, key: str, value: Any, like: Any) -> Any:
    """Return ``value`` if it has the type of the default ``like`` (ints pass as floats)."""
    if isinstance(like, bool):
        ok = isinstance(value, bool)
    elif isinstance(like, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(like, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(like, list):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise UsageError(
            f"{_where(path, key)} = {value!r} is not a {type(like).__name__}; "
            "see docs/alerts.example.toml"
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise UsageError(f"{_where(path, key)} = {value!r} must not be negative")
    return value


def _rules(path: str | None, raw: Any) -> dict[str, dict[str, Any]]:
    rules = copy.deepcopy(DEFAULTS)
    if not isinstance(raw, dict):
        raise UsageError(f"{_where(path, 'rules')} must be a table of [rules.<name>] sections")
    for name, values in raw.items():
        if name not in DEFAULTS:
            raise UsageError(
                f"{_where(path, f'rules.{name}')}: unknown rule; rules: {', '.join(RULE_NAMES)}"
            )
        if not isinstance(values, dict):
            raise UsageError(f"{_where(path, f'rules.{name}')} must be a table")
        for key, value in values.items():
            where = f"rules.{name}.{key}"
            if key == "enabled":
                rules[name][key] = _check_type(path, where, value, True)
            elif key == "severity":
                if value not in SEVERITIES:
                    raise UsageError(
                        f"{_where(path, where)} = {value!r}: use one of {', '.join(SEVERITIES)}"
                    )
                rules[name][key] = value
            elif key in DEFAULTS[name]:
                rules[name][key] = _check_type(path, where, value, DEFAULTS[name][key])
            else:
                known = ", ".join(["enabled", *DEFAULTS[name]])
                raise UsageError(f"{_where(path, where)}: unknown setting; known: {known}")
    return rules


def _strings(path: str | None, key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise UsageError(f"{_where(path, key)} must be a list of strings")
    return tuple(v.strip() for v in value)


def parse(raw: dict[str, Any], path: str | None = None) -> Config:
    """Return the Config a parsed TOML document describes (errors name ``path`` and the key)."""
    known = {"rules", "targets", "delivery", "dashboard_url", "graph_url", "sources"}
    for key in raw:
        if key not in known:
            raise UsageError(
                f"{_where(path, key)}: unknown setting; known: {', '.join(sorted(known))}"
            )
    rules = _rules(path, raw.get("rules", {}))
    t = raw.get("targets", {})
    if not isinstance(t, dict):
        raise UsageError(f"{_where(path, 'targets')} must be a table")
    for key in t:
        if key not in ("webhook", "teams", "mail_to", "mail_from"):
            raise UsageError(
                f"{_where(path, f'targets.{key}')}: unknown target; use webhook, teams, "
                "mail_to, mail_from"
            )
    mail_from = t.get("mail_from")
    if mail_from is not None and not isinstance(mail_from, str):
        raise UsageError(f"{_where(path, 'targets.mail_from')} must be a string (a UPN)")
    targets = Targets(
        webhook=_strings(path, "targets.webhook", t.get("webhook", [])),
        teams=_strings(path, "targets.teams", t.get("teams", [])),
        mail_to=_strings(path, "targets.mail_to", t.get("mail_to", [])),
        mail_from=mail_from,
    )
    d = raw.get("delivery", {})
    base = Delivery()
    if not isinstance(d, dict):
        raise UsageError(f"{_where(path, 'delivery')} must be a table")
    values: dict[str, Any] = {}
    for key, value in d.items():
        if not hasattr(base, key):
            raise UsageError(
                f"{_where(path, f'delivery.{key}')}: unknown setting; known: attempts, "
                "backoff_s, max_backoff_s, timeout_s, teams_payload"
            )
        values[key] = _check_type(path, f"delivery.{key}", value, getattr(base, key))
    if values.get("teams_payload", "message") not in ("message", "card"):
        raise UsageError(f'{_where(path, "delivery.teams_payload")} must be "message" or "card"')
    if values.get("attempts", 1) < 1:
        raise UsageError(f"{_where(path, 'delivery.attempts')} must be at least 1")
    sources = raw.get("sources", {})
    if not isinstance(sources, dict) or not all(isinstance(v, dict) for v in sources.values()):
        raise UsageError(f"{_where(path, 'sources')} must hold [sources.<name>] tables")
    for name in sources:
        if name not in ("graph", "scim"):
            raise UsageError(
                f"{_where(path, f'sources.{name}')}: unknown source; use graph or scim"
            )
    dashboard_url = raw.get("dashboard_url", Config.dashboard_url)
    graph_url = raw.get("graph_url")
    for key, value in (("dashboard_url", dashboard_url), ("graph_url", graph_url)):
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{_where(path, key)} must be a string (a URL)")
    if (
        urlsplit(dashboard_url).scheme not in ("http", "https")
        or not urlsplit(dashboard_url).netloc
    ):
        raise UsageError(
            f"{_where(path, 'dashboard_url')} = {dashboard_url!r} is not an http(s) URL; alert "
            "links are built on it (e.g. https://provlens.contoso.com/)"
        )
    return Config(
        rules=rules,
        targets=targets,
        delivery=Delivery(**values),
        dashboard_url=dashboard_url,
        graph_url=graph_url,
        sources=sources,
        path=path,
    )


def load(path: str | Path | None) -> Config:
    """Return the Config in TOML file ``path`` (the defaults when None)."""
    if path is None:
        return Config()
    p = Path(path).expanduser()
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise UsageError(f"{p}: alert config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{p}: cannot read the alert config ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{p}: not valid TOML ({exc}); see docs/alerts.example.toml") from None
    return parse(raw, str(p))
