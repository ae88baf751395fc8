"""SMART App Launch 2.0 scopes (issue 5): what a token's scopes allow, SMART 1.0 scopes read as
their 2.0 equivalents, granular restrictions, and every malformed scope refused with its reason."""

from __future__ import annotations

import pytest

from sharedcare.access.scopes import Scope, ScopeError, parse, parse_all, permits


@pytest.mark.parametrize(("text", "expected"), [
    ("system/*.cruds", Scope("system", "*", "cruds")),
    ("patient/Observation.rs", Scope("patient", "Observation", "rs")),
    ("user/Patient.r", Scope("user", "Patient", "r")),
    ("patient/*.read", Scope("patient", "*", "rs")),  # SMART 1.0
    ("user/Observation.write", Scope("user", "Observation", "cud")),
    ("system/*.*", Scope("system", "*", "cruds")),
    ("patient/Observation.rs?category=vital-signs",
     Scope("patient", "Observation", "rs", (("category", "vital-signs"),))),
    ("patient/Condition.s?category=problem-list-item&clinical-status=active",
     Scope("patient", "Condition", "s", (("category", "problem-list-item"), ("clinical-status", "active")))),
])
def test_a_resource_scope_reads_as_context_type_and_permissions(text: str, expected: Scope) -> None:
    assert parse(text) == expected


def test_identity_and_launch_scopes_grant_no_resource_access() -> None:
    assert parse_all("openid fhirUser launch/patient offline_access patient/Patient.r") == (
        Scope("patient", "Patient", "r"),)


@pytest.mark.parametrize(("text", "reason"), [
    ("patient/Observation", "not a SMART scope"),
    ("Observation.read", "not a SMART scope"),
    ("admin/*.cruds", "context is patient, user or system"),
    ("patient/*.sr", "in that order"),
    ("patient/*.rr", "in that order"),
    ("patient/*.x", "letters of 'cruds'"),
    ("patient/observation.rs", "not a SMART scope"),  # resource types start with a capital
    ("patient/Observation.cu?category=x", "restricts reading and searching only"),
    ("patient/Observation.rs?category", "param=value"),
    ("patient/Observation.rs?=x", "param=value"),
    ("", "not a SMART scope"),
])
def test_a_malformed_scope_is_refused_with_its_reason(text: str, reason: str) -> None:
    with pytest.raises(ScopeError, match=reason):
        parse(text)


def test_one_bad_scope_refuses_the_whole_set() -> None:
    with pytest.raises(ScopeError, match="nonsense"):
        parse_all("openid patient/*.rs nonsense")


def test_scopes_allow_only_their_interactions_types_and_context() -> None:
    scopes = parse_all("patient/Observation.rs patient/Patient.r")
    assert permits(scopes, "patient", "Observation", "search")
    assert permits(scopes, "patient", "Observation", "read")
    assert permits(scopes, "patient", "Observation", "vread")
    assert permits(scopes, "patient", "Patient", "read")
    assert not permits(scopes, "patient", "Patient", "search")
    assert not permits(scopes, "patient", "Observation", "create")
    assert not permits(scopes, "patient", "Condition", "read")
    assert not permits(scopes, "user", "Observation", "read")  # another context
    assert not permits(scopes, "patient", "Observation", "unheard-of")
    everything = parse_all("system/*.cruds")
    assert all(permits(everything, "system", "Encounter", i) for i in ("create", "read", "update", "delete",
                                                                         "search", "patch", "history"))


def test_a_scope_prints_as_it_was_meant() -> None:
    for text in ("system/*.cruds", "patient/Observation.rs?category=vital-signs"):
        assert str(parse(text)) == text
    assert str(parse("patient/*.read")) == "patient/*.rs"
