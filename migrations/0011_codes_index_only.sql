-- 0011: a lookup by code answered from the code index alone. Until 0010 every lookup
-- joined each code found to its record for two things: its spelling, and whether it is
-- a draft (nobody's to find but its owner's). At 1,000,000 identifiers a lookup read 9
-- buffers, the record's index and heap among them; at 10,000,000 the records no longer
-- fit in memory and lookups waited on the disk. Now a code row carries both:
--   * spelled: the identifier as its record spells it (NULL: as its key);
--   * is_public: the value is public AND the record is not a draft (a draft's codes are
--     found by those who may see what is not public, as before; when the draft becomes
--     active its codes become public: registry/store/records.py move).
-- The index includes them (and the identifier: a unique code's slot is ''), so an
-- exact lookup is one probe of one index, and an index-only scan once the table is
-- vacuumed.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1800s';

ALTER TABLE codes ADD COLUMN spelled text COLLATE "C";
UPDATE codes c SET spelled = h.spelling, is_public = c.is_public AND h.state <> 'draft'
  FROM handles h
 WHERE h.handle = c.handle AND (h.spelling IS NOT NULL OR h.state = 'draft');
DROP INDEX codes_unique;
CREATE UNIQUE INDEX codes_unique
    ON codes (type, (lower(value COLLATE "default") COLLATE "C"), prefix, value, slot)
    INCLUDE (handle, is_public, spelled);
