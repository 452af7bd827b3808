"""The dashboard asks registered reports by name: from ``reports`` it imports nothing else.

Allowed (docs/INTERNALS.md "Dashboard and reports"): ``reports`` for ``Filters``, ``REPORTS`` and
``ReportResult`` (the answer's type), ``reports.service`` (how every face asks a report), and
``reports.export`` to write downloads (CSV/JSON/XLSX writers, the support pack zip).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard"
ALLOWED_MODULES = {"reports.service", "reports.export"}
ALLOWED_NAMES = {"Filters", "REPORTS", "ReportResult", "service", "export"}


def offending_imports(source: str) -> list[str]:
    """Return the imports from reports/ in ``source`` that the rule does not allow."""
    bad: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "reports" or (
                    alias.name.startswith("reports.") and alias.name not in ALLOWED_MODULES
                ):
                    bad.append(f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            module = node.module
            if module == "reports":
                bad += [
                    f"from reports import {a.name}"
                    for a in node.names
                    if a.name not in ALLOWED_NAMES
                ]
            elif module.startswith("reports.") and module not in ALLOWED_MODULES:
                bad += [f"from {module} import {a.name}" for a in node.names]
    return bad


def test_the_rule_catches_helpers_and_allows_the_service() -> None:
    assert offending_imports("from reports.users import user_key") == [
        "from reports.users import user_key"
    ]
    assert offending_imports("from reports import overview, service") == [
        "from reports import overview"
    ]
    assert offending_imports("import reports.coverage") == ["import reports.coverage"]
    assert offending_imports("def f():\n    from reports.model import model_of\n") == [
        "from reports.model import model_of"
    ]
    assert offending_imports("from reports import REPORTS, Filters, export, service") == []
    assert offending_imports("import reports.service\nfrom reports.export import csv_bytes") == []


@pytest.mark.parametrize(
    "path", sorted(DASHBOARD.rglob("*.py")), ids=lambda p: str(p.relative_to(DASHBOARD))
)
def test_dashboard_imports_only_the_report_service_from_reports(path: Path) -> None:
    assert offending_imports(path.read_text(encoding="utf-8")) == []
