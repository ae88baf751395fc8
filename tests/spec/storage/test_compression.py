"""Stored resources are zstd-compressed with a shipped dictionary (storage/codec.py), and every read
returns the exact JSON bytes that were written. Rows written before compression (plain JSON) are
still served, and bytes that cannot be decoded are an error, never an empty or partial record."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import orjson
import pytest
import zstandard
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from sharedcare.app import Services
from sharedcare.errors import StorageCorrupt
from sharedcare.storage import codec
from sharedcare.storage.tables import resource, resource_history

GOLDEN = Path(__file__).parents[2] / "data" / "codec"
JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def fresh_dictionaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A copy of the dictionaries folder the codec reads instead of the installed one."""
    folder = tmp_path / "dictionaries"
    shutil.copytree(codec.FOLDER, folder)
    monkeypatch.setattr(codec, "FOLDER", folder)
    codec.dictionary.cache_clear()
    monkeypatch.setattr(codec, "_local", __import__("threading").local())
    yield folder
    codec.dictionary.cache_clear()


# -- the codec -----------------------------------------------------------------------------------------

def test_a_frame_written_by_an_earlier_version_still_decodes_to_the_same_bytes() -> None:
    """Golden: a frame committed when dictionary r4-1 shipped. If the dictionary or the decoder ever
    changed incompatibly, every record stored with it would become unreadable; this fails first."""
    frame = (GOLDEN / "observation.r4-1.zst").read_bytes()
    assert frame[:4] == codec.ZSTD_MAGIC
    assert zstandard.get_frame_parameters(frame).dict_id == 0x53430001
    assert codec.decode(frame) == (GOLDEN / "observation.json").read_bytes()


def test_encoding_keeps_every_byte_and_shrinks_the_record() -> None:
    doc = (GOLDEN / "observation.json").read_bytes()  # decimals (72.50) and non-ASCII text included
    stored = codec.encode(doc)
    assert stored[:4] == codec.ZSTD_MAGIC
    assert len(stored) < len(doc) / 2
    assert codec.decode(stored) == doc
    assert zstandard.get_frame_parameters(stored).dict_id == codec.CURRENT


def test_plain_json_written_before_compression_passes_through_unchanged() -> None:
    doc = b'{"resourceType":"Patient","id":"old","birthDate":"1950-02-03"}'
    assert codec.decode(doc) == doc
    assert codec.decode(memoryview(doc)) == doc
    assert codec.decode_opt(None) is None


@pytest.mark.parametrize("damage", ["truncated", "flipped", "garbage", "empty"])
def test_damaged_bytes_are_an_error_not_a_record(damage: str) -> None:
    stored = codec.encode((GOLDEN / "observation.json").read_bytes())
    bad = {"truncated": stored[:-6], "flipped": stored[:40] + bytes([stored[40] ^ 0xFF]) + stored[41:],
           "garbage": b"\x00\x01not json", "empty": b""}[damage]
    with pytest.raises(StorageCorrupt) as caught:
        codec.decode(bad)
    assert caught.value.status == 500
    assert "Heart" not in str(caught.value)  # never quotes content


def test_a_frame_naming_a_dictionary_this_version_lacks_is_an_error() -> None:
    other = zstandard.train_dictionary(4096, [orjson.dumps({"resourceType": "Patient", "id": str(i), "n": i * 7})
                                              for i in range(400)], dict_id=0x5343FFFF)
    frame = zstandard.ZstdCompressor(dict_data=other).compress(b'{"resourceType":"Patient","id":"1","n":7}')
    with pytest.raises(StorageCorrupt, match="0x5343ffff"):
        codec.decode(frame)


def test_an_altered_dictionary_stops_start_up(fresh_dictionaries: Path) -> None:
    name, digest = codec.DICTIONARIES[codec.CURRENT]
    path = fresh_dictionaries / name
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0x01
    path.write_bytes(bytes(raw))
    assert hashlib.sha256(raw).hexdigest() != digest
    with pytest.raises(StorageCorrupt, match="checksum"):
        codec.warm()


