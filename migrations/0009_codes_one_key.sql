-- 0009: a code row enters two indexes instead of three. The primary key (prefix, type,
-- value, handle) repeated, for unique codes, the unique index on (prefix, type, value).
-- One unique index now does both: its last column, ``slot``, is '' for a unique code (so
-- a second identifier with the same code collides) and the identifier for a searchable
-- one (so each identifier holds a code once). Lookups scan it in handle order either way
-- (one row for a unique code). codes_folded (reverse lookup) stays.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '600s';

ALTER TABLE codes ADD COLUMN slot text COLLATE "C"
    GENERATED ALWAYS AS (CASE WHEN is_unique THEN '' ELSE handle END) STORED;
ALTER TABLE codes DROP CONSTRAINT codes_pkey;
DROP INDEX codes_unique;
CREATE UNIQUE INDEX codes_unique ON codes (prefix, type, value, slot);
