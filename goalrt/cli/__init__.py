"""The ``goalrt`` command line."""

from __future__ import annotations

from goalrt.cli.main import main

__all__ = ["main"]
