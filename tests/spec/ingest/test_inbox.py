"""The inbox: a message is committed before it is acknowledged, stored once however often it comes,
processed once and in order per patient, and kept as a dead letter with its reason when it cannot be
(security cases CV7, CV8 and CF4). Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sharedcare.access.context import system_caller
from sharedcare.app import Services
from sharedcare.fhir.search import query as search_query
from sharedcare.ingest.hl7v2 import adt as adt_mapping
from sharedcare.ingest.hl7v2 import mapping
from sharedcare.settings import Settings
from sharedcare.storage import inbox_store
from tests.spec.ingest.feeds import ELSEWHERE, LOOPBACK, MRN, adt, err, inbox, msa, register, stored


def patients(store: Services, ods: str = "RJ7") -> list[dict[str, Any]]:
    q = search_query.parse("Patient", [("identifier", f"{MRN}|RJ70000002")], default_count=10, max_count=10)
    page = store.repo.search(system_caller(organisation=ods), q, "identifier")
    return [__import__("orjson").loads(s.data) for s in page.items]


def encounters(store: Services) -> list[dict[str, Any]]:
    q = search_query.parse("Encounter", [], default_count=50, max_count=50)
    return [__import__("orjson").loads(s.data) for s in store.repo.search(system_caller(), q, "").items]


def test_a_message_is_acknowledged_after_it_is_stored_and_then_written_as_its_source(
        store: Services, settings: Settings) -> None:
    register(store)
    box = inbox(store, settings)
    reply = box.receive_hl7(adt("A01", "M1").encode(), LOOPBACK)
    assert reply is not None
    assert msa(reply)[1:3] == ["AA", "M1"]
    [m] = stored(store)
    assert m.status == "pending"
    assert m.source_id == "RJ7"
    assert m.patient_key == f"{MRN}|RJ70000002"
    assert [o.status for o in box.drain()] == ["done"]
    [patient] = patients(store)
    assert patient["meta"]["source"].endswith("RJ7")
    [encounter] = encounters(store)
    assert encounter["status"] == "in-progress"
    assert encounter["subject"]["reference"] == f"Patient/{patient['id']}"
    provenance = store.repo.search(system_caller(), search_query.parse("Provenance", [], default_count=5,
                                                                       max_count=5), "").items
    assert len(provenance) == 1


def test_cv7_the_same_message_delivered_twice_is_written_once_and_acknowledged_alike(
        store: Services, settings: Settings) -> None:
    register(store)
    box = inbox(store, settings)
    first = box.receive_hl7(adt("A08", "DUP-1").encode(), LOOPBACK)
    box.drain()
    second = box.receive_hl7(adt("A08", "DUP-1").encode(), LOOPBACK)
    assert first is not None
    assert second is not None
    assert msa(first)[1] == msa(second)[1] == "AA"
    assert len(stored(store)) == 1
    box.drain()
    [patient] = patients(store)
    assert patient["meta"]["versionId"] == "1"


def test_cv8_a_patients_messages_are_applied_in_the_order_the_source_recorded_them(
        store: Services, settings: Settings) -> None:
    """A batch the network reordered: the A08 (a new surname, recorded later) arrives before the A01."""
    register(store)
    box = inbox(store, settings)
    box.receive_hl7(adt("A08", "B2", when="20250728100000", family="Ibrahim-Khan").encode(), LOOPBACK)
    box.receive_hl7(adt("A01", "B1", when="20250727141000").encode(), LOOPBACK)
    box.drain()
    [patient] = patients(store)
    assert patient["name"][0]["family"] == "Ibrahim-Khan"
    assert patient["meta"]["versionId"] == "2"  # A01 first, then A08


def test_an_older_message_arriving_after_a_newer_one_never_undoes_it(store: Services, settings: Settings) -> None:
    register(store)
    box = inbox(store, settings)
    box.receive_hl7(adt("A03", "D1", when="20250810161000", discharged="20250810161000").encode(), LOOPBACK)
    box.drain()
    box.receive_hl7(adt("A01", "D0", when="20250727141000").encode(), LOOPBACK)  # resent late
    box.drain()
    [encounter] = encounters(store)
    assert encounter["status"] == "finished"
    assert [m.status for m in stored(store)] == ["done", "done"]


def test_cf4_a_poison_message_is_retried_then_dead_lettered_while_other_patients_flow(
        store: Services, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    register(store)
    box = inbox(store, settings)
    real = adt_mapping.adt  # the registered ADT mapper

    def poison(msg: Any, ctx: mapping.Context) -> mapping.Mapped:
        if msg.control_id == "POISON":
            raise RuntimeError("a transform fault")
        return real(msg, ctx)

    monkeypatch.setitem(mapping.MAPPERS, "ADT", poison)
    box.receive_hl7(adt("A01", "POISON").encode(), LOOPBACK)
    box.receive_hl7(adt("A01", "OTHER", mrn="RJ70000003", visit="RJ7V9").encode(), LOOPBACK)
    box.drain()
    by_key = {m.message_key: m for m in stored(store)}
    assert by_key["OTHER"].status == "done"
    dead = by_key["POISON"]
    assert dead.status == "dead"
    assert dead.attempts == 4
    assert dead.error == "internal error (RuntimeError)"  # our words, nothing of the message
    monkeypatch.setitem(mapping.MAPPERS, "ADT", real)  # the fix
    assert inbox_store.replay(store.engine, [dead.seq]) == 1
    box.drain()
    assert inbox_store.message(store.engine, dead.seq).status == "done"  # type: ignore[union-attr]
    assert inbox_store.replay(store.engine, [dead.seq]) == 0  # a done message is never replayed
    assert len(patients(store)) == 1


def test_an_invalid_resource_is_a_dead_letter_naming_what_is_wrong(store: Services, settings: Settings,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    register(store)
    box = inbox(store, settings)
    real = adt_mapping.adt  # the registered ADT mapper

    def broken(msg: Any, ctx: mapping.Context) -> mapping.Mapped:
        got = real(msg, ctx)
        got.bundle["entry"][0]["resource"]["gender"] = "sometimes"
        return got

    monkeypatch.setitem(mapping.MAPPERS, "ADT", broken)
    box.receive_hl7(adt("A01", "BAD").encode(), LOOPBACK)
    box.drain()
    [m] = stored(store)
    assert m.status == "dead"
    assert m.error is not None
    assert "gender" in m.error
    assert patients(store) == []  # nothing of it was written


@pytest.mark.parametrize(("message", "code", "why"), [
    (adt("A01", "V1", version="3.0"), "203", "version"),
    (adt("A01", "T1", processing="T"), "202", "production"),
    (adt("A01", ""), "101", "control id"),
    (adt("A99", "X1"), "201", "trigger"),
    ("MSH|^~\\&|PAS|RJ7|SHAREDCARE|LONDON|20250101||XYZ^A01|Q1|P|2.4\r", "200", "message type"),
    ("PID|1||123\r", "101", "MSH"),
    ("MSH|\r", "102", "encoding"),
])
def test_what_cannot_be_accepted_is_refused_with_an_error_segment_and_not_stored(
        store: Services, settings: Settings, message: str, code: str, why: str) -> None:
    register(store)
    reply = inbox(store, settings).receive_hl7(message.encode(), LOOPBACK)
    assert reply is not None
    assert msa(reply)[1] == "AR"
    error = err(reply)
    assert error is not None
    assert error[3].split("^")[0] == code
    assert why in msa(reply)[3]
    assert stored(store) == []


def test_an_unregistered_sender_is_refused(store: Services, settings: Settings) -> None:
    register(store)
    reply = inbox(store, settings).receive_hl7(adt("A01", "U1", facility="RXX").encode(), LOOPBACK)
    assert reply is not None
    assert msa(reply)[1] == "AR"
    assert "not a registered source" in msa(reply)[3]
    assert stored(store) == []


def test_plain_tcp_is_refused_beyond_loopback_and_without_the_development_setting(
        store: Services, settings: Settings) -> None:
    register(store)
    strict = inbox(store, settings, mllp_allow_plain_loopback=False)
    assert msa(strict.receive_hl7(adt("A01", "P1").encode(), LOOPBACK) or "")[1] == "AR"
    relaxed = inbox(store, settings)
    assert msa(relaxed.receive_hl7(adt("A01", "P2").encode(), ELSEWHERE) or "")[1] == "AR"
    assert stored(store) == []


def test_a_sender_must_present_the_certificate_bound_to_its_source(store: Services, settings: Settings) -> None:
    from sharedcare.ingest.sources import Peer

    register(store, cert_sha256="a" * 64)
    box = inbox(store, settings, mllp_allow_plain_loopback=False)
    wrong = box.receive_hl7(adt("A01", "C1").encode(), Peer("192.0.2.1", False, "b" * 64))
    assert wrong is not None
    assert "certificate" in msa(wrong)[3]
    right = box.receive_hl7(adt("A01", "C2").encode(), Peer("192.0.2.1", False, "a" * 64))
    assert right is not None
    assert msa(right)[1] == "AA"


def test_an_unknown_sender_may_register_itself_for_review_only_where_allowed(store: Services,
                                                                             settings: Settings) -> None:
    box = inbox(store, settings, auto_register_sources=True)
    reply = box.receive_hl7(adt("A01", "N1", facility="RQM").encode(), LOOPBACK)
    assert reply is not None
    assert msa(reply)[1] == "AA"
    [source] = inbox_store.sources(store.engine)
    assert (source.ods, source.status) == ("RQM", "review")


def test_enhanced_mode_answers_with_commit_acknowledgements(store: Services, settings: Settings) -> None:
    register(store)
    box = inbox(store, settings)
    reply = box.receive_hl7(adt("A01", "E1", accept_ack="AL").encode(), LOOPBACK)
    assert reply is not None
    assert msa(reply)[1] == "CA"
    assert box.receive_hl7(adt("A01", "E2", accept_ack="ER").encode(), LOOPBACK) is None  # only errors wanted


def test_a_source_writes_only_as_itself(store: Services, settings: Settings) -> None:
    """Two trusts send the same hospital number: each finds and changes only its own record."""
    register(store)
    register(store, "RJ1", "RJ1")
    box = inbox(store, settings)
    box.receive_hl7(adt("A01", "S1").encode(), LOOPBACK)
    box.receive_hl7(adt("A01", "S1", facility="RJ1").encode(), LOOPBACK)
    box.drain()
    assert [m.status for m in stored(store)] == ["done", "done"]
    assert len(patients(store, "RJ7")) == 1
    mine = patients(store, "RJ1")
    assert len(mine) <= 1  # RJ1's record carries RJ1's own identifier system


def test_a_control_id_reused_for_a_different_message_is_refused_never_dropped(store: Services,
                                                                               settings: Settings) -> None:
    """A sender whose counter was reset sends a new message under an old MSH-10: acknowledging it as a
    duplicate would lose it, so it is refused (AR, 205) and the sender's engine raises it."""
    register(store)
    box = inbox(store, settings)
    box.receive_hl7(adt("A01", "REUSED").encode(), LOOPBACK)
    resent = adt("A01", "REUSED").replace("20250727141000||ADT", "20250727141500||ADT", 1)  # MSH-7 stamped again
    again = box.receive_hl7(resent.encode(), LOOPBACK)
    assert again is not None
    assert msa(again)[1] == "AA"  # the same message, sent again
    other = box.receive_hl7(adt("A01", "REUSED", family="Okafor").encode(), LOOPBACK)
    assert other is not None
    assert msa(other)[1] == "AR"
    error = err(other)
    assert error is not None
    assert error[3].split("^")[0] == "205"
    [m] = stored(store)
    assert m.payload == adt("A01", "REUSED").encode()


