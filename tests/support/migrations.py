"""Loading one migration's module, to run its data step on rows written the old way."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from sharedcare.storage.database import MIGRATIONS


def load_migration(file_stem: str) -> ModuleType:
    """The module of `storage/migrations/versions/<file_stem>.py`."""
    spec = importlib.util.spec_from_file_location(f"migration_{file_stem}", MIGRATIONS / "versions" / f"{file_stem}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
