-- 0012: a record stored once (issue 11: bytes per identifier).
-- An active record whose public JSON derives from its stored JSON (every value public,
-- string data, one timestamp: resolver/core/codec.py derivable) keeps an empty
-- public_json; resolution derives the public JSON from "values" with two byte
-- replacements (codec.derive_public). NULL keeps its old meaning (rows written before
-- 0002). This converts the rows written before: a row is emptied only where the same
-- derivation, done here, gives exactly the bytes it holds, so what is served is unchanged
-- by construction (rows written through jsonb, whose text differs, keep their copy).
-- The audit trail needs no conversion: a creation's row written from now on refers to the
-- record (after NULL) instead of copying it; older rows keep their copy.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '3600s';

WITH s AS (
    SELECT handle, public_json, "values"::text AS t,
           substring("values"::text FROM '"timestamp":([0-9]{1,11})[,}]') AS ts
    FROM handles
    WHERE state = 'active' AND public_json IS NOT NULL AND public_json <> ''::bytea)
UPDATE handles h SET public_json = ''::bytea
FROM s
WHERE h.handle = s.handle AND s.ts IS NOT NULL AND s.ts <> '0'
  AND s.public_json = convert_to(
        replace(replace(s.t, '"timestamp":' || s.ts,
                        '"timestamp":"' || to_char(to_timestamp(s.ts::bigint) AT TIME ZONE 'UTC',
                                                   'YYYY-MM-DD"T"HH24:MI:SS"Z"') || '"'),
                ',"permissions":"1110"', ''),
        'UTF8');
