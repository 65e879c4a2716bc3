-- 0008: authorized resolution (docs/sharing.md). Parties that read besides operators:
-- application identities (a credential of their own, for reading only, expiring and
-- revocable) and groups of parties (members: applications and operators, of any
-- enterprise). Grants let a party read the *shared* values of identifiers under a
-- prefix, or of one identifier, whose type matches a pattern or is one item of a
-- template. Private values are their owner's only; public values are everyone's.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

CREATE TABLE readers (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    owner_id    bigint NOT NULL REFERENCES operators (id),
    token_hash  bytea NOT NULL UNIQUE,          -- sha256 of the token; the token is shown once
    description text NOT NULL DEFAULT '',
    expires_at  timestamptz,                    -- NULL: until revoked
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reader_groups (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    owner_id    bigint NOT NULL REFERENCES operators (id),
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- a member is a party: 'reader:NAME' (an application) or 'operator:NAME'
CREATE TABLE reader_group_members (
    group_id    bigint NOT NULL REFERENCES reader_groups (id) ON DELETE CASCADE,
    member      text NOT NULL CHECK (member ~ '^(reader|operator):'),
    PRIMARY KEY (group_id, member)
);
CREATE INDEX reader_group_members_member ON reader_group_members (member);

-- scope: a prefix (normalised, "88.100.7": its identifiers and its descendants') or one
-- identifier's key ("88.100.7/ORDER-1"); types: a pattern of value types ("*",
-- "order.*", "order.quantity"; '*' matches any run of characters, case ignored);
-- template: with it, the grant covers that template's records only.
CREATE TABLE grants (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    granter_id  bigint NOT NULL REFERENCES operators (id),
    grantee     text NOT NULL CHECK (grantee ~ '^(reader|operator|group):'),
    scope       text COLLATE "C" NOT NULL,
    types       text NOT NULL DEFAULT '*',
    template    text COLLATE "C",
    expires_at  timestamptz,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX grants_grantee ON grants (grantee) WHERE revoked_at IS NULL;
CREATE INDEX grants_scope ON grants (scope) WHERE revoked_at IS NULL;

-- read logs (docs/sharing.md): an owner turns one on for a prefix (and its descendants)
-- or a template; each read by another party that shows shared values of such a record
-- leaves a row (who, which identifier, which types, when). Bounded: the oldest rows go
-- beyond IDRES_READ_LOG_ROWS (the node trims as it writes).
CREATE TABLE read_logs (
    scope       text COLLATE "C" PRIMARY KEY,   -- a prefix, or a template's key
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE read_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    party       text NOT NULL,
    handle      text COLLATE "C" NOT NULL,
    prefix      text COLLATE "C" NOT NULL,
    template    text COLLATE "C",
    types       text[] NOT NULL
);
CREATE INDEX read_log_handle ON read_log (handle, id);
CREATE INDEX read_log_prefix ON read_log (prefix, id);

-- shared_json: the shared values of an active record, in the output form (JSON array),
-- written by every record write as public_json is; NULL when it has none. Resolution reads
-- it into the answer cache beside the public values, so that an authorized answer is
-- derived from the cached record and the reader's grants (resolver/sharing.py).
ALTER TABLE handles ADD COLUMN shared_json bytea;
