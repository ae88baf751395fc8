"""Roles on the National RBAC model (issue 5): users hold SDS job roles, job roles grant activities,
and policy asks only for activities. These are the baseline grants docs/access.md lists."""

from __future__ import annotations

import pytest

from sharedcare.access.roles import JOB_ROLES, LOCAL_JOB_ROLES, SDS_JOB_ROLE, Activity, activities
from sharedcare.synth import directory
from sharedcare.synth.directory import STAFF

A = Activity


@pytest.mark.parametrize(("code", "granted"), [
    ("R8000", {A.DEMOGRAPHICS, A.VIEW_RECORD, A.DECLARE_RELATIONSHIP, A.BREAK_GLASS, A.AUTHOR_CARE_PLAN}),
    ("R8003", {A.DEMOGRAPHICS, A.VIEW_RECORD, A.DECLARE_RELATIONSHIP, A.BREAK_GLASS}),
    ("R8014", {A.DEMOGRAPHICS, A.VIEW_RECORD, A.DECLARE_RELATIONSHIP}),
    ("R8009", {A.DEMOGRAPHICS}),
    ("R0001", {A.PRIVACY_OFFICER}),
    ("R8012", {A.ANALYST}),
    ("R8015", {A.ADMINISTRATOR}),
])
def test_each_job_role_grants_its_activities_and_nothing_more(code: str, granted: set[Activity]) -> None:
    assert activities([code]) == granted


def test_only_clinical_roles_break_the_glass_and_no_non_clinical_role_sees_records() -> None:
    for role in JOB_ROLES.values():
        if A.BREAK_GLASS in role.activities:
            assert A.VIEW_RECORD in role.activities, role.code
        if role.activities & {A.PRIVACY_OFFICER, A.ANALYST, A.ADMINISTRATOR}:
            assert A.VIEW_RECORD not in role.activities, role.code


def test_roles_add_up_and_an_unknown_code_grants_nothing() -> None:
    assert activities(["R8009", "R0001"]) == {A.DEMOGRAPHICS, A.PRIVACY_OFFICER}
    assert activities(["R9999", ""]) == frozenset()
    assert activities([]) == frozenset()


def test_every_synthetic_job_role_is_held_as_a_known_sds_job_role() -> None:
    local = {role for staff in STAFF.values() for role, _, _ in staff}
    assert local == set(LOCAL_JOB_ROLES)
    assert set(LOCAL_JOB_ROLES.values()) <= set(JOB_ROLES)


def test_the_directory_codes_each_practitioner_role_with_its_sds_job_role() -> None:
    found = directory.build(100, 1)
    roles = list(found.of_type("PractitionerRole"))
    assert len(roles) == len(found.staff)
    for res, account in zip(roles, found.staff, strict=True):
        sds = [c for c in res["code"][0]["coding"] if c["system"] == SDS_JOB_ROLE]
        assert [c["code"] for c in sds] == [LOCAL_JOB_ROLES[account.job_role]]
        assert sds[0]["display"] == JOB_ROLES[sds[0]["code"]].display
