"""Dashboard security: hostile names are inert on every page; it binds to localhost unless sign-in
is configured; outside the allow-list nobody sees data or a download, on any page.

AppTest (``streamlit.testing.v1``) drives each screen on the e2e fixture store, whose users
include ``<img src=x onerror=alert(1)>`` and ``**bold**``, plus a Markdown link/image payload
ingested here. Every element Streamlit renders as Markdown (markdown, caption, title, headers,
alerts, metric labels, tab/expander labels) is checked: a hostile name may only appear inside
inert elements (dataframes, st.text, code), never as Markdown or with HTML allowed.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

from provlens.cli import main
from tests.e2e import fixture_data as fx

config.set_option("client.showErrorDetails", "full")
APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
SCREENS = sorted(
    p.stem for p in (Path(APP).parent / "screens").glob("*.py") if not p.stem.startswith("_")
)
LINK = "[click me](javascript:alert(1))"
IMAGE = "![beacon](http://attacker.example/p.png)"
PAYLOADS = [fx.XSS_NAME, fx.BOLD_NAME, LINK, IMAGE]
MARKDOWN_ELEMENTS = (
    "markdown",
    "caption",
    "title",
    "header",
    "subheader",
    "info",
    "warning",
    "error",
    "success",
    "toast",
    "exception",
)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dash-sec")
    path = root / "store"
    fx.build_store(path)
    # two more users whose names are Markdown link / image syntax
    doc = orjson.loads(
        (
            Path(__file__).parent
            / "data"
            / "examples"
            / "graph-v1.0-list-provisioning-example2-failure.json"
        ).read_bytes()
    )
    recs = []
    for i, name in enumerate((LINK, IMAGE)):
        r = dict(doc["value"][0])
        r["id"] = f"md-{i}"
        r["activityDateTime"] = pd.Timestamp(fx.NOW).strftime("%Y-%m-%dT%H:%M:%SZ")
        r["sourceIdentity"] = {
            "id": f"obj-md{i}",
            "displayName": name,
            "identityType": "User",
            "details": {"UserPrincipalName": f"md{i}@contoso.com"},
        }
        recs.append(r)
    f = root / "md.json"
    f.write_bytes(orjson.dumps({"value": recs}))
    assert main(["--store", str(path), "ingest", "file", str(f)]) == 0
    return path


@pytest.fixture
def env(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROVLENS_STORE", str(store_path))
    monkeypatch.setenv("PROVLENS_NOW", fx.NOW)
    return store_path


def _run(page: str | None, secrets: dict | None = None, user: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    if secrets is not None:
        at.secrets = secrets
    if user is not None:
        at.user = user
    at.run()
    if page:
        at.switch_page(f"screens/{page}.py").run()
    assert not at.exception, [(e.value, e.stack_trace) for e in at.exception]
    return at


def _markdown_texts(at: AppTest) -> list[tuple[str, str, bool]]:
    """(element type, markdown body, allows HTML) for everything rendered as Markdown."""
    out: list[tuple[str, str, bool]] = []
    for kind in MARKDOWN_ELEMENTS:
        for el in at.get(kind):
            proto: Any = getattr(el, "proto", None)
            body = getattr(proto, "body", None) or getattr(el, "value", "")
            out.append((kind, str(body), bool(getattr(proto, "allow_html", False))))
    for m in at.metric:
        out.append(("metric label", str(m.label), False))
    for kind in ("tab", "expander"):
        for el in at.get(kind):
            out.append((kind, str(getattr(el, "label", "")), False))
    return out


def _assert_inert(at: AppTest, where: str) -> None:
    for kind, body, allow_html in _markdown_texts(at):
        for payload in PAYLOADS:
            assert payload not in body, f"{where}: {payload!r} rendered as Markdown in {kind}"
        if allow_html:
            assert "<img" not in body and "onerror" not in body, f"{where}: HTML in {kind}"


@pytest.mark.parametrize("page", SCREENS)
def test_every_page_renders_hostile_names_inert(page: str, env: Path) -> None:
    at = _run(page)
    _assert_inert(at, page)
    if page == "users":
        for query in ("xss@contoso", "md0@contoso", "md1@contoso"):
            at.text_input(key="users_query").input(query).run()
            assert not at.exception
            _assert_inert(at, f"users ({query})")
        shown = " ".join(t.value for t in at.text) + " ".join(
            str(v) for d in at.dataframe for v in d.value.astype(str).to_numpy().ravel()
        )
        assert IMAGE in shown  # the name is shown, as text


def test_screen_list_is_complete() -> None:
    assert len(SCREENS) >= 8, SCREENS


# ---- sign-in and allow-list ---------------------------------------------------------------------

AUTH = {
    "auth": {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "x" * 32,
        "client_id": "cid",
        "client_secret": "csecret",
        "server_metadata_url": "https://login.microsoftonline.com/t/v2.0/.well-known/openid-configuration",
    },
    "provlens": {"allowed_users": ["alice@contoso.com"], "allowed_groups": ["gid-wiki-admins"]},
}


@pytest.mark.parametrize("page", SCREENS)
def test_outside_the_allow_list_sees_nothing_on_any_page(page: str, env: Path) -> None:
    user = {"is_logged_in": True, "email": "mallory@contoso.com", "groups": ["gid-other"]}
    at = AppTest.from_file(APP, default_timeout=90)
    at.secrets = AUTH
    at.user = user
    at.run()
    with contextlib.suppress(Exception):  # the gate may leave the page unregistered: fine
        at.switch_page(f"screens/{page}.py").run()
    assert not at.dataframe and not at.metric and not at.get("plotly_chart")
    assert not at.get("download_button")
    texts = " ".join(t[1] for t in _markdown_texts(at)) + " ".join(t.value for t in at.text)
    for name in ("katherine", "xss@contoso", fx.XSS_NAME):
        assert name not in texts


# ---- binding -------------------------------------------------------------------------------------


@pytest.fixture
def no_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from an empty directory with an empty HOME: no secrets.toml anywhere."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    return cwd


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record the streamlit command instead of starting a server."""
    import dashboard.launch as launch

    calls: list[list[str]] = []

    class FakeServer:
        def __init__(self, cmd: list[str], **kwargs: Any) -> None:
            calls.append(list(cmd))

        def wait(self) -> int:
            return 0

        def send_signal(self, signum: int) -> None:
            pass

    monkeypatch.setattr(launch.subprocess, "Popen", FakeServer)
    monkeypatch.setattr(launch.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 0)
    return calls


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.0.2.10", "my-host.example", "[::]"])
def test_public_address_without_sign_in_is_refused(
    address: str,
    no_secrets: Path,
    launched: list[list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["--store", str(tmp_path / "s"), "dashboard", "--address", address])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "sign-in" in err
    assert launched == []


def test_default_binds_to_localhost(
    no_secrets: Path, launched: list[list[str]], tmp_path: Path
) -> None:
    assert main(["--store", str(tmp_path / "s"), "dashboard"]) == 0
    assert "--server.address=localhost" in launched[0]
    for loopback in ("127.0.0.1", "::1"):
        assert main(["--store", str(tmp_path / "s"), "dashboard", "--address", loopback]) == 0
    assert [c for c in launched[-1] if c.startswith("--server.address=")] == [
        "--server.address=::1"
    ]


def _write_secrets(cwd: Path, text: str) -> None:
    (cwd / ".streamlit").mkdir(exist_ok=True)
    (cwd / ".streamlit" / "secrets.toml").write_text(text)


def test_auth_without_an_allow_list_is_not_sign_in(
    no_secrets: Path, launched: list[list[str]], tmp_path: Path
) -> None:
    _write_secrets(no_secrets, '[auth]\nclient_id = "cid"\n')
    assert main(["--store", str(tmp_path / "s"), "dashboard", "--address", "0.0.0.0"]) == 2
    assert launched == []


def test_public_address_with_sign_in_and_allow_list_starts(
    no_secrets: Path, launched: list[list[str]], tmp_path: Path
) -> None:
    _write_secrets(
        no_secrets,
        '[auth]\nclient_id = "cid"\n[provlens]\nallowed_users = ["alice@contoso.com"]\n',
    )
    assert main(["--store", str(tmp_path / "s"), "dashboard", "--address", "0.0.0.0"]) == 0
    assert "--server.address=0.0.0.0" in launched[0]


def test_committed_streamlit_config_does_not_open_the_server() -> None:
    root = Path(APP).parent.parent
    cfg = root / ".streamlit" / "config.toml"
    if not cfg.exists():
        pytest.skip("no .streamlit/config.toml committed")
    import tomllib

    server = tomllib.loads(cfg.read_text()).get("server", {})
    assert server.get("address", "localhost") in ("localhost", "127.0.0.1")
    assert server.get("enableXsrfProtection", True) is True
    assert not (root / ".streamlit" / "secrets.toml").exists() or shutil.which("git") is None