def test_a_missing_dictionary_stops_start_up(fresh_dictionaries: Path) -> None:
    (fresh_dictionaries / codec.DICTIONARIES[codec.CURRENT][0]).unlink()
    with pytest.raises(StorageCorrupt, match="missing"):
        codec.warm()


def test_the_dictionary_compresses_patients_it_never_saw(conformance: Path) -> None:
    """r4-1 was trained on the first 10 Synthea bundles; the others measure what it does for new
    data (plain zstd manages about 2.2x on them)."""
    from sharedcare.storage.dictionaries.train import FILES

    raw = packed = 0
    for path in sorted((conformance / "synthea-r4").glob("*.json"))[FILES:]:
        for entry in orjson.loads(path.read_bytes()).get("entry", []):
            doc = orjson.dumps(entry["resource"])
            raw += len(doc)
            packed += len(codec.encode(doc))
    assert raw > 1_000_000
    assert raw / packed > 4


# -- the store -----------------------------------------------------------------------------------------

def _stored(store: Services, table: object, res_id: str) -> list[bytes]:
    t = resource if table == "resource" else resource_history
    with store.engine.connect() as conn:
        return [bytes(r.data) for r in conn.execute(select(t.c.data).where(t.c.res_id == res_id))]


def test_every_read_returns_the_bytes_written_while_the_tables_hold_frames(client: TestClient,
                                                                             store: Services) -> None:
    body = ('{"resourceType":"Observation","status":"final","code":{"text":"weight"},'
            '"valueQuantity":{"value":70.50,"unit":"kg"},"note":[{"text":"Zoë\'s weight"}]}').encode()
    made = client.post("/fhir/Observation", content=body, headers=JSON)
    assert made.status_code == 201
    oid = made.json()["id"]
    first = made.content
    assert b"70.50" in first
    for table in ("resource", "resource_history"):
        assert all(d[:4] == codec.ZSTD_MAGIC and b"weight" not in d for d in _stored(store, table, oid))
    assert client.get(f"/fhir/Observation/{oid}").content == first
    assert client.get(f"/fhir/Observation/{oid}/_history/1").content == first
    changed = first.replace(b'"status":"final"', b'"status":"amended"')
    second = client.put(f"/fhir/Observation/{oid}", content=changed, headers=JSON).content
    assert b"70.50" in second
    history = client.get(f"/fhir/Observation/{oid}/_history").content  # bundles embed the stored bytes
    assert second in history
    assert first in history
    assert second in client.get("/fhir/Observation?code:text=weight").content
    patched = client.patch(f"/fhir/Observation/{oid}", content=b'[{"op":"replace","path":"/status","value":"final"}]',
                           headers={"Content-Type": "application/json-patch+json"})
    assert patched.status_code == 200
    assert b'"value":70.50' in patched.content


def test_rows_stored_as_plain_json_before_compression_are_still_served(client: TestClient, store: Services) -> None:
    made = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "female"}, headers=JSON)
    pid = made.json()["id"]
    with store.engine.begin() as conn:  # what a row written by an earlier version looks like
        conn.execute(update(resource).where(resource.c.res_id == pid).values(data=made.content))
        conn.execute(update(resource_history).where(resource_history.c.res_id == pid).values(data=made.content))
    assert client.get(f"/fhir/Patient/{pid}").content == made.content
    assert client.get(f"/fhir/Patient/{pid}/_history/1").content == made.content
    assert client.get("/fhir/Patient?gender=female").json()["entry"][0]["resource"] == made.json()


def test_a_damaged_row_is_a_server_error_without_content(client: TestClient, store: Services) -> None:
    made = client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Okonkwo"}]},
                       headers=JSON)
    pid = made.json()["id"]
    with store.engine.begin() as conn:
        stored = bytes(conn.execute(select(resource.c.data).where(resource.c.res_id == pid)).scalar_one())
        conn.execute(update(resource).where(resource.c.res_id == pid).values(data=stored[:-8]))
    got = client.get(f"/fhir/Patient/{pid}")
    assert got.status_code == 500
    outcome = got.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "exception"
    assert "Okonkwo" not in got.text
    assert client.get(f"/fhir/Patient/{pid}/_history/1").status_code == 200  # history kept its own copy
