"""Search by each R4 parameter type, on every backend: string, token, date, number, quantity, uri,
composite, and `:missing`, with AND (repeated parameters) and OR (commas)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.spec.search.helpers import LOINC, UCUM, bundle, error, ids, make, observation, ordered, patient
from tests.support.migrations import load_migration

# -- string -------------------------------------------------------------------------------------------


def test_string_search_starts_with_and_ignores_case_and_accents(client: TestClient) -> None:
    zoe = make(client, patient("Zoë", "Ann"))
    peter = make(client, patient("Peterson", "Joe"))
    make(client, patient("Smith", "Pete"))
    assert ids(client, "Patient?family=zoe") == {zoe}
    assert ids(client, "Patient?family=PETER") == {peter}
    assert ids(client, "Patient?name=pete") == {peter, *ids(client, "Patient?given=pete")}
    assert ids(client, "Patient?family=eterson") == set()  # not a prefix


def test_a_prefix_ending_at_the_last_code_point_before_the_surrogates_still_searches(client: TestClient) -> None:
    """U+D7FF is the last character before the surrogate block (U+D800–U+DFFF, never in text): a
    prefix ending with it bounds its range at U+E000, not at an unencodable surrogate (found by the
    search fuzz test as a server error on SQLite)."""
    edge = make(client, patient("\ud7ffend"))
    after = make(client, patient("\ue000after"))
    assert ids(client, "Patient?family=%ED%9F%BF") == {edge}
    assert ids(client, "Patient?family=%EE%80%80") == {after}
    assert ids(client, "Observation?subject:Patient.name=%ED%9F%BF") == set()


def test_string_exact_and_contains(client: TestClient) -> None:
    zoe = make(client, patient("Zoë"))
    make(client, patient("zoe"))
    assert ids(client, "Patient?family:exact=Zoë") == {zoe}
    assert ids(client, "Patient?family:exact=Zoe") == set()
    longer = make(client, patient("Anderson"))
    assert ids(client, "Patient?family:contains=ders") == {longer}


def test_phonetic_finds_names_that_sound_alike(client: TestClient) -> None:
    """`phonetic` matches by Metaphone code, word by word (fhir/search/phonetic.py); every word of
    the value must sound like a word of the resource's names."""
    smith = make(client, patient("Smith", "Catherine"))
    smyth = make(client, patient("Smyth-Jones", "Kathryn"))
    obrien = make(client, patient("O'Brien", "Stephen"))
    make(client, patient("Jones", "Mary"))
    assert ids(client, "Patient?phonetic=smith") == {smith, smyth}
    assert ids(client, "Patient?phonetic=SMYTHE") == {smith, smyth}
    assert ids(client, "Patient?phonetic=Kathryn Smith") == {smith, smyth}  # every word must match
    assert ids(client, "Patient?phonetic=Catherine Obrien") == set()
    assert ids(client, "Patient?phonetic=obrien,steven") == {obrien}  # OR
    assert ids(client, "Patient?phonetic=smith&phonetic=jones") == {smyth}  # AND
    assert ids(client, "Patient?phonetic=smi") == set()  # a sound, not a prefix
    assert ids(client, "Patient?phonetic:missing=false") == {smith, smyth, obrien, *ids(client, "Patient?family=jones")}
    org = make(client, {"resourceType": "Organization", "name": "Whittington Health"})
    assert ids(client, "Organization?phonetic=Witington") == {org}
    obs = make(client, observation(smyth), "Observation")
    assert ids(client, "Observation?subject:Patient.phonetic=smith") == {obs}


def test_phonetic_refuses_values_and_modifiers_it_cannot_match(client: TestClient) -> None:
    assert "phonetic" in error(client, "Patient?phonetic:exact=Smith")
    assert "phonetic" in error(client, "Patient?phonetic:contains=mit")
    assert "phonetic" in error(client, "Patient?phonetic=1234")


