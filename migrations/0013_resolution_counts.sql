-- 0013: statistics (issue 12): how often a prefix's identifiers are resolved.
-- Each process counts resolutions in memory and adds them here every few seconds in one
-- statement (resolver/usage.py): per prefix and hour (every outcome: hit, miss,
-- not_found; every protocol: http, batch, binary), and per identifier and day for the
-- identifiers that exist. `source` is '' for this node's own counts, and a child node's
-- key for the totals it reported for a prefix delegated to it (POST /api/stats/reports).
-- The owner reads them with GET /api/stats/resolutions (registry/usage.py); a prefix's
-- counts include those of the prefixes under it ('P.' <= prefix < 'P0' in "C" order).
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

CREATE TABLE prefix_resolutions (
    hour      timestamptz NOT NULL,
    prefix    text COLLATE "C" NOT NULL,
    protocol  text NOT NULL,
    outcome   text NOT NULL,
    source    text NOT NULL DEFAULT '',
    n         bigint NOT NULL CHECK (n >= 0),
    PRIMARY KEY (prefix, hour, protocol, outcome, source)
);

CREATE TABLE handle_resolutions (
    day       date NOT NULL,
    handle    text COLLATE "C" NOT NULL,
    protocol  text NOT NULL,
    outcome   text NOT NULL,
    n         bigint NOT NULL CHECK (n >= 0),
    PRIMARY KEY (handle, day, protocol, outcome)
);
