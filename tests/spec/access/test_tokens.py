"""Bearer tokens (issue 5): a live access token gives back exactly the Caller it was issued for;
anything else is 401 with a Bearer challenge, and revocation takes effect at once. Failed sign-ins
and token requests are limited per address and per name."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from sharedcare.access.context import Caller
from sharedcare.access.ratelimit import RateLimiter, key
from sharedcare.access.tokens import TokenService, digest
from sharedcare.app import Services
from sharedcare.errors import Unauthorized
from sharedcare.settings import Settings
from sharedcare.storage.oauth import OAuthStore
from sharedcare.storage.tables import oauth_token

NURSE = Caller(kind="user", agent_id="user:nurse", role="R8001", organisation="RJ1", scopes=("user/*.rs",),
               client_id="app-1")


@pytest.fixture
def tokens(store: Services, settings: Settings) -> TokenService:
    return TokenService(OAuthStore(store.engine), settings)


def challenge(tokens: TokenService, header: str | None) -> str:
    with pytest.raises(Unauthorized) as refused:
        tokens.authenticate(header)
    assert refused.value.status == 401
    return refused.value.headers["WWW-Authenticate"]


def test_a_live_token_gives_back_the_caller_it_was_issued_for(tokens: TokenService) -> None:
    token = tokens.issue_for(NURSE, "app-1", "user/*.rs")
    assert tokens.authenticate(f"Bearer {token}") == NURSE
    assert tokens.authenticate(f"bearer  {token} ") == NURSE  # the scheme is case-insensitive


def test_only_the_hash_of_a_token_is_stored(store: Services, tokens: TokenService) -> None:
    token = tokens.issue_for(NURSE, "app-1", "user/*.rs")
    with store.engine.connect() as conn:
        stored = conn.execute(select(oauth_token.c.token_hash)).scalars().all()
    assert stored == [digest(token)]
    assert token not in stored


def test_no_token_is_a_plain_bearer_challenge(tokens: TokenService) -> None:
    assert challenge(tokens, None) == 'Bearer realm="sharedcare"'
    assert challenge(tokens, "") == 'Bearer realm="sharedcare"'
    assert challenge(tokens, "Basic dXNlcjpwYXNz") == 'Bearer realm="sharedcare"'


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer a b", "Bearer <script>", "Bearer " + "a" * 600])
def test_a_malformed_bearer_token_is_invalid(tokens: TokenService, header: str) -> None:
    assert challenge(tokens, header) == 'Bearer realm="sharedcare", error="invalid_token"'


def test_an_unknown_token_is_invalid(tokens: TokenService) -> None:
    tokens.issue_for(NURSE, "app-1", "user/*.rs")
    assert challenge(tokens, "Bearer not-a-token-we-issued") == 'Bearer realm="sharedcare", error="invalid_token"'


def test_an_expired_token_is_invalid(store: Services, tokens: TokenService) -> None:
    token = tokens.issue_for(NURSE, "app-1", "user/*.rs")
    with store.engine.begin() as conn:
        conn.execute(update(oauth_token).values(expires="2020-01-01T00:00:00.000000+00:00"))
    assert challenge(tokens, f"Bearer {token}").endswith('error="invalid_token"')


def test_a_revoked_token_stops_working_at_once(store: Services, tokens: TokenService) -> None:
    token = tokens.issue_for(NURSE, "app-1", "user/*.rs")
    assert tokens.authenticate(f"Bearer {token}") == NURSE
    OAuthStore(store.engine).revoke_token(digest(token))
    assert challenge(tokens, f"Bearer {token}").endswith('error="invalid_token"')


def test_a_refresh_token_is_not_an_access_token(tokens: TokenService) -> None:
    issued = tokens.issue(NURSE, "app-1", "user/*.rs offline_access", refresh=True)
    assert issued.refresh_token is not None
    assert tokens.authenticate(f"Bearer {issued.access_token}") == NURSE
    assert challenge(tokens, f"Bearer {issued.refresh_token}").endswith('error="invalid_token"')


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_failures_beyond_the_limit_are_refused_until_the_minute_passes() -> None:
    clock = Clock()
    limiter = RateLimiter(3, clock=clock)
    ip, user = key("ip", "203.0.113.9"), key("user", "sam")
    for _ in range(3):
        assert limiter.retry_after(ip, user) is None
        limiter.failed(ip, user)
        clock.t += 1
    assert limiter.retry_after(ip, user) == 57  # at 1003: the first failure (1000) leaves the window at 1060
    assert limiter.retry_after(key("ip", "203.0.113.10"), key("user", "kim")) is None  # others are untouched
    clock.t = 1060.5
    assert limiter.retry_after(ip, user) is None


def test_a_limit_on_one_key_refuses_whatever_the_other_key() -> None:
    limiter = RateLimiter(2, clock=Clock())
    ip = key("ip", "203.0.113.9")
    limiter.failed(ip, key("user", "a"))
    limiter.failed(ip, key("user", "b"))
    assert limiter.retry_after(ip, key("user", "c")) is not None  # one address trying many names
    assert limiter.retry_after(key("ip", "198.51.100.1"), key("user", "a")) is None


def test_counter_keys_do_not_hold_the_names_themselves() -> None:
    assert "sam" not in key("user", "sam")
    assert key("user", "sam").startswith("user:")