def test_phonetic_rows_written_as_plain_strings_are_recoded_by_migration_0009(client: TestClient, store: Any) -> None:
    from sqlalchemy import select

    from sharedcare.storage.tables import idx_string

    smith = make(client, patient("Smith", "Mary Ann"))
    make(client, {"resourceType": "Practitioner", "name": [{"family": "Smyth", "given": ["Jo"]}]})
    cols = (idx_string.c.res_type, idx_string.c.res_id, idx_string.c.value, idx_string.c.exact,
            idx_string.c.created_seq)
    phonetic = idx_string.c.param == "phonetic"
    with store.engine.connect() as conn:
        written = sorted(conn.execute(select(*cols).where(phonetic)).all())
        names = sorted(conn.execute(select(*cols).where(idx_string.c.param == "name")).all())
    assert {r.value for r in written} == {"SM0", "MR", "AN", "J"}
    with store.engine.begin() as conn:  # as the old code wrote them: the names as strings
        conn.execute(idx_string.delete().where(phonetic))
        conn.execute(idx_string.insert(), [{"res_type": r.res_type, "res_id": r.res_id, "param": "phonetic",
                                            "value": r.value, "exact": r.exact, "created_seq": r.created_seq}
                                           for r in names])
    assert ids(client, "Patient?phonetic=smyth") == set()
    migration = load_migration("0009_phonetic_codes")
    with store.engine.begin() as conn:
        assert migration.recode(conn) == 2
        assert migration.recode(conn) == 0  # rows in the new form are left alone
    with store.engine.connect() as conn:
        assert sorted(conn.execute(select(*cols).where(phonetic)).all()) == written
    assert ids(client, "Patient?phonetic=smyth") == {smith}


def test_address_parts_are_each_searched(client: TestClient) -> None:
    pid = make(client, patient("A", address=[{"line": ["1 High Street"], "city": "London", "postalCode": "SE1 7EH"}]))
    assert ids(client, "Patient?address=high") == set()  # a part must start with the value
    assert ids(client, "Patient?address=1 high") == {pid}
    assert ids(client, "Patient?address-city=lond") == {pid}
    assert ids(client, "Patient?address-postalcode=se1") == {pid}


# -- token --------------------------------------------------------------------------------------------


def test_token_system_and_code_forms(client: TestClient) -> None:
    p = make(client, patient("T"))
    glucose = make(client, observation(p, "2339-0"), "Observation")
    local = make(client, {"resourceType": "Observation", "status": "final", "code": {"coding": [{"code": "2339-0"}]}})
    other = make(client, observation(p, "8480-6"), "Observation")
    assert ids(client, "Observation?code=2339-0") == {glucose, local}
    assert ids(client, f"Observation?code={LOINC}|2339-0") == {glucose}
    assert ids(client, "Observation?code=|2339-0") == {local}
    assert ids(client, f"Observation?code={LOINC}|") == {glucose, other}
    assert ids(client, "Observation?code=2339-0,8480-6") == {glucose, local, other}  # OR
    assert ids(client, "Observation?code=2339-0&code=8480-6") == set()  # AND


def test_token_codes_are_case_sensitive_and_booleans_are_tokens(client: TestClient) -> None:
    active = make(client, patient("A", active=True))
    make(client, patient("B", active=False))
    assert ids(client, "Patient?active=true") == {active}
    assert ids(client, "Patient?gender=male") == set()
    male = make(client, patient("C", gender="male"))
    assert ids(client, "Patient?gender=male") == {male}
    assert ids(client, "Patient?gender=MALE") == set()


def test_token_not_includes_resources_without_the_element(client: TestClient) -> None:
    male = make(client, patient("M", gender="male"))
    female = make(client, patient("F", gender="female"))
    unknown = make(client, patient("U"))
    assert ids(client, "Patient?gender:not=male") == {female, unknown}
    assert male not in ids(client, "Patient?gender:not=male,other")


def test_token_text_searches_display_and_text(client: TestClient) -> None:
    cid = make(client, {"resourceType": "Condition", "subject": {"reference": "Patient/x"},
                        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "195967001",
                                             "display": "Asthma"}], "text": "Asthme sévère"}})
    assert ids(client, "Condition?code:text=asthme sev") == {cid}
    assert ids(client, "Condition?code:text=asthma") == set()  # text wins over display when present


def test_identifier_search_and_of_type(client: TestClient) -> None:
    nhs = "https://fhir.nhs.uk/Id/nhs-number"
    mrn_type = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}
    a = make(client, patient("A", identifier=[{"system": nhs, "value": "9434765919"},
                                              {"type": mrn_type, "system": "urn:trust", "value": "X1"}]))
    assert ids(client, f"Patient?identifier={nhs}|9434765919") == {a}
    assert ids(client, "Patient?identifier=9434765919") == {a}
    assert ids(client, "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|X1") == {a}
    assert ids(client, "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|9434765919") \
        == set()
    assert "of-type" in error(client, "Patient?identifier:of-type=MR|X1")


