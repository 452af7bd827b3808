"""Dependency audit: the lock file is fully pinned and CI audits it with pip-audit.

``PROVLENS_PIP_AUDIT=1`` also runs ``pip-audit -r requirements.lock`` here (needs network access
to PyPI's advisory data, so it is off by default; ``.ci/run`` runs it on every build).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"


def _requirements() -> list[str]:
    return [
        line.strip()
        for line in LOCK.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_lock_file_pins_every_package() -> None:
    reqs = _requirements()
    assert len(reqs) > 20
    unpinned = [r for r in reqs if not re.match(r"^[A-Za-z0-9_.\-\[\],]+==[^=\s]+", r)]
    assert unpinned == []


def test_ci_runs_pip_audit_on_the_lock_file() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"pip-audit\s+-r\s+requirements\.lock", ci), ci


@pytest.mark.skipif(os.environ.get("PROVLENS_PIP_AUDIT") != "1", reason="needs network")
def test_pip_audit_finds_no_known_vulnerability() -> None:
    exe = shutil.which("pip-audit") or str(Path(sys.executable).with_name("pip-audit"))
    proc = subprocess.run(
        [exe, "-r", str(LOCK), "--progress-spinner", "off"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No known vulnerabilities found" in proc.stdout + proc.stderr
