-- 0005: leases of the resolver processes' caches (resolver/core/channel.py).
-- A process may answer from its cache only while its listener proves, by a heartbeat
-- that comes back through the invalidation channel, that it receives invalidations;
-- the heartbeat renews this row in the same commit. A writer reads the valid rows after
-- its commit and answers only when each of those listeners has acknowledged the write
-- or let its lease run out. The database's clock is the one clock of these rows.
-- Logged (not UNLOGGED): after a crash a writer must still see every lease that may be
-- held, and a heartbeat's commit is synchronous like any other.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

CREATE TABLE listener_leases (
    listener  text PRIMARY KEY,          -- random per LISTEN connection
    expires   timestamptz NOT NULL
);
