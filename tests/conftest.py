"""Fixtures every test can use. Conformance data helpers live in tests/support/conformance.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.conformance import conformance_path


@pytest.fixture
def conformance() -> Path:
    """The root of ../shared/conformance (skips, or fails under CI, when absent)."""
    return conformance_path()
