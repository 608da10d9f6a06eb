"""Tracing is off and imports nothing unless the OTEL_* variables ask for it; then the SDK is set up from them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Runs a span in a fresh interpreter; prints whether it was recorded and whether OpenTelemetry got imported.
PROBE = r"""
import sys
from goalrt import tracing
with tracing.span("goalrt.probe", {"goalrt.goal_id": 7}) as span:
    pass
print("recorded" if span is not None else "off", "imported" if "opentelemetry" in sys.modules else "not-imported")
"""


def _probe(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**clean, **env},
        timeout=60,
        check=True,
    )


@pytest.mark.parametrize(
    "env", [{}, {"OTEL_TRACES_EXPORTER": "none"}, {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}]
)
def test_off_without_an_exporter_and_nothing_imported(env: dict[str, str]) -> None:
    done = _probe(**env)
    assert done.stdout.splitlines()[0] == "off not-imported"


def test_the_console_exporter_from_the_variables() -> None:
    done = _probe(OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="probe-svc")
    assert done.stdout.splitlines()[0] == "recorded imported"
    # Printed at exit by the batch processor, with the resource the variables named.
    assert '"name": "goalrt.probe"' in done.stdout and "probe-svc" in done.stdout


def test_an_exporter_not_installed_falls_back_to_the_console() -> None:
    done = _probe(OTEL_TRACES_EXPORTER="nosuch")
    assert "OTEL_TRACES_EXPORTER=nosuch: no such exporter installed; printing spans instead" in done.stderr
    assert '"name": "goalrt.probe"' in done.stdout
