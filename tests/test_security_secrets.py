"""Secrets never appear in logs, errors, exports or the store.

A recognisable token is planted in ``PROVLENS_GRAPH_TOKEN`` (and ``PROVLENS_GRAPH_TOKEN_FILE``) and
``PROVLENS_SCIM_TOKEN``; `ingest graph`, `ingest scim` and `doctor` run with ``-v`` and
``--log-file``, succeeding and failing (wrong token, permission denied, outage, bad URL). Then
everything written is searched: stdout, stderr, the log file (at DEBUG), every file under the store
directory (raw bytes), every cell of every table, and every export (`export TABLE` csv/json,
`report summary` json).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest import graph, schema
from ingest.store import Store
from provlens.cli import main
from tests.support.graph_server import DEFAULT_ACCESS, Fault, GraphFixture, sync_job
from tests.support.scim_server import running_scim_server, seed_walkthrough

GRAPH_SECRET = "eyJ0eXAiOiJKV1QiLCJhbGciOi.GRAPH-SECRET-5b0f.c2lnbmF0dXJl"
SCIM_SECRET = "scim-SECRET-9d1e7a44c0ffee"
SP = "6f1c1e5a-1111-4b7e-9d2a-0c5a1b2c3d4e"
NOW = "2026-11-08T00:00:00Z"


def _needles(secret: str) -> list[bytes]:
    """The secret as bytes, in the encodings a leak could take."""
    raw = secret.encode()
    return [
        raw,
        raw[8:-8],  # a truncated copy
        base64.b64encode(raw),
        secret.encode("utf-16-le"),
    ]


def assert_nowhere(secret: str, texts: dict[str, str], paths: list[Path]) -> int:
    """Assert ``secret`` is in none of ``texts`` nor any file under ``paths``; return bytes read."""
    total = 0
    for name, text in texts.items():
        for needle in _needles(secret):
            assert needle.decode("utf-8", "ignore") not in text, f"secret in {name}"
        total += len(text)
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for f in files:
            data = f.read_bytes()
            total += len(data)
            for needle in _needles(secret):
                assert needle not in data, f"secret in {f}"
    return total


def assert_not_in_store(secret: str, store_dir: Path) -> None:
    """Every table cell (parquet is compressed, so raw bytes alone prove little)."""
    if not (store_dir / "manifest.json").exists():
        return
    store = Store(store_dir)
    for table in schema.TABLES:
        df = store.read(table)
        for col in df.columns:
            values = df[col].dropna().astype(str)
            assert not values.str.contains(secret[8:-8], regex=False).any(), (table, col)


def exports(store_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """Every table as CSV and JSON, and the summary report, as text."""
    out: dict[str, str] = {}
    if not (store_dir / "manifest.json").exists():
        return out
    for table in schema.TABLES:
        for fmt in ("csv", "json"):
            path = tmp_path / f"export-{table}.{fmt}"
            assert (
                main(
                    [
                        "--store",
                        str(store_dir),
                        "export",
                        table,
                        "--format",
                        fmt,
                        "--out",
                        str(path),
                    ]
                )
                == 0
            )
            out[path.name] = path.read_text(encoding="utf-8")
    assert (
        main(["--store", str(store_dir), "--now", NOW, "report", "summary", "--format", "json"])
        == 0
    )
    out["summary"] = capsys.readouterr().out
    return out


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in (
        "PROVLENS_GRAPH_TOKEN",
        "PROVLENS_GRAPH_TOKEN_FILE",
        "PROVLENS_SCIM_TOKEN",
        "PROVLENS_SCIM_URL",
        "PROVLENS_GRAPH_URL",
        "PROVLENS_STORE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PROVLENS_GRAPH_RATE", "1000/1")
    fast = graph.PullConfig(
        rate=(1000, 1.0), backoff_base_s=0.01, backoff_max_s=0.05, give_up_after_s=0.5
    )
    monkeypatch.setattr(graph.PullConfig, "from_settings", classmethod(lambda cls: fast))
    yield


def _graph(token: str) -> GraphFixture:
    g = GraphFixture(token=token).start()
    g.seed(30, start="2026-11-05T00:00:00Z", end=NOW)
    g.jobs[SP] = [sync_job("scim.aaaa.bbbb")]
    g.add_user("u1", "u1@contoso.example")
    g.add_group("g1", "wiki users", ["u1"])
    g.assign(SP, "g1", "11111111-2222-3333-4444-555555555555")
    g.assign(SP, "u1", DEFAULT_ACCESS)
    return g


GRAPH_CASES = {
    "ok": (GRAPH_SECRET, [], 0),
    "wrong-token": ("the-server-expects-another", [], 4),
    "forbidden": (GRAPH_SECRET, [Fault("status", status=403, times=100)], 4),
    "outage": (GRAPH_SECRET, [Fault("status", status=503, times=10_000)], 4),
    "expired-then-ok": (GRAPH_SECRET, [Fault("status", status=401, skip=2)], 0),
}


@pytest.mark.parametrize("case", sorted(GRAPH_CASES))
@pytest.mark.parametrize("via_file", [False, True], ids=["env", "file"])
def test_graph_token_never_written(
    case: str,
    via_file: bool,
    clean_env: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server_token, faults, expected = GRAPH_CASES[case]
    if via_file:
        secret_file = tmp_path / "secrets" / "graph-token"
        secret_file.parent.mkdir()
        secret_file.write_text(GRAPH_SECRET + "\n")
        monkeypatch.setenv("PROVLENS_GRAPH_TOKEN_FILE", str(secret_file))
    else:
        monkeypatch.setenv("PROVLENS_GRAPH_TOKEN", GRAPH_SECRET)
    g = _graph(server_token)
    try:
        g.script(*faults)
        store_dir, log_file = tmp_path / "store", tmp_path / "provlens.log"
        argv = ["-v", "--log-file", str(log_file), "--store", str(store_dir), "--now", NOW]
        code = main([*argv, "ingest", "graph", "--graph-url", g.root, "--days", "3"])
        out, err = capsys.readouterr()
        assert code == expected, err
        # the token did go to the server (so the test can see a leak if there was one)
        assert any(r.authorization == f"Bearer {GRAPH_SECRET}" for r in g.log)
        main([*argv, "doctor", "--graph-url", g.root, "--service-principal-id", SP])
        out2, err2 = capsys.readouterr()
        texts = {"stdout": out + out2, "stderr": err + err2, **exports(store_dir, tmp_path, capsys)}
        assert log_file.stat().st_size > 0
        assert_nowhere(GRAPH_SECRET, texts, [log_file, store_dir])
        assert_not_in_store(GRAPH_SECRET, store_dir)
    finally:
        g.stop()


@pytest.mark.parametrize("case", ["ok", "wrong-token"])
def test_scim_token_never_written(
    case: str,
    clean_env: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROVLENS_SCIM_TOKEN", SCIM_SECRET)
    server_token = SCIM_SECRET if case != "wrong-token" else "another-scim-token"
    with running_scim_server(token=server_token) as server:
        seed_walkthrough(server)
        url = server.base_url
        store_dir, log_file = tmp_path / "store", tmp_path / "provlens.log"
        argv = ["-v", "--log-file", str(log_file), "--store", str(store_dir), "--now", NOW]
        code = main([*argv, "ingest", "scim", "--scim-url", url])
        out, err = capsys.readouterr()
        assert (code == 0) == (case == "ok"), err
        if case != "ok":
            assert code == 4, err
        texts = {"stdout": out, "stderr": err, **exports(store_dir, tmp_path, capsys)}
        assert_nowhere(SCIM_SECRET, texts, [log_file, store_dir])
        assert_not_in_store(SCIM_SECRET, store_dir)


def test_the_search_would_find_a_leak(tmp_path: Path) -> None:
    """The checks above can fail: a planted copy in any encoding is found."""
    for i, needle in enumerate(_needles(GRAPH_SECRET)):
        f = tmp_path / f"leak-{i}.bin"
        f.write_bytes(b"prefix " + needle + b" suffix")
        with pytest.raises(AssertionError, match="secret in"):
            assert_nowhere(GRAPH_SECRET, {}, [f])
    with pytest.raises(AssertionError, match="secret in stderr"):
        assert_nowhere(GRAPH_SECRET, {"stderr": f"Bearer {GRAPH_SECRET}"}, [])
