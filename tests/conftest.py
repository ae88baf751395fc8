"""Fixtures every test can use.

Conformance data written by others lives in ../shared/conformance (beside the checkout). Where it is
absent (someone's own clone) tests that need it skip with a reason; under CI (CI=true) its absence is a
failure, never a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHAREDCARE_SHARED_DIR", ROOT.parent / "shared"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def conformance_path(*parts: str) -> Path:
    """Path to a conformance file or folder; skip (or fail under CI) when it is not there."""
    path = SHARED.joinpath("conformance", *parts)
    if not path.exists():
        message = f"conformance data not found at {path}"
        if IN_CI:
            pytest.fail(f"{message}; CI must run with ../shared beside the checkout")
        pytest.skip(message)
    return path


@pytest.fixture
def conformance() -> Path:
    return conformance_path()
