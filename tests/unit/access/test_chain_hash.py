"""The audit hash chain's formula is fixed: chains written by earlier releases must still verify."""

from __future__ import annotations

import hashlib

from sharedcare.access.audit import GENESIS, chain_hash


def reference_hash(prev_hash: str, row: dict[str, object]) -> str:
    """The formula as specified: SHA-256 over the previous hash, then for each field in name order
    (seq, prev_hash and hash excluded) the bytes 0x1F, the name, '=' and str(value), UTF-8."""
    h = hashlib.sha256(prev_hash.encode())
    for key in sorted(row):
        if key not in ("seq", "prev_hash", "hash"):
            h.update(b"\x1f" + key.encode() + b"=" + str(row[key]).encode())
    return h.hexdigest()


ROW: dict[str, object] = {
    "recorded": "2026-11-28T02:00:00.000001", "partition_key": "p1", "interaction": "read", "action": "R",
    "outcome": "0", "status": 200, "agent_kind": "system", "agent_id": "system:local", "agent_role": None,
    "agent_org": None, "purpose": "SYSADMIN", "on_behalf_of": None, "res_type": "Patient", "res_id": "p1",
    "version_id": 3, "patients": "p1", "query": "name=Zoë", "source_ip": None,
}


def test_chain_hash_follows_the_specified_formula() -> None:
    assert chain_hash(GENESIS, ROW) == reference_hash(GENESIS, ROW)


def test_stored_columns_outside_the_record_do_not_change_the_hash() -> None:
    stored = {**ROW, "seq": 99, "prev_hash": GENESIS, "hash": "x" * 64}
    assert chain_hash(GENESIS, stored) == chain_hash(GENESIS, ROW)


def test_any_field_change_or_a_different_predecessor_changes_the_hash() -> None:
    base = chain_hash(GENESIS, ROW)
    assert chain_hash(GENESIS, {**ROW, "status": 404}) != base
    assert chain_hash(GENESIS, {**ROW, "agent_role": ""}) != base  # None and "" differ
    assert chain_hash("1" * 64, ROW) != base


def test_a_known_row_has_a_known_hash() -> None:
    assert chain_hash(GENESIS, ROW) == "280842b9bc87c2fd92ed67f29141fa7faf4a2fdbc550ce77443cdf7ba856cef7"
