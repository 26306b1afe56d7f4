-- The vault's schema. The database holds ciphertext, blind ids and pseudonyms only: every
-- citizen record is sealed by the vault before it gets here.

CREATE TABLE citizens (
    blind   bytea PRIMARY KEY,   -- HMAC of the citizen id (blind index)
    record  bytea NOT NULL       -- the sealed record (store codec)
);

CREATE TABLE grants (
    id          text PRIMARY KEY,
    code        text NOT NULL UNIQUE,   -- verification code
    citizen     text NOT NULL,          -- blind id, hex
    break_glass boolean NOT NULL,
    grant_json  bytea NOT NULL,         -- the grant as issued (its fixed facts)
    state       bytea NOT NULL          -- its changing state (status, uses, times, review)
);
CREATE INDEX grants_by_citizen ON grants (citizen);
CREATE INDEX grants_break_glass ON grants (id) WHERE break_glass;

CREATE TABLE consents (
    citizen text NOT NULL,
    id      text NOT NULL,
    body    bytea NOT NULL,
    ends_ms bigint NOT NULL,            -- expiry, or withdrawal if earlier
    PRIMARY KEY (citizen, id)
);
CREATE INDEX consents_by_end ON consents (ends_ms);

CREATE TABLE remembered (
    name       bytea PRIMARY KEY,      -- HMAC of the caller's scope and idempotency key
    body       bytea NOT NULL,
    grant_id   text,                   -- set for a grant request's answer
    created_ms bigint NOT NULL
);
CREATE INDEX remembered_by_grant ON remembered (grant_id) WHERE grant_id IS NOT NULL;

CREATE TABLE cases (
    kind    "char" NOT NULL,
    id      text NOT NULL,
    citizen bytea NOT NULL,
    open    boolean NOT NULL,
    row     bytea NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX cases_by_citizen ON cases (citizen, kind, id);
CREATE INDEX cases_open ON cases (kind, id) WHERE open;

CREATE TABLE meta (
    key   text PRIMARY KEY,
    value bytea NOT NULL
);

-- The audit log. Nodes queue entries; the sequencer (the lease holder) gives them indexes,
-- leaf hashes and a signed checkpoint in one transaction.
CREATE TABLE audit_queue (
    id    bigserial PRIMARY KEY,
    entry bytea NOT NULL
);

CREATE TABLE audit_entries (
    idx      bigint PRIMARY KEY,
    queue_id bigint NOT NULL,
    entry    bytea NOT NULL,
    leaf     bytea NOT NULL,
    subject  bytea,
    official text,
    agency   text,
    purpose  text,
    event    text NOT NULL,
    at_ms    bigint
);
CREATE INDEX audit_by_subject ON audit_entries (subject, idx) WHERE subject IS NOT NULL;
CREATE INDEX audit_by_official ON audit_entries (official, idx) WHERE official IS NOT NULL;
CREATE INDEX audit_by_agency ON audit_entries (agency, idx) WHERE agency IS NOT NULL;
CREATE INDEX audit_by_purpose ON audit_entries (purpose, idx) WHERE purpose IS NOT NULL;
CREATE INDEX audit_by_event ON audit_entries (event, idx);

CREATE TABLE audit_checkpoints (
    size bigint PRIMARY KEY,
    note text NOT NULL
);

-- One row: who sequences, until when, and the fencing token every sequencer write checks.
CREATE TABLE audit_lease (
    id      int PRIMARY KEY CHECK (id = 1),
    holder  text NOT NULL,
    fence   bigint NOT NULL,
    expires timestamptz NOT NULL
);
INSERT INTO audit_lease VALUES (1, '', 0, 'epoch');

-- Counters shared by every node: rate limits and verification-code attempts.
CREATE TABLE counters (
    key      bytea PRIMARY KEY,
    window_s bigint NOT NULL,
    count    bigint NOT NULL
);
