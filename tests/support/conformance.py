"""Finding the conformance data in ../shared/conformance, for parametrised tests.

`conformance_files("synthea-r4", "*.json")` gives pytest params, one per file, with the file name as
id. Where the folder is absent it gives one param that skips with the reason, or, under CI, fails:
CI must never pass by skipping conformance.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SHAREDCARE_SHARED_DIR", ROOT.parent / "shared"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(path: Path) -> str:
    return f"conformance data not found at {path}"


def conformance_path(*parts: str) -> Path:
    """Path to a conformance file or folder; inside a test, skip (or fail under CI) when it is absent."""
    path = SHARED.joinpath("conformance", *parts)
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{_missing(path)}; CI must run with ../shared beside the checkout")
        pytest.skip(_missing(path))
    return path


def conformance_files(folder: str, pattern: str = "*") -> list[Any]:
    """Pytest params for every matching file under conformance/<folder> (recursively)."""
    base = SHARED.joinpath("conformance", folder)
    files = sorted(base.rglob(pattern)) if base.exists() else []
    if files:
        return [pytest.param(f, id=str(f.relative_to(base))) for f in files]
    if IN_CI:
        # A collection error fails the run: under CI, missing conformance data is never a skip.
        raise RuntimeError(f"{_missing(base)}; CI must run with ../shared beside the checkout")
    return [pytest.param(base, id="missing", marks=pytest.mark.skip(reason=_missing(base)))]
