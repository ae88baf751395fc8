"""One typed Settings object, read from `SHAREDCARE_*` environment variables once.

Every setting is documented in docs/configuration.md (a test keeps the two in step).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
OIDCAuthMethod = Literal["private_key_jwt", "client_secret_basic", "client_secret_post"]


def _default_database_url() -> str:
    return f"sqlite:///{PROJECT_ROOT / 'var' / 'sharedcare.db'}"


class Settings(BaseSettings):
    """Configuration of one sharedcare node."""

    model_config = SettingsConfigDict(env_prefix="SHAREDCARE_", extra="ignore", frozen=True)

    database_url: str = Field(
        default_factory=_default_database_url,
        description="SQLAlchemy URL of the store: sqlite:///path (embedded default, a file under var/) "
        "or postgresql+psycopg://user:password@host:port/db.",
    )
    base_url: str = Field(
        default="http://127.0.0.1:8000/fhir",
        description="The public base URL of the FHIR API, used in Location headers, links and fullUrls.",
    )
    pds_sandbox_people: Path | None = Field(
        default=None,
        description="A synthetic London's truth/people.csv: serve a PDS-compatible sandbox of those people at "
        "/pds/FHIR/R4 (open, like NHS England's own sandbox). For the demo and tests only: never set it where "
        "real people's records are served.",
    )
    pds_url: str | None = Field(
        default=None,
        description="Base URL of the NHS Personal Demographics Service FHIR API (ending /FHIR/R4) that "
        "`sharedcare mpi trace` checks the patient index's records against. The demo points it at its own "
        "sandbox.",
    )
    pds_token: str | None = Field(default=None, description="A bearer token for the PDS FHIR API, when it needs one.")
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, description="Largest request body accepted; larger bodies get 413."
    )
    max_import_bytes: int = Field(
        default=512 * 1024 * 1024,
        description="Largest NDJSON body accepted by $import (held in memory while it is stored); larger get 413.")
    max_bundle_entries: int = Field(
        default=10_000, description="Most entries accepted in one batch or transaction bundle."
    )
    default_page_size: int = Field(default=20, description="Search/history page size when _count is absent.")
    max_page_size: int = Field(default=1000, description="_count above this is reduced to it.")
    group_commit_ms: float = Field(
        default=1.0,
        description="How long (milliseconds) the group commit lingers for more work while under load (the "
        "previous batch held more than one job); a lone request is committed at once. 0 never lingers.",
    )
    db_pool_size: int | None = Field(
        default=None, ge=1,
        description="Database connections each server process keeps open (up to 32 more are opened in "
        "bursts). Unset: 48 on PostgreSQL, enough for every thread that can use one at once (40 request "
        "threads, the committer, a few more), since a smaller pool closes and reopens connections under "
        "load (token searches at 32 concurrent clients: 209-236/s with 8 kept, 304-332/s with 40); 8 on "
        "SQLite, where opening is cheap and a larger pool measured no faster. PostgreSQL's max_connections "
        "must allow (this + 32) per process.",
    )
    log_level: str = Field(default="INFO", description="Log level: DEBUG, INFO, WARNING or ERROR.")
    node_id: str = Field(default="local", description="Name of this node (one per integrated care system).")
    gc_freeze: bool = Field(
        default=True,
        description="After start-up, move what it allocated (the FHIR definitions, the validator's and "
        "extractors' tables) out of the garbage collector's full scans, which otherwise pause the process "
        "for tens of milliseconds. Tests turn it off.",
    )
    sensitive_codes_file: Path | None = Field(
        default=None,
        description="A JSON file of sensitive code sets (the shape of the packaged default, described in "
        "docs/sensitive-codes.md) used instead of the default; items coded from them never cross organisations.",
    )
    break_glass_minutes: int = Field(
        default=240, ge=5, le=24 * 60,
        description="How long a break-glass grant lasts (one patient, one member of staff), in minutes.",
    )
    declared_relationship_days: int = Field(
        default=7, ge=1, le=90, description="How long a declared (self-claimed) relationship lasts, in days."
    )
    housekeeping_seconds: float = Field(
        default=60.0, gt=0,
        description="How often the server ends access grants whose time is up (auditing each) and drops "
        "expired tokens, codes and sessions, in seconds.",
    )
    alert_unusual_patients: int = Field(
        default=100, ge=1,
        description="Privacy alerts: a member of staff who looks at more different patients than this within "
        "the window a privacy officer asks about is listed as an unusual volume.",
    )
    access_token_seconds: int = Field(
        default=900, ge=60, le=86_400, description="Lifetime of an issued access token, in seconds."
    )
    refresh_token_seconds: int = Field(
        default=8 * 3600, ge=60,
        description="Lifetime of a refresh token family from sign-in, in seconds (rotation keeps the end).",
    )
    session_seconds: int = Field(default=8 * 3600, ge=60, description="Lifetime of a web sign-in session, in seconds.")
    step_up_aal: int = Field(
        default=3, ge=1, le=3,
        description="Authentication assurance level (AAL) a member of staff needs to break the glass or change a "
        "care plan (CarePlan, Goal, Consent); below it the answer is 401 asking for a stronger sign-in (AN3).",
    )
    local_account_aal: int = Field(
        default=1, ge=1, le=3,
        description="Assurance level a sign-in with a local account counts as (a password alone is AAL1).",
    )
    auth_failures_per_minute: int = Field(
        default=20, ge=1,
        description="Failed sign-ins or token requests allowed per minute per client address and per "
        "username or client id (in memory, per process); beyond it 429 with Retry-After.",
    )

    # Ingestion (ingest/; docs/ingest.md).
    mllp_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="Port of the HL7 v2 MLLP listener that `sharedcare serve` starts beside the web app "
        "(unset: none; `sharedcare mllp` runs one on its own).",
    )
    mllp_host: str = Field(default="127.0.0.1", description="Address the MLLP listener listens on.")
    mllp_tls_cert: Path | None = Field(
        default=None, description="The MLLP listener's TLS certificate chain (PEM). With the key and client CA, "
        "feeds must connect over TLS with a client certificate, which is bound to their source.",
    )
    mllp_tls_key: Path | None = Field(default=None, description="The private key (PEM) of the MLLP listener's "
                                      "certificate.")
    mllp_tls_client_ca: Path | None = Field(
        default=None, description="CA certificates (PEM) that the feeds' client certificates must chain to.",
    )
    mllp_allow_plain_loopback: bool = Field(
        default=False,
        description="Development and tests only: accept MLLP without TLS from loopback addresses. Refused when "
        "the listener listens beyond loopback.",
    )
    auto_register_sources: bool = Field(
        default=False,
        description="Development and tests only: register an unknown sending facility on first contact, "
        "flagged for an administrator's review (`sharedcare sources list`). Refused when the listener "
        "listens beyond loopback.",
    )
    inbox_retry_seconds: tuple[float, ...] = Field(
        default=(2.0, 10.0, 60.0),
        description="Waits before each retry of a message whose processing failed (JSON list, e.g. [2, 10, "
        "60]: three retries); after the last the message becomes a dead letter.",
    )
    max_mllp_message_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024,
        description="Largest HL7 v2 message accepted over MLLP; a connection sending a larger frame is closed.",
    )
    drop_dir: Path | None = Field(
        default=None,
        description="The drop folder for file feeds: <dir>/<source-id>/ is one registered source's folder, "
        "watched by `sharedcare watch` and by `sharedcare serve` (unset: none watched).",
    )
    inbox_worker: bool = Field(
        default=True,
        description="`sharedcare serve` processes the inbox ($import, the MLLP listener's and the drop folder's "
        "messages) in its own process; off when `sharedcare inbox work` runs elsewhere.",
    )
    drop_poll_seconds: float = Field(
        default=2.0, gt=0,
        description="How often the drop folder is scanned; a file is taken once two scans in a row find it "
        "the same size and modification time.",
    )

    # Sign-in through external OpenID Connect identity providers (access/oidc.py): `staff` like NHS CIS2,
    # `patient` like NHS login. A provider is offered only when its issuer and client id are both set.
    staff_oidc_issuer: str | None = Field(
        default=None,
        description="Issuer URL of the staff identity provider (like NHS CIS2); its discovery document is read "
        "from <issuer>/.well-known/openid-configuration. https, or http only on a loopback address.",
    )
    staff_oidc_client_id: str | None = Field(default=None, description="This node's client id at the staff provider.")
    staff_oidc_client_secret: SecretStr | None = Field(
        default=None, description="Client secret at the staff provider (client_secret_basic or client_secret_post).",
    )
    staff_oidc_private_key_file: Path | None = Field(
        default=None,
        description="A private key (PEM, or a JWK in JSON) this node signs private_key_jwt client assertions with "
        "at the staff provider's token endpoint.",
    )
    staff_oidc_auth_method: OIDCAuthMethod | None = Field(
        default=None,
        description="How the node authenticates to the staff provider's token endpoint. Unset: private_key_jwt "
        "when a private key file is set, else client_secret_basic.",
    )
    staff_oidc_scopes: str = Field(
        default="openid profile nationalrbacaccess",
        description="Scopes asked of the staff provider (CIS2: nationalrbacaccess gives nhsid_nrbac_roles; "
        "selectedrole makes CIS2 ask for the role and send selected_roleid).",
    )
    staff_oidc_acr_values: str | None = Field(
        default=None,
        description="acr_values asked of the staff provider (CIS2: e.g. AAL3_ANY); when set, an ID token whose acr "
        "is not one of them is refused.",
    )
    patient_oidc_issuer: str | None = Field(
        default=None, description="Issuer URL of the patient identity provider (like NHS login).",
    )
    patient_oidc_client_id: str | None = Field(
        default=None, description="This node's client id at the patient provider.",
    )
    patient_oidc_client_secret: SecretStr | None = Field(
        default=None, description="Client secret at the patient provider (NHS login uses private_key_jwt instead).",
    )
    patient_oidc_private_key_file: Path | None = Field(
        default=None, description="A private key (PEM, or a JWK in JSON) for private_key_jwt at the patient provider.",
    )
    patient_oidc_auth_method: OIDCAuthMethod | None = Field(
        default=None, description="Token endpoint authentication at the patient provider (as for staff).",
    )
    patient_oidc_scopes: str = Field(
        default="openid profile",
        description="Scopes asked of the patient provider (NHS login: profile gives nhs_number and "
        "identity_proofing_level).",
    )
    patient_oidc_vtr: str | None = Field(
        default='["P9.Cp.Cd", "P9.Cp.Ck", "P9.Cm"]',
        description="Vectors of trust (vtr) asked of the patient provider (NHS login); empty to send none.",
    )
    oidc_timeout_seconds: float = Field(
        default=10.0, gt=0, le=60,
        description="How long a request to an identity provider may take before sign-in fails closed (503).",
    )


@cache
def get_settings() -> Settings:
    return Settings()
