"""Tests keep the docs honest: every setting and CLI command is documented."""

from __future__ import annotations

from pathlib import Path

from sharedcare.cli import app
from sharedcare.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    missing = [name for name in Settings.model_fields if f"`SHAREDCARE_{name.upper()}`" not in text]
    assert missing == []


def test_every_cli_command_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    names = [c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands]
    names += [f"{g.name} {c.name}" for g in app.registered_groups if g.typer_instance
              for c in g.typer_instance.registered_commands]
    missing = [n for n in names if f"sharedcare {n}" not in text]
    assert names
    assert missing == []