def test_an_a40_merge_joins_the_unknown_patients_record_to_the_patients_person(store: Services,
                                                                              settings: Settings) -> None:
    """An emergency patient registered as UNKNOWN under a temporary number, merged into their own
    record by A40 the day after: the patient index puts both records in one person, and the retired
    record says it was replaced."""
    from sharedcare.storage import mpi_store

    register(store)
    box = inbox(store, settings)
    box.receive_hl7(adt("A04", "U1", mrn="RJ7U0000005", family="UNKNOWN", visit="RJ7V77").encode(), LOOPBACK)
    box.receive_hl7(adt("A28", "K1", when="20250727150000", structure="ADT_A05").encode(), LOOPBACK)
    merge = "\r".join([
        "MSH|^~\\&|PAS|RJ7|SHAREDCARE|LONDON|20250728090000||ADT^A40^ADT_A39|M40|P|2.4|||||GBR|UNICODE UTF-8",
        "EVN|A40|20250728090000||||20250728090000",
        "PID|1||RJ70000002^^^RJ7^MR~9625315403^^^NHS^NH||Ibrahim^Hassan^^^^^L||19660111|M",
        "MRG|RJ7U0000005^^^RJ7^MR"]) + "\r"
    box.drain()
    assert msa(box.receive_hl7(merge.encode(), LOOPBACK) or "")[1] == "AA"
    box.drain()
    assert [m.status for m in stored(store)] == ["done", "done", "done"]
    q = search_query.parse("Patient", [], default_count=10, max_count=10)
    found = {json.loads(s.data)["identifier"][0]["value"]: json.loads(s.data)
             for s in store.repo.search(system_caller(), q, "").items}
    retired, survivor = found["RJ7U0000005"], found["RJ70000002"]
    assert retired["active"] is False
    assert retired["link"] == [{"other": {"reference": f"Patient/{survivor['id']}"}, "type": "replaced-by"}]
    assert {"other": {"reference": f"Patient/{retired['id']}"}, "type": "replaces"} in survivor["link"]
    with store.engine.connect() as conn:
        assert mpi_store.person_of(conn, retired["id"]) == mpi_store.person_of(conn, survivor["id"])