def test_token_in_and_not_in_a_stored_value_set(client: TestClient) -> None:
    p = make(client, patient("V"))
    glucose = make(client, observation(p, "2339-0"), "Observation")
    systolic = make(client, observation(p, "8480-6"), "Observation")
    make(client, {"resourceType": "ValueSet", "status": "active", "url": "http://example.org/fhir/ValueSet/glucose",
                  "compose": {"include": [{"system": LOINC, "concept": [{"code": "2339-0"}, {"code": "15074-8"}]}]}})
    assert ids(client, "Observation?code:in=http://example.org/fhir/ValueSet/glucose") == {glucose}
    assert ids(client, "Observation?code:not-in=http://example.org/fhir/ValueSet/glucose") == {systolic}
    # a core R4 value set needs no copy on the server
    male = make(client, patient("M", gender="male"))
    assert male in ids(client, "Patient?gender:in=http://hl7.org/fhir/ValueSet/administrative-gender")
    assert "value set" in error(client, "Observation?code:in=http://example.org/none")


# -- date ---------------------------------------------------------------------------------------------


def test_date_prefixes_follow_the_ranges_of_both_sides(client: TestClient) -> None:
    day = make(client, patient("D", birthDate="1980-05-17"))
    month = make(client, patient("M", birthDate="1980-05"))
    year = make(client, patient("Y", birthDate="1981"))
    assert ids(client, "Patient?birthdate=1980-05") == {day, month}  # both within May 1980
    assert ids(client, "Patient?birthdate=1980-05-17") == {day}  # a month is not within a day
    assert ids(client, "Patient?birthdate=ne1980-05") == {year}
    assert ids(client, "Patient?birthdate=gt1980-05-17") == {month, year}  # May 1980 runs past the 17th
    assert ids(client, "Patient?birthdate=lt1980-05-17") == {month}
    assert ids(client, "Patient?birthdate=ge1981") == {year}
    assert ids(client, "Patient?birthdate=le1980-05-17") == {day, month}
    assert ids(client, "Patient?birthdate=sa1980-12-31") == {year}
    assert ids(client, "Patient?birthdate=eb1981") == {day, month}
    assert ids(client, "Patient?birthdate=ge1980&birthdate=lt1981") == {day, month}  # a range by AND


def test_periods_and_approximate_dates(client: TestClient) -> None:
    enc = make(client, {"resourceType": "Encounter", "status": "finished",
                        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                        "period": {"start": "2020-01-10T09:00:00Z", "end": "2020-01-12T17:00:00Z"}})
    ongoing = make(client, {"resourceType": "Encounter", "status": "in-progress",
                            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                            "period": {"start": "2020-01-11T00:00:00Z"}})
    assert ids(client, "Encounter?date=2020-01") == {enc}  # an open end is not within January
    assert ids(client, "Encounter?date=gt2020-01-11") == {enc, ongoing}
    assert ids(client, "Encounter?date=eb2020-01-11") == set()
    assert ids(client, "Encounter?date=ap2020-01-11") == {enc, ongoing}


def _goal(*due: str) -> dict[str, object]:
    return {"resourceType": "Goal", "lifecycleStatus": "active", "description": {"text": "walk"},
            "subject": {"reference": "Patient/x"}, "target": [{"dueDate": d} for d in due]}


