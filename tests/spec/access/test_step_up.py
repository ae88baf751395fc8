"""Step-up (security case AN3): breaking the glass and changing a care plan need a strong sign-in.

A member of staff signed in at AAL2 or below (a password, or a CIS2 method weaker than a smartcard)
who tries either is told to sign in again more strongly: 401 with the RFC 9470 challenge
(`error="insufficient_user_authentication"`, `acr_values`), and nothing is granted, created or
changed. At AAL3 the same requests succeed. The level comes from the sign-in (CIS2 `acr`, or
`local_account_aal` for local accounts) and travels in the token; a source system acting for its
staff states it in `X-On-Behalf-Of-Assurance`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sharedcare.access import accounts, assurance, grants
from sharedcare.access.context import Caller
from sharedcare.access.oauth import register_client
from sharedcare.app import Services, create_app
from sharedcare.errors import BadRequest, Forbidden, Unauthorized
from sharedcare.settings import Settings
from sharedcare.storage import audit_store
from sharedcare.storage.accounts import AccountStore
from sharedcare.storage.grants import GrantStore
from sharedcare.storage.oauth import OAuthStore
from tests.conftest import token_for
from tests.spec.access.test_signin import PASSWORD, REDIRECT, authorize_url, code_from, pkce, sign_in
from tests.spec.access.world import World, build, ref, staff

FHIR = {"Content-Type": "application/fhir+json"}
REASON = {"resourceType": "Parameters",
          "parameter": [{"name": "reason", "valueString": "Collapsed in A&E, no history"}]}


@pytest.fixture
def world(store: Services) -> World:
    return build(store.repo)


def as_(store: Services, settings: Settings, caller: Caller) -> TestClient:
    return TestClient(create_app(settings, store), base_url="http://testserver",
                      headers={"Authorization": f"Bearer {token_for(store, settings, caller)}"})


def assert_step_up(response: Any, level: int = 3) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["WWW-Authenticate"]
    assert 'error="insufficient_user_authentication"' in challenge
    assert f'acr_values="{assurance.acr_values(level)}"' in challenge
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "login"
    assert "stronger sign-in" in outcome["issue"][0]["diagnostics"]


def plan(patient_id: str, title: str = "Ceiling of care agreed") -> dict[str, Any]:
    return {"resourceType": "CarePlan", "status": "active", "intent": "plan", "title": title,
            "subject": ref("Patient", patient_id)}


# -- break-glass ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("aal", [None, 1, 2])
def test_break_glass_below_aal3_is_told_to_step_up_and_nothing_is_granted(store: Services, settings: Settings,
                                                                          world: World, aal: int | None) -> None:
    a = world.ids["Patient:A"]
    doctor = staff("TR2", "R8000", "ed.doctor", aal=aal)
    with as_(store, settings, doctor) as c:
        assert_step_up(c.post(f"/fhir/Patient/{a}/$break-glass", json=REASON, headers=FHIR))
        assert c.get(f"/fhir/Patient/{a}").status_code == 404  # still no access
    assert not GrantStore(store.engine).in_force(doctor.agent_id, a, "break-glass", "0000")  # none, ever
    refused = audit_store.search(store.engine, audit_store.AuditFilter(agent=doctor.agent_id,
                                                                        interactions=("break-glass",)), 5)
    assert [r["status"] for r in refused] == [401]  # the refusal itself is audited


def test_break_glass_at_aal3_is_granted(store: Services, settings: Settings, world: World) -> None:
    a = world.ids["Patient:A"]
    with as_(store, settings, staff("TR2", "R8000", "ed.doctor", aal=3)) as c:
        assert c.post(f"/fhir/Patient/{a}/$break-glass", json=REASON, headers=FHIR).status_code == 201
        assert c.get(f"/fhir/Patient/{a}").status_code == 200


def test_the_role_is_checked_before_the_sign_in_and_the_reason_after_it(world: World, store: Services) -> None:
    """A role that may not break the glass is refused (403) whatever the sign-in; a strong enough
    sign-in with a blank reason is 400."""
    a = world.ids["Patient:A"]
    with pytest.raises(Forbidden):
        grants.grant(GrantStore(store.engine), staff("TR2", "R8009", "reception", aal=1), "break-glass", a,
                     "Patient at the desk", world.repo.clock())
    with pytest.raises(BadRequest):
        grants.grant(GrantStore(store.engine), staff("TR2", aal=3), "break-glass", a, "   ", world.repo.clock())


def test_a_declared_relationship_needs_no_step_up(store: Services, settings: Settings, world: World) -> None:
    """Only the emergency override asks for AAL3; declaring a relationship is an everyday act."""
    b = world.ids["Patient:B"]
    with as_(store, settings, staff("TR2", "R8000", "ward.doctor", aal=1)) as c:
        declared = c.post(f"/fhir/Patient/{b}/$declare-relationship", json=REASON, headers=FHIR)
    assert declared.status_code == 201, declared.text


def test_the_step_up_level_is_a_setting(store: Services, settings: Settings, world: World) -> None:
    a = world.ids["Patient:A"]
    lower = settings.model_copy(update={"step_up_aal": 2})
    with as_(store, lower, staff("TR2", "R8000", "ed.doctor", aal=2)) as c:
        assert c.post(f"/fhir/Patient/{a}/$break-glass", json=REASON, headers=FHIR).status_code == 201
    with as_(store, lower, staff("TR2", "R8000", "other.doctor", aal=1)) as c:
        assert_step_up(c.post(f"/fhir/Patient/{a}/$break-glass", json=REASON, headers=FHIR), level=2)


# -- care plans ------------------------------------------------------------------------------------------

def test_changing_a_care_plan_below_aal3_changes_nothing(store: Services, settings: Settings, world: World) -> None:
    a = world.ids["Patient:A"]
    weak, strong = staff("GP1", "R8000", "dr.ada", aal=2), staff("GP1", "R8000", "dr.ada", aal=3)
    with as_(store, settings, strong) as c:
        created = c.post("/fhir/CarePlan", json=plan(a), headers=FHIR)
        assert created.status_code == 201, created.text
        plan_id = created.json()["id"]
    with as_(store, settings, weak) as c:
        assert_step_up(c.post("/fhir/CarePlan", json=plan(a, "Second plan"), headers=FHIR))
        changed = plan(a, "Changed without a smartcard") | {"id": plan_id}
        assert_step_up(c.put(f"/fhir/CarePlan/{plan_id}", json=changed, headers=FHIR))
        assert_step_up(c.delete(f"/fhir/CarePlan/{plan_id}"))
        patch = [{"op": "replace", "path": "/status", "value": "revoked"}]
        assert_step_up(c.patch(f"/fhir/CarePlan/{plan_id}", json=patch,
                               headers={"Content-Type": "application/json-patch+json"}))
        assert_step_up(c.put(f"/fhir/CarePlan?_id={plan_id}", json=changed, headers=FHIR))  # conditional update
        assert_step_up(c.delete(f"/fhir/CarePlan?_id={plan_id}"))  # conditional delete
        assert_step_up(c.post("/fhir/CarePlan", json=plan(a, "Conditional"),
                              headers=FHIR | {"If-None-Exist": f"patient={a}"}))
        goal = {"resourceType": "Goal", "lifecycleStatus": "active", "description": {"text": "Comfort"},
                "subject": ref("Patient", a)}
        assert_step_up(c.post("/fhir/Goal", json=goal, headers=FHIR))
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": plan(a, "In a bundle"), "request": {"method": "POST", "url": "CarePlan"}}]}
        assert c.post("/fhir", json=bundle, headers=FHIR).status_code == 401
        # Reading is not changing: the plan is still there, as it was, at version 1.
        read = c.get(f"/fhir/CarePlan/{plan_id}")
        assert read.status_code == 200
        assert read.json()["title"] == "Ceiling of care agreed"
        assert read.json()["status"] == "active"
        assert read.json()["meta"]["versionId"] == "1"
        assert c.get(f"/fhir/CarePlan?patient={a}&_total=accurate").json()["total"] == 1
        assert c.get(f"/fhir/Goal?patient={a}&_total=accurate").json()["total"] == 0
        # Other records need no step-up.
        note = {"resourceType": "Observation", "status": "final", "code": {"text": "note"},
                "subject": ref("Patient", a)}
        assert c.post("/fhir/Observation", json=note, headers=FHIR).status_code != 401


def test_a_role_that_may_not_author_care_plans_is_refused_not_challenged(store: Services, settings: Settings,
                                                                         world: World) -> None:
    with as_(store, settings, staff("GP1", "R8003", "physio", aal=1)) as c:
        assert c.post("/fhir/CarePlan", json=plan(world.ids["Patient:A"]), headers=FHIR).status_code == 403


def test_source_systems_writing_care_plans_for_nobody_need_no_step_up(world: World) -> None:
    """A feed has no person to step up: its writes are governed by its registration alone."""
    world.write(Caller(kind="system", agent_id="client:gp1", organisation="GP1", scopes=("system/*.cruds",)),
                plan(world.ids["Patient:A"]))


# -- where the level comes from ---------------------------------------------------------------------------

@pytest.mark.parametrize(("claim", "level"), [
    ("AAL3_ANY", 3), ("AAL2_OR_ABOVE", 2), ("AAL2_ANY", 2), ("AAL1_USERPASS", 1), ("AAL3", 3), ("aal2", 2),
    ("3", 3), (2, 2), (None, None), ("", None), ("AAL4", None), ("AAL30", None), ("P9.Cp.Cd", None), (True, None),
    (0, None), ("urn:example:strong", None),
])
def test_assurance_claims_are_read_as_levels(claim: object, level: int | None) -> None:
    assert assurance.level(claim) == level


def test_a_system_states_the_assurance_of_the_person_it_acts_for(store: Services, settings: Settings,
                                                                 world: World) -> None:
    a = world.ids["Patient:A"]
    edis = Caller(kind="system", agent_id="client:tr2-edis", organisation="TR2", client_id="tr2-edis",
                  scopes=("system/*.cruds", "user/*.cruds"))
    doctor = {"X-On-Behalf-Of": "e.doctor", "X-On-Behalf-Of-Role": "R8000"}
    with as_(store, settings, edis) as c:
        assert_step_up(c.post(f"/fhir/Patient/{a}/$break-glass", json=REASON, headers=FHIR | doctor))
        bad = c.post(f"/fhir/Patient/{a}/$break-glass", json=REASON,
                     headers=FHIR | doctor | {"X-On-Behalf-Of-Assurance": "very strong"})
        assert bad.status_code == 400
        strong = c.post(f"/fhir/Patient/{a}/$break-glass", json=REASON,
                        headers=FHIR | doctor | {"X-On-Behalf-Of-Assurance": "AAL3_ANY"})
        assert strong.status_code == 201, strong.text


def test_an_app_asking_for_aal3_gets_no_code_from_a_password_sign_in(
        client: TestClient, store: Services, settings: Settings) -> None:
    """`acr_values` on the authorization request: a session signed in more weakly than asked is not
    turned into a code; the person is told to sign in with a stronger method."""

    app = register_client(OAuthStore(store.engine), "Care plan app", kind="app", redirect_uris=(REDIRECT,),
                          scope="user/*.cruds")[0]
    accounts.add(AccountStore(store.engine), "dr.who", "staff", PASSWORD, roles=(("RJ1", "R8000"),))
    _, challenge = pkce()
    url = authorize_url(app.client_id, challenge, "user/*.cruds", acr_values="AAL3_ANY")
    sign_in(client, "dr.who", url)
    refused = client.get(url, follow_redirects=False)
    assert refused.status_code == 401
    assert "stronger method" in refused.text
    plain = authorize_url(app.client_id, challenge, "user/*.cruds")
    assert code_from(client.get(plain, follow_redirects=False))  # without acr_values: a code as before

    strong_locals = settings.model_copy(update={"local_account_aal": 3})
    with TestClient(create_app(strong_locals, store), base_url="http://testserver") as web:
        sign_in(web, "dr.who", url)
        assert code_from(web.get(url, follow_redirects=False))


def test_require_names_the_action_and_level() -> None:
    weak = dataclasses.replace(staff("GP1"), aal=2)
    with pytest.raises(Unauthorized) as refused:
        assurance.require(weak, 3, "changing a CarePlan")
    assert "changing a CarePlan needs a stronger sign-in (AAL3" in str(refused.value)
    assurance.require(dataclasses.replace(weak, aal=3), 3, "changing a CarePlan")
    assurance.require(Caller(kind="system", agent_id="system:x"), 3, "changing a CarePlan")  # no person