def test_a_result_message_never_overwrites_what_the_patients_adt_said(store: Services, settings: Settings) -> None:
    """ORU, SIU, VXU and MDM carry a thin PID: the Patient is created from it only when the source
    has sent none (a conditional create), so the address and names ADT gave stay."""
    register(store)
    box = inbox(store, settings)
    box.receive_hl7(adt("A28", "A1", structure="ADT_A05").encode(), LOOPBACK)
    oru = "\r".join([
        "MSH|^~\\&|LAB|RJ7|SHAREDCARE|LONDON|20250728100000||ORU^R01^ORU_R01|R1|P|2.4|||||GBR|UNICODE UTF-8",
        "PID|1||RJ70000002^^^RJ7^MR||IBRAHIM^H",
        "OBR|1|L1|L1|26604007^Full blood count^SCT|||20250728090000|||||||||||||||20250728100000|||F",
        "OBX|1|NM|1022431000000105^Haemoglobin estimation^SCT||139|g/L^^UCUM|115-165|N|||F"]) + "\r"
    assert msa(box.receive_hl7(oru.encode(), LOOPBACK) or "")[1] == "AA"
    box.drain()
    assert [m.status for m in stored(store)] == ["done", "done"]
    [patient] = patients(store)
    assert patient["meta"]["versionId"] == "1"
    assert patient["name"][0]["family"] == "Ibrahim"
    assert patient["address"][0]["postalCode"] == "NW7 3QL"


