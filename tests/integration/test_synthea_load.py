"""Load every Synthea bundle in the conformance data as a transaction, then read every resource back
and compare it with what was sent (references resolved, server meta aside), on both backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sharedcare.fhir import jsonio
from tests.support.conformance import conformance_path
from tests.support.fhir_data import canonical

pytestmark = pytest.mark.slow




def resolve(node: Any, mapping: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: resolve(v, mapping) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, mapping) for v in node]
    return mapping.get(node, node) if isinstance(node, str) else node


def test_every_synthea_bundle_loads_and_reads_back_unchanged(client: TestClient) -> None:
    folder = conformance_path("synthea-r4")
    files = sorted(folder.glob("*.json"), key=lambda p: (not p.name.startswith(("hospital", "practitioner")), p.name))
    assert len(files) >= 20
    mapping: dict[str, str] = {}
    checked = 0
    for path in files:
        bundle = jsonio.loads(Path(path).read_bytes())
        r = client.post("/fhir", content=path.read_bytes(), headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 200, (path.name, r.text[:500])
        out = r.json()["entry"]
        assert len(out) == len(bundle["entry"])
        for sent, got in zip(bundle["entry"], out, strict=True):
            assert got["response"]["status"] == "201 Created"
            mapping[sent["fullUrl"]] = got["response"]["location"].split("/_history")[0]
        for sent, got in zip(bundle["entry"], out, strict=True):
            ref = got["response"]["location"].split("/_history")[0]
            stored = jsonio.loads(client.get(f"/fhir/{ref}").content)
            expected = resolve({k: v for k, v in sent["resource"].items() if k not in ("id", "meta")}, mapping)
            assert canonical({k: v for k, v in stored.items() if k not in ("id", "meta")}) == canonical(expected), ref
            checked += 1
    assert checked > 1000