def test_date_windows_find_every_kind_of_value(client: TestClient) -> None:
    """A window (two bounds, or a month) is found month by month from the window index; values that
    cross a month boundary, open periods and resources with several values are found too, and each
    match is served once, in the same order as without the window index."""
    inside = make(client, _goal("2020-03-15"))
    before = make(client, _goal("2020-02-29"))  # the day before
    after = make(client, _goal("2020-04-01"))  # the day after
    make(client, _goal("2010-01-01"))
    either_side = make(client, _goal("2020-01-10", "2020-06-20"))  # each bound met by a different value
    one_inside = make(client, _goal("2019-01-01", "2020-03-02"))
    window = "Goal?target-date=ge2020-03-01&target-date=lt2020-04-01"
    assert ids(client, window) == {inside, either_side, one_inside}
    assert ids(client, "Goal?target-date=2020-03") == {inside, one_inside}  # within March
    # ap: within 10% of the distance from now (years here), so all but the 2010 goal
    assert ids(client, "Goal?target-date=ap2020-03-15") == {inside, before, after, either_side, one_inside}

    def encounter(start: str, end: str | None = None) -> dict[str, object]:
        return {"resourceType": "Encounter", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "period": {"start": start, **({"end": end} if end else {})}}
    across = make(client, encounter("2020-02-28T22:00:00Z", "2020-03-02T02:00:00Z"))  # February into March
    open_ended = make(client, encounter("2019-12-01"))
    same_day = make(client, encounter("2020-03-20T09:00:00Z", "2020-03-20T10:00:00Z"))
    make(client, encounter("2020-01-02", "2020-01-03"))
    assert ids(client, "Encounter?date=ge2020-03-01&date=lt2020-04-01") == {across, open_ended, same_day}
    assert ids(client, "Encounter?date=2020-03") == {same_day}
    assert ids(client, "Encounter?date=le2020-03-31&date=sa2020-02-28") == {same_day}
    # One at a time through the pages: each match once, in creation order like any unsorted search;
    # and back again by the previous links.
    assert ordered(client, window + "&_count=1") == [inside, either_side, one_inside]
    last = bundle(client, window + "&_count=2")
    last = bundle(client, next(lk["url"] for lk in last["link"] if lk["relation"] == "next").split("/fhir/")[1])
    back = bundle(client, next(lk["url"] for lk in last["link"] if lk["relation"] == "previous").split("/fhir/")[1])
    assert [e["resource"]["id"] for e in back["entry"]] == [inside, either_side]
    # Totals, from the index rows alone and with other criteria checked on the resources
    assert bundle(client, window + "&_total=accurate")["total"] == 3
    assert bundle(client, window + "&_total=accurate&lifecycle-status=active")["total"] == 3
    assert bundle(client, window + "&_total=accurate&lifecycle-status=cancelled")["total"] == 0
    assert bundle(client, window + "&_count=1")["total"] == 3  # the default estimate is exact this low
    # An update that gives a resource a second value moves its row out of the month.
    r = client.put(f"/fhir/Goal/{inside}", json={**_goal("2021-05-05", "2018-01-01"), "id": inside})
    assert r.status_code == 200, r.text
    assert ids(client, window) == {inside, either_side, one_inside}
    assert ids(client, "Goal?target-date=2020-03") == {one_inside}


def test_dates_at_the_edges_of_the_calendar(client: TestClient) -> None:
    """Years before 1000 compare as earlier than later years; values at the first and last instants
    (even with offsets that would leave the calendar) are answered, never a server error."""
    old = make(client, _goal("0999-03-15"))
    oldest = make(client, _goal("0005-01-01"))
    recent = make(client, _goal("2020-03-15"))
    assert ids(client, "Goal?target-date=lt1000") == {old, oldest}
    assert ids(client, "Goal?target-date=ge1000") == {recent}
    assert ids(client, "Goal?target-date=0999-03") == {old}
    assert ids(client, "Goal?target-date=ge0998-01-01&target-date=lt0999-06-01") == {old}
    for value in ("0001-01-01", "9999-12", "9999", "lt0001-01-01", "0001-01-01T00:00:00%2B05:00",
                  "9999-12-31T23:59:59-05:00", "ap0001-01-01", "ap0002-01-01", "ap0150-06-01", "ap9999-12-31",
                  "ap9900-01-01"):
        assert isinstance(ids(client, f"Goal?target-date={value}"), set)


def test_dates_with_offsets_compare_in_utc(client: TestClient) -> None:
    late = make(client, {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                         "effectiveDateTime": "2021-03-01T23:30:00-02:00"})  # 1 March 01:30 UTC... of the 2nd
    assert ids(client, "Observation?date=2021-03-02") == {late}
    assert ids(client, "Observation?date=2021-03-01") == set()


def test_last_updated(client: TestClient) -> None:
    pid = make(client, patient("L"))
    assert ids(client, "Patient?_lastUpdated=gt2000-01-01") == {pid}
    assert ids(client, "Patient?_lastUpdated=lt2000-01-01") == set()


# -- number and quantity ------------------------------------------------------------------------------


