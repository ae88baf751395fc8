"""How strongly a member of staff proved who they are, and the actions that need more (security case AN3).

Each staff sign-in carries an authentication assurance level (AAL, as in NIST SP 800-63B, which NHS
CIS2 reports as `acr`: `AAL3_ANY` for a smartcard or other hardware authenticator, `AAL2_...`,
`AAL1_USERPASS`). The caller context keeps it as a number (`Caller.aal`), so it travels with the
session into every token issued from it. Local accounts count as `local_account_aal` (a password
alone is AAL1); a source system acting for its staff states the level its user signed in with in
`X-On-Behalf-Of-Assurance`.

Breaking the glass and changing a care plan (CarePlan, Goal, Consent) need `step_up_aal` (AAL3 by
default). A caller below it gets 401 with the challenge of RFC 9470 (OAuth 2.0 step-up authentication):
`error="insufficient_user_authentication"` and the `acr_values` to ask for when signing in again.
Nothing is changed or granted. Systems acting for nobody have no person to step up and are unaffected.
"""

from __future__ import annotations

import re

from sharedcare.access.context import Caller
from sharedcare.access.policy import CARE_PLAN_TYPES
from sharedcare.errors import Unauthorized

DEFAULT_STEP_UP = 3
_LEVEL = re.compile(r"(?:AAL|aal)([1-3])(?![0-9])")
# Changes to these need step-up: the universal care plan is one record every service acts on.
STEP_UP_TYPES = CARE_PLAN_TYPES


def level(assurance: object) -> int | None:
    """The AAL (1-3) an assurance claim states: a CIS2 `acr` (`AAL3_ANY`), `AAL2`, or a bare number
    (CIS2's `authentication_assurance_level`); None when it states none."""
    if isinstance(assurance, bool):
        return None
    if isinstance(assurance, int):
        return assurance if 1 <= assurance <= 3 else None
    if not isinstance(assurance, str):
        return None
    text = assurance.strip()
    if text in ("1", "2", "3"):
        return int(text)
    found = _LEVEL.match(text)
    return int(found.group(1)) if found else None


def acr_values(required: int) -> str:
    """The CIS2 acr value to ask for to reach `required`."""
    return "AAL3_ANY" if required >= 3 else f"AAL{required}_OR_ABOVE"


def challenge(required: int, action: str) -> Unauthorized:
    """The 401 that tells the client to sign the person in again at `required` (RFC 9470)."""
    description = f"{action} needs a stronger sign-in (AAL{required}, such as a smartcard)"
    header = (f'Bearer realm="sharedcare", error="insufficient_user_authentication", '
              f'error_description="{description}", acr_values="{acr_values(required)}"')
    return Unauthorized(f"{description}: sign in again with one", headers={"WWW-Authenticate": header})


def require(caller: Caller, required: int, action: str) -> None:
    """Refuse (401, step-up challenge) a person whose sign-in is below `required`."""
    if caller.kind == "user" and (caller.aal or 0) < required:
        raise challenge(required, action)
