-- 0007: typed records (docs/records.md).
-- templates: the versions of each metadata template, keyed by the template's own
-- identifier (a template is an identifier too, and resolves like one). A version is a
-- draft until published; published versions are what records follow; a retired one
-- takes no new records, and the records that follow it stay.
-- handles.template / template_version: the template a record follows (NULL: none);
-- handles.state: its lifecycle (draft: its owner only; active; retired: a tombstone;
-- replaced: an alias of its successor). Resolution reads public_json, which every write
-- and every transition computes for the state, and skips drafts.
-- prefixes.template: the template every record under the prefix must follow.
-- codes: the values of unique and searchable items, for lookup by code ("which
-- identifier under P has asset.equipment_code = X"): one primary-key lookup; a unique
-- item's value is unique within the identifier's prefix (the partial unique index).
-- Only public values are found by anonymous lookups (is_public).
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '600s';

CREATE TABLE templates (
    handle        text COLLATE "C" NOT NULL,
    version       integer NOT NULL CHECK (version > 0),
    state         text NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'published', 'retired')),
    definition    json NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz,
    retired_at    timestamptz,
    PRIMARY KEY (handle, version)
);

ALTER TABLE handles
    ADD COLUMN template text COLLATE "C",
    ADD COLUMN template_version integer,
    ADD COLUMN state text NOT NULL DEFAULT 'active'
        CHECK (state IN ('draft', 'active', 'retired', 'replaced')),
    ADD COLUMN state_info json;            -- {"at", "reason"?, "successor"?} of the last move
CREATE INDEX handles_template ON handles (template, template_version, handle)
    WHERE template IS NOT NULL;

-- template_complete: every record under the prefix followed it when it was required (so
-- the code index holds all their indexed values); false when required with "force"
ALTER TABLE prefixes ADD COLUMN template text COLLATE "C",
                     ADD COLUMN template_complete boolean NOT NULL DEFAULT false;

CREATE TABLE codes (
    prefix     text COLLATE "C" NOT NULL,
    type       text COLLATE "C" NOT NULL,
    value      text COLLATE "C" NOT NULL,
    handle     text COLLATE "C" NOT NULL,
    is_unique  boolean NOT NULL,
    is_public  boolean NOT NULL,
    PRIMARY KEY (prefix, type, value, handle)
);
CREATE UNIQUE INDEX codes_unique ON codes (prefix, type, value) WHERE is_unique;
-- reverse lookup (/hrls/handles) ignores case, as ILIKE folds it (with the database's
-- collation, which the JSON text it reads has): the same folding, in code-point order
-- (the type and value first: a scope of many prefixes is a filter on the few matches)
CREATE INDEX codes_folded ON codes (type, (lower(value COLLATE "default") COLLATE "C"), prefix);