def test_a_feed_silent_for_longer_than_expected_is_alerted_once(store: Services, settings: Settings,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    from datetime import UTC, datetime, timedelta

    register(store, expected_minutes=30)
    register(store, "RJ1", "RJ1")  # no interval expected: never alerted
    box = inbox(store, settings)
    later = datetime.now(UTC) + timedelta(minutes=45)
    with caplog.at_level("WARNING", logger="sharedcare.inbox"):
        assert box.alert_silent_sources(later) == ["RJ7"]
        assert box.alert_silent_sources(later + timedelta(minutes=5)) == []  # once per silence
    assert "source RJ7 has sent nothing for more than 30 minutes" in caplog.text
    resumed = later + timedelta(minutes=10)  # it sends again, then falls silent again
    inbox_store.receive(store.engine, [inbox_store.Incoming("RJ7", "W1", "hl7v2", b"MSH|")], ack_code="AA",
                        at=resumed)
    assert box.alert_silent_sources(resumed + timedelta(minutes=20)) == []
    assert box.alert_silent_sources(resumed + timedelta(minutes=31)) == ["RJ7"]


def test_a_merge_keeps_the_labels_the_source_gave_the_records_it_links(store: Services, settings: Settings) -> None:
    """The merge rewrites both Patients (`link`, `active`): a restriction the source set on one
    (meta.security R, which keeps it from crossing organisations) stays on it."""
    register(store)
    restricted = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
    with store.repo.unit(system_caller(organisation="RJ7"), "create") as unit:
        unit.create({"resourceType": "Patient", "meta": {"security": [restricted]}, "active": True,
                     "identifier": [{"system": MRN, "value": "RJ7U0000005"}], "name": [{"family": "UNKNOWN"}]})
    box = inbox(store, settings)
    merge = "\r".join([
        "MSH|^~\\&|PAS|RJ7|SHAREDCARE|LONDON|20250728090000||ADT^A40^ADT_A39|M41|P|2.4|||||GBR|UNICODE UTF-8",
        "EVN|A40|20250728090000||||20250728090000",
        "PID|1||RJ70000002^^^RJ7^MR~9625315403^^^NHS^NH||Ibrahim^Hassan^^^^^L||19660111|M",
        "MRG|RJ7U0000005^^^RJ7^MR"]) + "\r"
    assert msa(box.receive_hl7(merge.encode(), LOOPBACK) or "")[1] == "AA"
    box.drain()
    assert [m.status for m in stored(store)] == ["done"]
    q = search_query.parse("Patient", [("identifier", f"{MRN}|RJ7U0000005")], default_count=5, max_count=5)
    [retired] = [json.loads(s.data) for s in store.repo.search(system_caller(), q, "").items]
    assert retired["active"] is False
    assert restricted in retired["meta"]["security"]
    assert retired["meta"]["versionId"] == "2"
