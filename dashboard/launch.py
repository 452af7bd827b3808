"""Start the dashboard: `streamlit run dashboard/app.py`, headless, on the chosen store.

Used by `provlens dashboard` and `provlens demo`. The server binds to localhost unless sign-in
is configured (an ``[auth]`` section plus an allow-list in Streamlit's secrets.toml); a
non-loopback address without sign-in is refused, since the dashboard would otherwise show
provisioning data to anyone who can reach the port.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ingest import settings
from ingest.errors import UsageError

log = logging.getLogger(__name__)

APP = Path(__file__).resolve().parent / "app.py"
ROOT = APP.parent.parent
NOW_ENV = "PROVLENS_NOW"  # fixed reference time for the app (reproducible runs, `--now`)


def secrets_files(cwd: Path | None = None) -> list[Path]:
    """Return the secrets.toml files Streamlit reads, in its order (global, then project)."""
    base = cwd or Path.cwd()
    return [Path.home() / ".streamlit" / "secrets.toml", base / ".streamlit" / "secrets.toml"]


def load_secrets(files: list[Path]) -> dict[str, Any]:
    """Return the merged top-level sections of the existing ``files`` (later files win)."""
    merged: dict[str, Any] = {}
    for path in files:
        if not path.is_file():
            continue
        try:
            merged.update(tomllib.loads(path.read_text(encoding="utf-8")))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(
                f"{path}: cannot read Streamlit secrets ({exc}); fix the file"
            ) from None
    return merged


def sign_in_configured(secrets: Mapping[str, Any]) -> bool:
    """Return True when secrets turn on sign-in and name at least one allowed user or group."""
    auth = secrets.get("auth")
    allow = secrets.get("provlens") or {}
    if not isinstance(auth, Mapping) or not isinstance(allow, Mapping):
        return False
    return bool(allow.get("allowed_users") or allow.get("allowed_groups"))


def is_loopback(address: str) -> bool:
    """Return True for `localhost` and loopback IPs (127.0.0.0/8, ::1)."""
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def command(port: int, address: str) -> list[str]:
    """Return the `streamlit run` command line for the dashboard (through dashboard.serve,
    which also warms the landing page's answers once the server is up)."""
    return [
        sys.executable,
        "-m",
        "dashboard.serve",
        "run",
        str(APP),
        "--server.headless=true",
        f"--server.port={port}",
        f"--server.address={address}",
        "--browser.gatherUsageStats=false",
        "--server.runOnSave=false",
        "--client.toolbarMode=minimal",
        "--client.showErrorDetails=type",
        "--runner.magicEnabled=false",
        # Colours per theme, no `base`: the viewer's light or dark preference decides.
        "--theme.light.primaryColor=#2563eb",
        "--theme.dark.primaryColor=#60a5fa",
    ]


def environment(store_path: Path, now: pd.Timestamp | None = None) -> dict[str, str]:
    """Return the server's environment: the store path, and the project root on PYTHONPATH."""
    env = dict(os.environ)
    env[settings.STORE] = str(store_path)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    if now is not None:
        env[NOW_ENV] = now.isoformat()
    return env


def validate(port: int, address: str) -> None:
    """Raise UsageError for a bad port, or a non-loopback address without sign-in configured."""
    if not 0 < port < 65536:
        raise UsageError(f"--port {port}: not a TCP port (1-65535)")
    if not is_loopback(address) and not sign_in_configured(load_secrets(secrets_files())):
        raise UsageError(
            f"--address {address} would show provisioning data to anyone who can reach it: "
            "configure sign-in first ([auth] and [provlens] allowed_users/allowed_groups in "
            ".streamlit/secrets.toml, see .streamlit/secrets.example.toml) or use localhost"
        )


def run(
    store_path: Path,
    port: int = 8501,
    address: str = "localhost",
    demo: bool = False,
    now: pd.Timestamp | None = None,
) -> int:
    """Run the dashboard in the foreground until interrupted; return streamlit's exit code."""
    validate(port, address)
    log.info(
        "dashboard on http://%s:%d for store %s%s",
        address,
        port,
        store_path,
        " (demo data)" if demo else "",
    )
    proc = subprocess.Popen(command(port, address), env=environment(store_path, now))

    # Stopping `provlens dashboard` (SIGTERM from a service manager) stops the server too.
    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the server as well (same process group)
        return proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
