-- 0001: the foundation schema.
-- One row per identifier so that a resolution is one primary-key lookup; the
-- record's values are one JSONB array in the stored form of resolver/core/codec.py.
-- Operators authenticate with a Handle admin identity (INDEX:HANDLE) whose secret
-- hash lives in an HS_SECKEY value nobody can read; tokens are stored hashed.
-- Every write leaves an audit row in the same transaction; the audit table is
-- append-only (a trigger refuses UPDATE and DELETE).
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

CREATE TABLE operators (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    identity    text NOT NULL UNIQUE,          -- "300:88.100.7/ADMIN", prefix upper-cased
    is_admin    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    operator_id  bigint NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    token_hash   bytea NOT NULL UNIQUE,        -- sha256 of the token; the token is shown once
    label        text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

CREATE TABLE prefixes (
    prefix      text PRIMARY KEY,              -- normalised (upper-cased) "88.100.7"
    parent      text,                          -- "88.100"; NULL at the top level
    owner_id    bigint NOT NULL REFERENCES operators (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX prefixes_owner ON prefixes (owner_id);

CREATE TABLE handles (
    handle      text PRIMARY KEY,              -- normalised prefix + '/' + suffix (case kept)
    prefix      text NOT NULL,
    "values"    jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- listing a prefix's identifiers in order (GET /api/handles?prefix=)
CREATE INDEX handles_prefix ON handles (prefix, handle);

CREATE TABLE audit (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    operator_id  bigint REFERENCES operators (id),
    actor        text NOT NULL,                -- operator name (or 'cli:<user>')
    action       text NOT NULL,                -- create / replace / add_values / remove_values / delete / ...
    handle       text,
    prefix       text,
    before       jsonb,
    after        jsonb
);
CREATE INDEX audit_handle ON audit (handle, id);
CREATE INDEX audit_prefix ON audit (prefix, id);

CREATE FUNCTION audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit table is append-only';
END $$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_is_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_is_append_only();
