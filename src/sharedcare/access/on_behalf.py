"""A source organisation's system reading on behalf of a member of its staff, with the launch context
it opens the record in (issue 5, items 2 and 4).

A system client registered for an organisation (`sharedcare clients add --organisation ODS`) whose
registration includes `user/` scopes may send, with its own bearer token:

- `X-On-Behalf-Of`: the member of staff's user id at that organisation's system, and
  `X-On-Behalf-Of-Role`: their SDS job role code. The request then runs as that person: a `user`
  caller of the client's organisation in that role, with the client's `user/` scopes, so their role,
  relationships and every other rule apply, and the audit names them (and the client).
  `X-On-Behalf-Of-Assurance`: how strongly they signed in to that system (`AAL3`, or a CIS2 acr such
  as `AAL3_ANY`); without it they count as unassured, so they cannot break the glass or change a care
  plan (access/assurance.py).
- `X-Launch-Patient` (a Patient id) and `X-Launch-Context` (what the record is opened for, e.g. an
  ambulance incident number): the launch context asserts a relationship with that patient for this
  person (like a declared relationship, kind `launch`, for `LAUNCH` hours), recorded and audited once;
  their role must allow declaring relationships.

The organisation vouches for who its staff are, as NHS systems do for Spine; a client without an
organisation, or without `user/` scopes, may not act on anyone's behalf (403).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta

from sharedcare.access import assurance
from sharedcare.access.context import Caller
from sharedcare.access.roles import JOB_ROLES
from sharedcare.errors import BadRequest, Forbidden

USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,199}")
LAUNCH = timedelta(hours=12)
HEADERS = ("x-on-behalf-of", "x-on-behalf-of-role", "x-on-behalf-of-assurance", "x-launch-patient",
           "x-launch-context")


def acting_for(client: Caller, headers: Mapping[str, str]) -> Caller:
    """The caller of a request: the client itself, or the member of staff it acts for (headers above).
    Raises BadRequest for malformed headers and Forbidden for a client that may not act for staff."""
    user = headers.get("x-on-behalf-of")
    if user is None:
        if any(h in headers for h in HEADERS):
            raise BadRequest("X-On-Behalf-Of-Role and a launch context need X-On-Behalf-Of")
        return client
    if client.kind != "system" or client.organisation is None:
        raise Forbidden("only a source organisation's system may act on behalf of its staff")
    user_scopes = tuple(s for s in client.scopes if s.startswith("user/"))
    if not user_scopes:
        raise Forbidden("this client is not registered to act on behalf of staff (no user/ scopes)")
    if not USER_ID.fullmatch(user):
        raise BadRequest("X-On-Behalf-Of is a user id: letters, digits, '.', '_', '@', ':' or '-'")
    role = headers.get("x-on-behalf-of-role", "")
    if role not in JOB_ROLES:
        raise BadRequest("X-On-Behalf-Of-Role must be an SDS job role code (e.g. R8003)")
    stated = headers.get("x-on-behalf-of-assurance")
    aal = assurance.level(stated) if stated is not None else None
    if stated is not None and aal is None:
        raise BadRequest("X-On-Behalf-Of-Assurance is an assurance level: AAL1, AAL2 or AAL3 (or a CIS2 acr)")
    return replace(client, kind="user", agent_id=f"{client.agent_id}/user:{user}", role=role,
                   on_behalf_of=user, scopes=user_scopes, aal=aal)


def launch(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """(patient id, context) of a launch context, or None; BadRequest when half given or malformed."""
    patient, context = headers.get("x-launch-patient"), headers.get("x-launch-context")
    if patient is None and context is None:
        return None
    if not patient or not context:
        raise BadRequest("a launch context needs both X-Launch-Patient and X-Launch-Context")
    if not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", patient):
        raise BadRequest("X-Launch-Patient is a Patient id")
    text = " ".join(context.split())
    if not 3 <= len(text) <= 200:
        raise BadRequest("X-Launch-Context is 3 to 200 characters (e.g. the incident number)")
    return patient, text
