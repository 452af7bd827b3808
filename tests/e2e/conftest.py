"""Real-browser fixtures (Streamlit's own e2e pattern): a headless server and Chromium."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard import launch
from tests.e2e import fixture_data as fx
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dashboard" / "app.py"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise TimeoutError(f"{url}/_stcore/health did not answer within {timeout} s")


@pytest.fixture(scope="session")
def e2e_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a store holding the fixture tenant."""
    path = tmp_path_factory.mktemp("e2e") / "store"
    fx.build_store(path)
    return path


@contextlib.contextmanager
def streamlit_server(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run `streamlit run --server.headless true` on ``store`` on a free port; yield its URL."""
    port = _free_port()
    env = dict(os.environ)
    env.update(
        PROVLENS_STORE=str(store),
        PROVLENS_NOW=fx.NOW,
        PYTHONPATH=str(ROOT),
        HOME=str(tmp_path_factory.mktemp("home")),  # no ~/.streamlit secrets leak in
    )
    log = (tmp_path_factory.mktemp("log") / "streamlit.log").open("wb")
    proc = subprocess.Popen(
        # The command line `provlens dashboard` uses, with file watching off and full errors.
        [
            *launch.command(port, "127.0.0.1"),
            "--server.fileWatcherType=none",
            "--client.showErrorDetails=full",
        ],
        cwd=tmp_path_factory.mktemp("cwd"),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def server(e2e_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start `streamlit run --server.headless true` on a free port; yield its base URL."""
    with streamlit_server(e2e_store, tmp_path_factory) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Yield a headless Chromium (Debian's) driven by Playwright.

    Module-scoped: Playwright's sync API keeps an event loop running in this thread until it
    stops, and tests collected after the e2e ones call ``asyncio.run`` (the Graph client),
    which refuses to start inside a running loop.
    """
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Return the (git-ignored) folder screenshots are saved to."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