def test_quantity_with_implicit_precision_and_units(client: TestClient) -> None:
    p = make(client, patient("Q"))
    a = make(client, observation(p, value="5.4", unit="mmol/L"), "Observation")
    b = make(client, observation(p, value="5.449", unit="mmol/L"), "Observation")
    c = make(client, observation(p, value="98", unit="mg/dL"), "Observation")
    assert ids(client, "Observation?value-quantity=5.4") == {a, b}  # 5.4 covers [5.35, 5.45)
    assert ids(client, "Observation?value-quantity=5.40") == {a}  # 5.40 covers [5.395, 5.405)
    assert ids(client, f"Observation?value-quantity=gt5|{UCUM}|mmol/L") == {a, b}
    assert ids(client, f"Observation?value-quantity=gt5|{UCUM}|mg/dL") == {c}
    assert ids(client, "Observation?value-quantity=le98||mg/dL") == {c}
    assert ids(client, "Observation?value-quantity=ap100") == {c}
    assert "number" in error(client, "Observation?value-quantity=lots")


def test_number_parameter(client: TestClient) -> None:
    a = make(client, {"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": "Patient/x"},
                      "prediction": [{"probabilityDecimal": 0.25}]})
    make(client, {"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": "Patient/x"},
                  "prediction": [{"probabilityDecimal": 0.8}]})
    assert ids(client, "RiskAssessment?probability=0.25") == {a}
    assert ids(client, "RiskAssessment?probability=lt0.5") == {a}
    assert ids(client, "RiskAssessment?probability=0.3") == {a}  # 0.3 covers [0.25, 0.35)
    assert ids(client, "RiskAssessment?probability=0.4") == set()


# -- uri, composite, missing --------------------------------------------------------------------------


def test_uri_exact_below_and_above(client: TestClient) -> None:
    vs = make(client, {"resourceType": "ValueSet", "status": "active", "url": "http://example.org/fhir/ValueSet/a"})
    assert ids(client, "ValueSet?url=http://example.org/fhir/ValueSet/a") == {vs}
    assert ids(client, "ValueSet?url=http://example.org/fhir") == set()
    assert ids(client, "ValueSet?url:below=http://example.org/fhir") == {vs}
    assert ids(client, "ValueSet?url:above=http://example.org/fhir/ValueSet/a/b") == {vs}
    assert ids(client, "ValueSet?url:above=http://example.org/fhir") == set()


def test_composite_components_come_from_the_same_element(client: TestClient) -> None:
    bp = {"resourceType": "Observation", "status": "final",
          "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
          "component": [
              {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
               "valueQuantity": {"value": 150, "system": UCUM, "code": "mm[Hg]", "unit": "mm[Hg]"}},
              {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
               "valueQuantity": {"value": 70, "system": UCUM, "code": "mm[Hg]", "unit": "mm[Hg]"}}]}
    high = make(client, bp)
    assert ids(client, f"Observation?component-code-value-quantity={LOINC}|8480-6$gt140") == {high}
    # 70 belongs to the diastolic component: systolic above 60 matches, diastolic above 100 does not
    assert ids(client, f"Observation?component-code-value-quantity={LOINC}|8462-4$gt100") == set()
    assert ids(client, f"Observation?combo-code-value-quantity={LOINC}|8462-4$lt80") == {high}
    p = make(client, patient("C"))
    glucose = make(client, observation(p, "2339-0", value="7.1"), "Observation")
    assert ids(client, f"Observation?code-value-quantity={LOINC}|2339-0$ge7") == {glucose}
    assert "$" in error(client, f"Observation?code-value-quantity={LOINC}|2339-0")


def test_missing(client: TestClient) -> None:
    with_date = make(client, patient("A", birthDate="1990-01-01"))
    without = make(client, patient("B"))
    assert ids(client, "Patient?birthdate:missing=true") == {without}
    assert ids(client, "Patient?birthdate:missing=false") == {with_date}
    assert "true or false" in error(client, "Patient?birthdate:missing=maybe")


def test_meta_parameters(client: TestClient) -> None:
    tagged = make(client, patient("T", meta={"tag": [{"system": "urn:example", "code": "pilot"}],
                                             "profile": ["http://example.org/StructureDefinition/p"],
                                             "source": "urn:source:gp"}))
    make(client, patient("U"))
    assert ids(client, "Patient?_tag=urn:example|pilot") == {tagged}
    assert ids(client, "Patient?_profile=http://example.org/StructureDefinition/p") == {tagged}
    assert ids(client, "Patient?_source=urn:source:gp") == {tagged}
    assert ids(client, f"Patient?_id={tagged}") == {tagged}
