"""`provlens alert` end to end: a real store, a loopback webhook receiver, the Graph test server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from ingest.store import Store
from provlens.cli import main
from tests.support import frames as F
from tests.support.graph_server import GraphFixture
from tests.support.webhook_server import WebhookReceiver

NOW = "2026-11-21T12:00:00Z"
LATER = "2026-11-21T13:00:00Z"
JOB = "scim.j1"
SP = "sp1"
FAST = "[delivery]\nattempts = 2\nbackoff_s = 0.01\n"


def job(captured: str, code: str, **extra) -> dict:
    return {
        "captured_at": captured,
        "service_principal_id": SP,
        "job_id": JOB,
        "status_code": code,
        "schedule_state": "Active",
        "steady_state_first_at": "2026-10-01T00:00:00Z",
        **extra,
    }


def quarantined(store: Store, at: str = "2026-11-21T11:55:00Z") -> None:
    with store.batch(source="file") as b:
        b.add(
            {
                "sync_jobs": F.frame(
                    "sync_jobs",
                    [
                        job(
                            at,
                            "Quarantine",
                            quarantine_reason="EncounteredQuarantineException *bold* <b>",
                            quarantine_began="2026-11-21T06:00:00Z",
                        )
                    ],
                )
            }
        )


def recovered(store: Store, at: str = "2026-11-21T12:55:00Z") -> None:
    with store.batch(source="file") as b:
        b.add({"sync_jobs": F.frame("sync_jobs", [job(at, "Active")])})


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as h:
        yield h


@pytest.fixture
def graph() -> Iterator[GraphFixture]:
    with GraphFixture() as g:
        yield g


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "store")
    quarantined(s)
    return s


@pytest.fixture
def fast(tmp_path: Path) -> Path:
    p = tmp_path / "alerts.toml"
    p.write_text('dashboard_url = "https://provlens.example/"\n' + FAST, encoding="utf-8")
    return p


def alert(capsys, store: Store, *args: str, now: str = NOW) -> tuple[int, list | str, str]:
    code = main(["--store", str(store.path), "--now", now, "alert", *args])
    out, err = capsys.readouterr()
    try:
        return code, json.loads(out), err
    except json.JSONDecodeError:
        return code, out, err


def stored(store: Store) -> pd.DataFrame:
    return store.read("alerts")


def test_fires_once_and_is_delivered_once(capsys, store, fast, hook) -> None:
    code, rows, err = alert(
        capsys, store, "--config", str(fast), "--webhook", hook.url(), "--format", "json"
    )
    assert code == 0, err
    assert [(r["alert_id"], r["state"], r["severity"]) for r in rows] == [
        (f"quarantine:{JOB}", "firing", "critical")
    ]
    host = f"webhook:127.0.0.1:{hook.port}"
    assert rows[0]["delivered_to"] == host and rows[0]["delivery_pending"] is False
    assert rows[0]["raised_at"] == "2026-11-21T12:00:00.000Z"
    assert rows[0]["link"] == "https://provlens.example/cycles?job=scim.j1"
    assert len(hook.received) == 1
    body = hook.received[0].body
    assert body["source"] == "provlens"
    assert [a["alert_id"] for a in body["alerts"]] == [f"quarantine:{JOB}"]
    # second run: still firing, nothing new, nothing sent
    code, rows, _ = alert(
        capsys,
        store,
        "--config",
        str(fast),
        "--webhook",
        hook.url(),
        "--format",
        "json",
        now=LATER,
    )
    assert (code, rows) == (0, [])
    assert len(hook.log) == 1
    assert len(stored(store)) == 1


def test_failed_delivery_stays_pending_and_is_retried_next_run(capsys, store, fast) -> None:
    with WebhookReceiver() as hook:
        hook.fail(2, status=503)  # both attempts of the first run fail
        code, rows, err = alert(
            capsys, store, "--config", str(fast), "--webhook", hook.url(), "--format", "json"
        )
        assert code == 4
        assert [r["delivery_pending"] for r in rows] == [True]
        assert len(err.strip().splitlines()) == 1
        assert f"webhook:127.0.0.1:{hook.port}" in err and "HTTP 503" in err
        assert hook.received == [] and len(hook.log) == 2
        s = stored(store)
        assert s["delivery_pending"].tolist() == [True] and s["delivered_to"].tolist() == [""]
        # next run: the condition still holds; the pending alert is delivered, not raised again
        code, rows, err = alert(
            capsys,
            store,
            "--config",
            str(fast),
            "--webhook",
            hook.url(),
            "--format",
            "json",
            now=LATER,
        )
        assert (code, rows) == (0, []), err
        assert [a["alert_id"] for a in hook.received[0].body["alerts"]] == [f"quarantine:{JOB}"]
        s = stored(store)
        assert len(s) == 1
        assert s["delivery_pending"].tolist() == [False]
        assert s["delivered_to"].tolist() == [f"webhook:127.0.0.1:{hook.port}"]
        assert s["raised_at"].tolist() == [F.ts(NOW)]
        # a third run has nothing left to retry
        code, text, _ = alert(capsys, store, "--config", str(fast), "--webhook", hook.url())
        assert code == 0 and "retried" not in text and len(hook.log) == 3


def test_retries_with_backoff_within_a_run(capsys, store, tmp_path, hook) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[delivery]\nattempts = 4\nbackoff_s = 0.01\n", encoding="utf-8")
    hook.fail(2, status=429, retry_after="0")
    code, _, err = alert(capsys, store, "--config", str(cfg), "--webhook", hook.url())
    assert code == 0, err
    assert [r.status for r in hook.log] == [429, 429, 202]


def test_resolution_is_announced_once(capsys, store, fast, hook) -> None:
    args = ("--config", str(fast), "--webhook", hook.url(), "--format", "json")
    assert alert(capsys, store, *args)[0] == 0
    recovered(store)
    code, rows, _ = alert(capsys, store, *args, now=LATER)
    assert code == 0
    assert [(r["state"], r["resolved_at"], r["raised_at"]) for r in rows] == [
        ("resolved", "2026-11-21T13:00:00.000Z", "2026-11-21T12:00:00.000Z")
    ]
    assert [a["state"] for a in hook.received[1].body["alerts"]] == ["resolved"]
    code, rows, _ = alert(capsys, store, *args, now="2026-11-21T14:00:00Z")
    assert (code, rows) == (0, [])
    assert len(hook.log) == 2
    # fires again later: a new firing row, the old one kept as history
    quarantined(store, at="2026-11-21T14:30:00Z")
    code, rows, _ = alert(capsys, store, *args, now="2026-11-21T15:00:00Z")
    assert [r["state"] for r in rows] == ["firing"]
    history = stored(store).sort_values("raised_at")
    assert history["state"].tolist() == ["resolved", "firing"]
    assert history["alert_id"].nunique() == 1


def test_dry_run_lists_but_neither_delivers_nor_stores(capsys, store, hook) -> None:
    code, rows, _ = alert(capsys, store, "--dry-run", "--webhook", hook.url(), "--format", "json")
    assert code == 0
    assert [r["rule"] for r in rows] == ["quarantine"]
    assert hook.log == []
    assert stored(store).empty
    code, text, _ = alert(capsys, store, "--dry-run")
    assert "[FIRING critical] quarantine: Job scim.j1 is in quarantine" in text
    assert "would raise 1, would resolve 0" in text


def test_teams_gets_an_adaptive_card_with_text_escaped(capsys, store, fast, hook) -> None:
    code, _, err = alert(capsys, store, "--config", str(fast), "--teams", hook.url("/flow"))
    assert code == 0, err
    body = hook.received[0].body
    assert body["type"] == "message"
    att = body["attachments"][0]
    assert att["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = att["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    texts = [
        i["text"]
        for c in card["body"]
        if c["type"] == "Container"
        for i in c["items"]
        if i["type"] == "TextBlock"
    ]
    assert len(texts) == 1
    # Markdown in a reason is shown as text, not rendered
    assert r"\*bold\*" in texts[0] and "*bold*" not in texts[0].replace(r"\*", "")
    actions = [
        a
        for c in card["body"]
        if c["type"] == "Container"
        for i in c["items"]
        if i["type"] == "ActionSet"
        for a in i["actions"]
    ]
    assert actions == [
        {
            "type": "Action.OpenUrl",
            "title": "Open",
            "url": "https://provlens.example/cycles?job=scim.j1",
        }
    ]
    assert "MessageCard" not in json.dumps(body)


def test_targets_from_the_environment(capsys, store, fast, monkeypatch) -> None:
    with WebhookReceiver() as a, WebhookReceiver() as b:
        monkeypatch.setenv("PROVLENS_ALERT_WEBHOOK", f"{a.url('/x')}, {b.url('/y')}")
        code, rows, err = alert(capsys, store, "--config", str(fast), "--format", "json")
        assert code == 0, err
        assert len(a.received) == len(b.received) == 1
        assert rows[0]["delivered_to"] == (f"webhook:127.0.0.1:{a.port},webhook:127.0.0.1:{b.port}")


def test_mail_through_graph_sendmail(capsys, store, tmp_path, monkeypatch, graph) -> None:
    monkeypatch.setenv("PROVLENS_GRAPH_TOKEN", "test-token")
    cfg = tmp_path / "mail.toml"
    cfg.write_text(f'graph_url = "{graph.root}"\n' + FAST, encoding="utf-8")
    code, rows, err = alert(
        capsys,
        store,
        "--config",
        str(cfg),
        "--mail-to",
        "ops@contoso.example",
        "--mail-to",
        "lead@contoso.example",
        "--mail-from",
        "provlens@contoso.example",
        "--format",
        "json",
    )
    assert code == 0, err
    assert len(graph.mail) == 1
    sent = graph.mail[0]
    assert sent["sender"] == "provlens@contoso.example"
    msg = sent["body"]["message"]
    assert [r["emailAddress"]["address"] for r in msg["toRecipients"]] == [
        "ops@contoso.example",
        "lead@contoso.example",
    ]
    assert msg["subject"] == "provlens alerts: 1 firing"
    assert msg["body"]["contentType"].lower() == "html"
    assert "&lt;b&gt;" in msg["body"]["content"] and "<b>" not in msg["body"]["content"]
    assert sent["body"]["saveToSentItems"] is False
    assert rows[0]["delivered_to"] == "mail:ops@contoso.example,mail:lead@contoso.example"
    assert graph.requests("/sendMail")[0].authorization == "Bearer test-token"


def test_mail_denied_names_mail_send_and_stays_pending(
    capsys, store, tmp_path, monkeypatch, graph
) -> None:
    monkeypatch.setenv("PROVLENS_GRAPH_TOKEN", "test-token")
    graph.denied["/sendMail"] = "Access is denied."
    cfg = tmp_path / "mail.toml"
    cfg.write_text(f'graph_url = "{graph.root}"\n' + FAST, encoding="utf-8")
    code, rows, err = alert(
        capsys,
        store,
        "--config",
        str(cfg),
        "--mail-to",
        "ops@contoso.example",
        "--mail-from",
        "provlens@contoso.example",
        "--format",
        "json",
    )
    assert code == 4
    assert "Mail.Send" in err and "HTTP 403" in err
    assert rows[0]["delivery_pending"] is True
    del graph.denied["/sendMail"]
    code, rows, err = alert(
        capsys,
        store,
        "--config",
        str(cfg),
        "--mail-to",
        "ops@contoso.example",
        "--mail-from",
        "provlens@contoso.example",
        "--format",
        "json",
        now=LATER,
    )
    assert (code, rows) == (0, []), err
    assert len(graph.mail) == 1
    assert stored(store)["delivery_pending"].tolist() == [False]


def test_config_errors_are_one_line_exit_2(capsys, store, tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[rules.quarantine_spike]\nfactor = 2\n", encoding="utf-8")
    code, _, err = alert(capsys, store, "--config", str(bad))
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "bad.toml: rules.quarantine_spike: unknown rule" in err
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[rules.stalled]\nintervals = "three"\n', encoding="utf-8")
    code, _, err = alert(capsys, store, "--config", str(wrong))
    assert code == 2 and "rules.stalled.intervals" in err
    url = tmp_path / "url.toml"
    url.write_text('dashboard_url = "provlens.example"\n', encoding="utf-8")
    code, _, err = alert(capsys, store, "--config", str(url))
    assert code == 2 and "dashboard_url" in err and "not an http(s) URL" in err
    code, _, err = alert(capsys, store, "--mail-to", "ops@contoso.example")
    assert code == 2 and "--mail-from" in err
    assert stored(store).empty


def test_no_secret_in_any_output(capsys, store, tmp_path, monkeypatch, graph) -> None:
    """Webhook URLs (path + sig) and the Graph token appear in no output, log or store file."""
    secrets = ["HOOKPATHSECRET", "SIGSECRET123", "FLOWSECRET", "test-token"]
    monkeypatch.setenv("PROVLENS_GRAPH_TOKEN", "test-token")
    log_file = tmp_path / "provlens.log"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'graph_url = "{graph.root}"\n' + FAST, encoding="utf-8")
    outputs: list[str] = []
    with WebhookReceiver() as hook:
        hook.fail(4, status=500)  # errors and retries get logged too
        monkeypatch.setenv("PROVLENS_ALERT_TEAMS", hook.url("/FLOWSECRET/run?sig=SIGSECRET123"))
        graph.denied["/sendMail"] = "denied"
        for now in (NOW, LATER):
            for fmt in ("json", "table"):
                code = main(
                    [
                        "-v",
                        "--log-file",
                        str(log_file),
                        "--store",
                        str(store.path),
                        "--now",
                        now,
                        "alert",
                        "--config",
                        str(cfg),
                        "--format",
                        fmt,
                        "--webhook",
                        hook.url("/HOOKPATHSECRET?sig=SIGSECRET123"),
                        "--mail-to",
                        "ops@contoso.example",
                        "--mail-from",
                        "p@contoso.example",
                    ]
                )
                out, err = capsys.readouterr()
                outputs += [out, err]
        assert code == 4  # the mail target still fails
        assert len(hook.received) >= 2  # the webhooks got through after the failures
    outputs.append(log_file.read_text(encoding="utf-8"))
    for path in store.path.rglob("*"):
        if path.is_file():
            outputs.append(path.read_bytes().decode("latin-1"))
    outputs += [store.read("alerts").to_json()]
    assert "webhook:127.0.0.1" in outputs[1] or "webhook:127.0.0.1" in "".join(outputs)
    for text in outputs:
        for secret in secrets:
            assert secret not in text


def test_a_run_without_targets_keeps_earlier_pending_rows(capsys, store, fast) -> None:
    with WebhookReceiver() as hook:
        hook.fail(2)
        assert alert(capsys, store, "--config", str(fast), "--webhook", hook.url())[0] == 4
        # no target this time: nothing is sent, the pending row stays pending
        code, rows, _ = alert(capsys, store, "--format", "json", now=LATER)
        assert (code, rows) == (0, [])
        assert stored(store)["delivery_pending"].tolist() == [True]
        code, text, _ = alert(capsys, store, "--dry-run", now=LATER)
        assert "would retry 1 undelivered alert(s) from earlier runs" in text
        code, text, _ = alert(capsys, store, "--config", str(fast), "--webhook", hook.url())
        assert code == 0
        assert "retried 1 undelivered alert(s) from earlier runs; 0 still pending" in text
        assert len(hook.received) == 1
        assert stored(store)["delivery_pending"].tolist() == [False]


def test_teams_bare_card_for_custom_flows(capsys, store, tmp_path, hook) -> None:
    cfg = tmp_path / "card.toml"
    cfg.write_text(FAST + 'teams_payload = "card"\n', encoding="utf-8")
    code, _, err = alert(capsys, store, "--config", str(cfg), "--teams", hook.url("/flow"))
    assert code == 0, err
    body = hook.received[0].body
    assert (body["type"], body["version"]) == ("AdaptiveCard", "1.4")


def test_plain_http_webhook_is_refused_without_showing_the_url(capsys, store) -> None:
    url = "http://hooks.example.com/services/PLAINSECRET?sig=PLAINSIG"
    code, _, err = alert(capsys, store, "--webhook", url)
    assert code == 2
    assert "hooks.example.com must use https" in err
    assert "PLAINSECRET" not in err and "PLAINSIG" not in err
    assert stored(store).empty


def test_retry_goes_only_to_the_target_that_missed_it(capsys, store, fast) -> None:
    with WebhookReceiver() as a, WebhookReceiver() as b:
        b.fail(2)
        args = ("--config", str(fast), "--webhook", a.url(), "--webhook", b.url())
        code, rows, err = alert(capsys, store, *args, "--format", "json")
        assert code == 4
        assert f"webhook:127.0.0.1:{b.port}" in err and f"{a.port}" not in err
        assert rows[0]["delivered_to"] == f"webhook:127.0.0.1:{a.port}"
        assert rows[0]["delivery_pending"] is True
        code, rows, err = alert(capsys, store, *args, "--format", "json", now=LATER)
        assert (code, rows) == (0, []), err
        assert (len(a.received), len(b.received)) == (1, 1)
        s = stored(store)
        assert s["delivered_to"].tolist() == [
            f"webhook:127.0.0.1:{a.port},webhook:127.0.0.1:{b.port}"
        ]
        assert s["delivery_pending"].tolist() == [False]
