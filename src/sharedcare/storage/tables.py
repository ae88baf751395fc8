"""The schema: current and history tables, search indexes, compartments, audit.

Resources are stored as the JSON bytes we serve (after validation and server-set meta), never
re-serialised on the read path. Every row carries a `partition_key`: the resource's home patient
compartment (the patient id) or `SHARED_PARTITION` for resources outside any patient compartment, so
PostgreSQL can partition by it later without a redesign.

Search index tables hold one row per extracted value of the *current* version; they are rewritten in
the same transaction as the resource. Schema changes go through Alembic (storage/migrations).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

SHARED_PARTITION = "_shared"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TYPE = 64  # longest resource type name is 33 characters
ID = 64  # FHIR ids are at most 64 characters

resource = Table(
    "resource",
    metadata,
    Column("res_type", String(TYPE), nullable=False),
    Column("res_id", String(ID), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", String(32), nullable=False),  # UTC, fixed width, sortable
    Column("created_seq", BigInteger, nullable=False),  # history seq of version 1: stable search order
    Column("partition_key", String(ID), nullable=False),
    Column("source", Text),
    Column("security", Text),  # space-separated security label codes (computed at write by access/labels)
    Column("deleted", Boolean, nullable=False, default=False),
    Column("data", LargeBinary),  # JSON bytes as served; NULL once deleted
    Column("source_org", String(32)),  # ODS code of the organisation whose system wrote it (server-set)
    PrimaryKeyConstraint("res_type", "res_id"),
    # Unique: search pages join index rows to their resources by created_seq (migration 0013).
    Index("ix_resource_type_created", "res_type", "created_seq", unique=True),
    Index("ix_resource_type_updated", "res_type", "last_updated"),
)

resource_history = Table(
    "resource_history",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("res_type", String(TYPE), nullable=False),
    Column("res_id", String(ID), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", String(32), nullable=False),
    Column("method", String(8), nullable=False),  # POST, PUT, PATCH, DELETE
    Column("partition_key", String(ID), nullable=False),
    Column("source", Text),
    Column("security", Text),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("data", LargeBinary),
    Column("author", Text),  # who wrote this version (the caller's agent id)
    Column("source_org", String(32)),
    UniqueConstraint("res_type", "res_id", "version_id", name="uq_history_version"),
    Index("ix_history_type_seq", "res_type", "seq"),
)

compartment = Table(
    "compartment",
    metadata,
    Column("res_type", String(TYPE), nullable=False),
    Column("res_id", String(ID), nullable=False),
    Column("patient_id", String(ID), nullable=False),
    PrimaryKeyConstraint("res_type", "res_id", "patient_id"),
    Index("ix_compartment_patient", "patient_id", "res_type"),
)


def _index_table(name: str, *columns: Column[object], lookup: tuple[str, ...],
                 per_resource: tuple[str, ...] = (), carried: tuple[str, ...] = (),
                 pg_ops: dict[str, str] | None = None) -> Table:
    """An index table. `created_seq` copies the resource's (its last column), so a lookup by value
    returns matches already in search order: the first page of `code=X` reads the first entries of
    the lookup index, however many resources match. `carried` columns follow `created_seq` in the
    lookup index: a criterion on them (a token's system) is tested in the index, not on each row."""
    table = Table(
        name,
        metadata,
        Column("res_type", String(TYPE), nullable=False),
        Column("res_id", String(ID), nullable=False),
        Column("param", String(100), nullable=False),
        *columns,
        Column("created_seq", BigInteger),
    )
    # A resource's rows (rewriting them, and testing a criterion on one resource); `per_resource` adds
    # columns so that the test reads the index alone.
    Index(f"ix_{name}_resource", table.c.res_type, table.c.res_id, *(table.c[c] for c in per_resource))
    Index(f"ix_{name}_lookup", table.c.res_type, table.c.param, *(table.c[c] for c in lookup), table.c.created_seq,
          *(table.c[c] for c in carried), postgresql_ops=pg_ops or {})
    return table


idx_token = _index_table(
    "idx_token",
    Column("system", Text),
    Column("code", Text),
    Column("text", Text),
    Column("type_system", Text),
    Column("type_code", Text),
    lookup=("code",),
    per_resource=("param", "code", "system"),
    carried=("system",),  # `system|code`, the usual form, reads the index alone (migration 0012)
)
# On PostgreSQL the lookup orders `value` by character (text_pattern_ops), so LIKE prefixes use it
# (migration 0010); SQLite finds prefixes by range (dialects.prefix_bounds).
idx_string = _index_table("idx_string", Column("value", Text, nullable=False), Column("exact", Text),
                          lookup=("value",), pg_ops={"value": "text_pattern_ops"})
# A date row's `bucket` says where a window search (e.g. `date=ge2020-04&date=lt2020-05`) finds it:
# the month of its range ("2020-04") when the range starts and ends in that month and is the
# resource's only value for the parameter; LONG_DATES when it crosses a month boundary (periods,
# open ends); SEVERAL_DATES when the resource has more than one value for the parameter (then two
# criteria can be met by different values, so no single row bounds the window).
LONG_DATES = "L"
SEVERAL_DATES = "M"
idx_date = _index_table("idx_date", Column("low", String(32), nullable=False),
                        Column("high", String(32), nullable=False), Column("bucket", String(8)),
                        lookup=("low", "high"))
# Dates are found from either end: "on or after" by the end of each value's range, "before" by its start.
Index("ix_idx_date_high", idx_date.c.res_type, idx_date.c.param, idx_date.c.high)
# ... and windows month by month, each month's rows in search order (a merge of a few index ranges).
Index("ix_idx_date_window", idx_date.c.res_type, idx_date.c.param, idx_date.c.bucket, idx_date.c.created_seq,
      idx_date.c.low, idx_date.c.high)


def date_bucket(low: str, high: str, several: bool) -> str:
    """The `bucket` of a date row (see idx_date)."""
    if several:
        return SEVERAL_DATES
    return low[:7] if low[:7] == high[:7] else LONG_DATES


idx_number = _index_table("idx_number", Column("value", Numeric(asdecimal=True), nullable=False),
                          lookup=("value",))
idx_quantity = _index_table(
    "idx_quantity",
    Column("value", Numeric(asdecimal=True), nullable=False),
    Column("system", Text),
    Column("code", Text),
    Column("unit", Text),
    lookup=("code", "value"),
)
idx_reference = _index_table(
    "idx_reference",
    Column("target_type", String(TYPE)),
    Column("target_id", String(ID)),
    Column("version", String(ID)),
    Column("url", Text),  # absolute references (keyed: storage/keys.py)
    lookup=("target_id",),
    carried=("target_type", "url"),  # a chain tests each reference's type and locality in the index
)
idx_uri = _index_table("idx_uri", Column("value", Text, nullable=False), lookup=("value",))
# Composite parameters (e.g. Observation code-value-quantity): one row per combination of component
# values taken from the same element; columns as in fhir.search.extract.CompositeValue.
idx_composite = _index_table(
    "idx_composite",
    Column("system1", Text),
    Column("code1", Text),
    Column("system2", Text),
    Column("code2", Text),
    Column("text2", Text),
    Column("number2", Numeric(asdecimal=True)),
    Column("low2", String(32)),
    Column("high2", String(32)),
    Column("number3", Numeric(asdecimal=True)),
    lookup=("code1",),
)

INDEX_TABLES = (idx_token, idx_string, idx_date, idx_number, idx_quantity, idx_reference, idx_uri, idx_composite)

audit = Table(
    "audit",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("recorded", String(32), nullable=False),
    Column("partition_key", String(ID), nullable=False),
    Column("interaction", String(32), nullable=False),  # read, vread, search-type, create, ...
    Column("action", String(1), nullable=False),  # AuditEvent.action: C R U D E
    Column("outcome", String(2), nullable=False),  # AuditEvent.outcome: 0 4 8 12
    Column("status", Integer, nullable=False),  # HTTP status returned
    Column("agent_kind", String(16), nullable=False),
    Column("agent_id", Text, nullable=False),
    Column("agent_role", Text),
    Column("agent_org", Text),
    Column("purpose", String(32)),
    Column("on_behalf_of", Text),
    Column("res_type", String(TYPE)),
    Column("res_id", String(ID)),
    Column("version_id", Integer),
    Column("patients", Text),  # space-separated patient ids whose compartment was touched
    Column("query", Text),
    Column("source_ip", String(64)),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("chain", String(16)),  # the lane whose hash chain the record is in (None: before 0019, its patient's)
    Index("ix_audit_partition", "partition_key", "seq"),
    Index("ix_audit_agent", "agent_id", "seq"),
)

# Every patient an audit record names besides its home partition (a search that showed several
# patients), so "who looked at this patient" is an index lookup, not a scan of `patients`. Written by
# housekeeping behind the trail (up to the seq kept in node_setting `audit_patient_indexed`); newer
# records are found by scanning that short tail (storage/audit_store.py).
audit_patient = Table(
    "audit_patient",
    metadata,
    Column("patient_id", String(ID), nullable=False),
    Column("seq", BigInteger, nullable=False),
    PrimaryKeyConstraint("patient_id", "seq"),
)

# The head of each hash chain (lanes `~lane:NN`; before migration 0019, one per patient), locked by
# the transaction appending to it so a chain never forks (storage/audit_store.py).
audit_chain = Table(
    "audit_chain",
    metadata,
    Column("partition_key", String(ID), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
    Column("last_hash", String(64), nullable=False),
)

# The ordered matches of a sorted search that spans several pages, kept for its paging links: sort
# keys can change under updates, so later pages read positions in this list instead of re-sorting
# (no match skipped or repeated while others write). Rows expire a day after they were made.
search_result = Table(
    "search_result",
    metadata,
    Column("search_id", String(36), nullable=False),
    Column("pos", Integer, nullable=False),
    Column("res_type", String(TYPE), nullable=False),
    Column("res_id", String(ID), nullable=False),
    Column("created", String(32), nullable=False),
    PrimaryKeyConstraint("search_id", "pos"),
    Index("ix_search_result_created", "created"),
)

# Small key/value facts about this node (e.g. the signing key for paging cursors).
node_setting = Table(
    "node_setting",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# Local sign-in accounts: the embedded default and the demo (production staff and patients sign in
# through their identity providers). The password is kept only as an argon2id hash.
account = Table(
    "account",
    metadata,
    Column("username", String(200), primary_key=True),
    Column("kind", String(16), nullable=False),  # staff, patient
    Column("password_hash", Text, nullable=False),
    Column("nhs_number", String(10)),  # a patient's own record
    Column("created", String(32), nullable=False),
    Column("disabled", Boolean, nullable=False),
)

# A staff account's role profiles: a National RBAC job role (SDS code) held at an organisation (ODS).
account_role = Table(
    "account_role",
    metadata,
    Column("username", String(200), nullable=False),
    Column("organisation", String(32), nullable=False),
    Column("job_role", String(16), nullable=False),
    PrimaryKeyConstraint("username", "organisation", "job_role"),
)


# Legitimate relationships (access/relationships.py), rewritten with the resource that gives them, in
# the same transaction: the policy joins on them inside every query. `organisation` is an ODS code,
# resolved at write time from the referenced Organization (or "Organization/<id>" until it is loaded).
relationship = Table(
    "relationship",
    metadata,
    Column("res_type", String(TYPE), nullable=False),  # the resource that gives the relationship
    Column("res_id", String(ID), nullable=False),
    Column("patient_id", String(ID), nullable=False),
    Column("organisation", String(80), nullable=False),
    Column("kind", String(16), nullable=False),  # registered, encounter, urgent-care, episode, referral, appointment
    Column("until", String(32)),  # UTC, fixed width like last_updated; NULL while the record stays as it is
    PrimaryKeyConstraint("res_type", "res_id", "patient_id", "organisation", "kind"),
    Index("ix_relationship_patient", "patient_id", "organisation", "until"),
    Index("ix_relationship_organisation", "organisation"),
)

# What a person asked or a source stated about sharing, derived at write time from the resources that
# say it: an objection (an active deny Consent) or a restricted address (a Patient labelled R, like a
# PDS S-flag). Rewritten with the stating resource, in the same transaction.
restriction = Table(
    "restriction",
    metadata,
    Column("res_type", String(TYPE), nullable=False),  # the resource that states it
    Column("res_id", String(ID), nullable=False),
    Column("patient_id", String(ID), nullable=False),
    Column("kind", String(24), nullable=False),  # objection, restricted-address
    PrimaryKeyConstraint("patient_id", "kind", "res_type", "res_id"),
    Index("ix_restriction_resource", "res_type", "res_id"),
)

# Access one member of staff asserted about one patient: a declared relationship or break-glass, each
# with a reason and an end; audited and alerted to privacy officers.
access_grant = Table(
    "access_grant",
    metadata,
    Column("grant_id", String(36), primary_key=True),
    Column("kind", String(16), nullable=False),  # declared, break-glass
    Column("agent_id", Text, nullable=False),
    Column("organisation", String(32), nullable=False),
    Column("role", String(16), nullable=False),
    Column("patient_id", String(ID), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created", String(32), nullable=False),
    Column("until", String(32), nullable=False),
    Column("ended", String(32)),  # set when ended early or when its expiry was audited
    Index("ix_access_grant_agent", "agent_id", "patient_id", "until"),
    Index("ix_access_grant_created", "created"),
)

# Who a member of staff is as a person (from the organisation's HR or identity records), so privacy
# officers are alerted when staff look at their own record or a family member's (issue 5 item 9).
# Kept normalised: NHS number digits, family name as letters only in lower case, postcode without spaces.
staff_person = Table(
    "staff_person",
    metadata,
    Column("agent_id", String(400), primary_key=True),  # as in the audit trail: user:<name>, cis2:<sub>
    Column("nhs_number", String(10)),
    Column("family_name", String(200)),
    Column("postcode", String(16)),
    Column("updated", String(32), nullable=False),
)

# SMART on FHIR clients: backend systems (client credentials) and apps (authorization code + PKCE).
# A client secret is kept only as its SHA-256 (secrets are 256 random bits, so a slow hash adds nothing).
oauth_client = Table(
    "oauth_client",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("kind", String(16), nullable=False),  # system, app
    Column("auth_method", String(32), nullable=False),  # client_secret_basic/_post, private_key_jwt, none
    Column("secret_hash", String(64)),
    Column("jwks", Text),  # a private_key_jwt client's public keys (JWKS JSON)
    Column("redirect_uris", Text),  # space-separated, for apps
    Column("scope", Text, nullable=False),  # the most this client may be granted
    Column("organisation", String(32)),  # a source organisation's system writes only as that source
    Column("created", String(32), nullable=False),
    Column("disabled", Boolean, nullable=False),
)

# Issued tokens, kept only as SHA-256 hashes of the random values handed out. `context` is the caller
# context (JSON: agent, role, organisation, patient, purpose) the token carries. Refresh tokens of one
# sign-in share a `family`: reuse of a spent refresh token revokes the whole family.
oauth_token = Table(
    "oauth_token",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("kind", String(8), nullable=False),  # access, refresh
    Column("family", String(36), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("scope", Text, nullable=False),
    Column("context", Text, nullable=False),
    Column("issued", String(32), nullable=False),
    Column("expires", String(32), nullable=False),
    Column("revoked", Boolean, nullable=False),
    Column("used", Boolean, nullable=False),  # a refresh token, once exchanged
    Index("ix_oauth_token_family", "family"),
    Index("ix_oauth_token_expires", "expires"),
)

# Authorization codes (one use, minutes long), bound to the client, redirect URI and PKCE challenge.
oauth_code = Table(
    "oauth_code",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("code_challenge", String(128), nullable=False),
    Column("scope", Text, nullable=False),
    Column("context", Text, nullable=False),
    Column("expires", String(32), nullable=False),
    Column("used", Boolean, nullable=False),
)

# Web sign-in sessions, kept only as SHA-256 hashes of the cookie value, with the CSRF token and the
# caller context (JSON; the role profile chosen at sign-in).
web_session = Table(
    "web_session",
    metadata,
    Column("session_hash", String(64), primary_key=True),
    Column("username", String(200), nullable=False),
    Column("context", Text, nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created", String(32), nullable=False),
    Column("expires", String(32), nullable=False),
    Column("revoked", Boolean, nullable=False),
    Index("ix_web_session_expires", "expires"),
)

# The master patient index (mpi/; docs/mpi.md). One row per current source Patient: what the matcher
# compares (`features`, JSON from mpi.comparisons.features) and the blocking keys candidates are found
# by, each indexed. Rewritten in the Patient's own write transaction; gone when the Patient is deleted.
# `node` names the sharedcare node that holds the Patient, ready for federation.
MPI_KEY = 160
mpi_record = Table(
    "mpi_record",
    metadata,
    Column("res_id", String(ID), primary_key=True),  # the Patient's id
    Column("node", String(64), nullable=False),
    Column("features", Text, nullable=False),
    Column("restricted", Boolean, nullable=False),  # a restricted address: its postcode is never matched on for callers
    Column("k_nhs", String(10)),  # an NHS number that passed its check
    Column("k_birth_sound", String(MPI_KEY)),  # birth date | family name's sound
    Column("k_birth_given", String(MPI_KEY)),  # birth date | first given name
    Column("k_name", String(MPI_KEY)),  # family name | first given name | birth year
    Column("k_place", String(MPI_KEY)),  # postcode | birth year
    Column("updated", String(32), nullable=False),
    # National tracing (mpi/trace.py): verified (PDS holds the record's number for someone with its birth
    # date), traced (PDS found the number of a record that had none: `pds_number`, used for linking),
    # mismatch (PDS holds the number for someone else, or not at all: not used for linking), not-found,
    # ambiguous. Reset when the record's demographics change. The source's Patient is never changed.
    Column("pds_status", String(16)),
    Column("pds_number", String(10)),
    Column("pds_checked", String(32)),
    Index("ix_mpi_record_k_nhs", "k_nhs"),
    Index("ix_mpi_record_k_birth_sound", "k_birth_sound"),
    Index("ix_mpi_record_k_birth_given", "k_birth_given"),
    Index("ix_mpi_record_k_name", "k_name"),
    Index("ix_mpi_record_k_place", "k_place"),
    Index("ix_mpi_record_pds_checked", "pds_checked"),
)

# A person: the one human behind the source Patients linked to it (served as a FHIR Person).
mpi_person = Table(
    "mpi_person",
    metadata,
    Column("person_id", String(36), primary_key=True),
    Column("created", String(32), nullable=False),
)

# Which person each source Patient belongs to now. `how`: automatic (the matcher), manual (a reviewer),
# merge (a merge of two persons). `grade` and `score` are the matcher's, for an automatic link.
mpi_link = Table(
    "mpi_link",
    metadata,
    Column("res_id", String(ID), primary_key=True),
    Column("person_id", String(36), nullable=False),
    Column("how", String(16), nullable=False),
    Column("grade", String(16), nullable=False),  # match grade: certain (and manual links: certain)
    Column("score", Float),  # match probability against the best record it was linked by; NULL for a first record
    Column("agent_id", Text, nullable=False),  # who linked it: the node's matcher or a member of staff
    Column("linked", String(32), nullable=False),
    Index("ix_mpi_link_person", "person_id"),
)

# Every change to a link, oldest first: what it was and what it became. A change of several links at
# once (a merge, a review decision) shares a `change_id`, so an unmerge can put them back as they were.
mpi_link_history = Table(
    "mpi_link_history",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("change_id", String(36), nullable=False),
    Column("event", String(24), nullable=False),  # linked, relinked, unlinked, merged, unmerged, reviewed
    Column("res_id", String(ID), nullable=False),
    Column("old_person", String(36)),
    Column("new_person", String(36)),
    Column("old_how", String(16)),
    Column("new_how", String(16)),
    Column("agent_id", Text, nullable=False),
    Column("reason", Text),
    Column("at", String(32), nullable=False),
    Index("ix_mpi_link_history_change", "change_id"),
    Index("ix_mpi_link_history_res", "res_id", "seq"),
)

# Possible matches for a person to decide: a source Patient and a record it may be the same person as.
# `status`: open, linked, kept-apart (decided by `decided_by`), withdrawn (a record changed or went).
mpi_review = Table(
    "mpi_review",
    metadata,
    Column("review_id", String(36), primary_key=True),
    Column("res_id", String(ID), nullable=False),  # the record the matcher was deciding
    Column("other_id", String(ID), nullable=False),  # the stored record it may be
    Column("score", Float, nullable=False),
    Column("grade", String(16), nullable=False),  # probable, possible
    Column("held_back", Text),  # guards that stopped an automatic link, space-separated
    Column("status", String(16), nullable=False),
    Column("created", String(32), nullable=False),
    Column("decided_by", Text),
    Column("decided", String(32)),
    Column("reason", Text),
    Index("ix_mpi_review_status", "status", "created"),
    Index("ix_mpi_review_res", "res_id"),
    Index("ix_mpi_review_other", "other_id"),
)

# Ingestion (ingest/; docs/ingest.md). The source registry: each organisation's system that sends data,
# how it is authenticated, and how often it is expected to send. `status`: active, review (registered on
# first contact in development, awaiting an administrator), disabled.
feed_source = Table(
    "feed_source",
    metadata,
    Column("source_id", String(64), primary_key=True),
    Column("ods", String(16), nullable=False),  # the organisation's ODS code (HL7 MSH-4, meta.source)
    Column("system", String(64)),  # the sending application (HL7 MSH-3); NULL: any of the organisation's
    Column("name", Text, nullable=False),
    Column("feeds", Text, nullable=False),  # space-separated: hl7v2 fhir csv
    Column("expected_minutes", Integer),  # an alert is raised when nothing arrives for longer
    Column("cert_sha256", String(64)),  # SHA-256 of the TLS client certificate bound to the source
    Column("client_id", String(64)),  # the SMART system client its FHIR pushes use
    Column("code_systems", Text),  # space-separated local code systems (ConceptMaps are kept per source)
    Column("csv_mapping", Text),  # a CSV extract's column mapping (YAML)
    Column("status", String(16), nullable=False),
    Column("created", String(32), nullable=False),
    Column("last_received", String(32)),
    Column("silence_alerted", String(32)),  # when the last "gone silent" alert was raised
    Index("ix_feed_source_ods", "ods", "system"),
)

# The inbox: every inbound message, stored before it is acknowledged, processed once. `message_key` is
# the idempotency key within the source (HL7 MSH-10, a bundle's id, a file checksum and row number).
# `status`: pending (waiting, or retrying at `next_attempt`), done, dead (a dead letter: `error` says
# why, written by us, never quoting the message). `patient_key` orders one patient's messages from one
# source, earliest `event_time` first.
INBOX_KEY = 200  # the longest message key (HL7 v2.7 allows a 199-character MSH-10)
inbox_message = Table(
    "inbox_message",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("source_id", String(64), nullable=False),
    Column("message_key", String(INBOX_KEY), nullable=False),
    Column("kind", String(16), nullable=False),  # hl7v2, fhir, csv
    Column("received", String(32), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("digest", String(64), nullable=False),  # SHA-256 of what the message says (see inbox.digest)
    Column("patient_key", String(300)),
    Column("event_time", String(32)),
    Column("status", String(12), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt", String(32)),
    Column("error", Text),
    Column("ack_code", String(2)),  # the acknowledgement sent (AA, CA), repeated for a duplicate delivery
    Column("processed", String(32)),
    Column("outcome", Text),  # JSON: what it wrote (references) and validation warnings
    UniqueConstraint("source_id", "message_key", name="uq_inbox_message_source_key"),
    Index("ix_inbox_message_status", "status", "next_attempt"),
    Index("ix_inbox_message_patient", "source_id", "patient_key", "status"),
)
