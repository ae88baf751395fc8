"""Schemathesis against the OpenAPI document of the routes outside the FHIR API (issue 5): sign-in,
tokens, revocation, discovery, health. Generated requests, valid and not, must never make a server
error, and every answer must be one the document lists (status, content type, headers, schema).

The app runs on each backend's store, with a local account and a client registered so that generated
requests can reach past the first checks.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis import Case, checks

from sharedcare.access import accounts
from sharedcare.access.oauth import register_client
from sharedcare.app import Services, create_app
from sharedcare.settings import Settings
from sharedcare.storage.accounts import AccountStore
from sharedcare.storage.oauth import OAuthStore
from sharedcare.web.openapi import ROUTES

pytestmark = pytest.mark.slow
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_headers_conformance, checks.response_schema_conformance]


def test_the_non_fhir_routes_never_fail_and_answer_as_documented(store: Services, settings: Settings) -> None:
    accounts.add(AccountStore(store.engine), "schemathesis", "staff", "a long enough password",
                 roles=(("GP1", "R8000"),))
    register_client(OAuthStore(store.engine), "schemathesis", scope="system/*.rs")
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(settings, store))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(o.method.upper(), o.path) for o in operations} == set(ROUTES)  # every route outside /fhir

    for operation in operations:
        @given(case=operation.as_strategy())
        @hypothesis_settings(max_examples=25, deadline=None, database=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
        def check(case: Case) -> None:
            # OAuth and sign-in refuse many well-formed requests by design (an unknown client, a wrong
            # password, a missing CSRF token), so acceptance of schema-valid data is not checked.
            case.call_and_validate(checks=CHECKS)
        check()
