-- 0003: prefix delegation (node hierarchy).
-- The owner of a prefix can delegate it to other nodes: a list of servers (base URL of
-- their HTTP API, optional binary-protocol address, their Ed25519 public key) with a
-- TTL. A delegation covers the prefix and its descendants unless a deeper one exists
-- (longest prefix wins). Resolvers hold the whole table in memory (it is small) and
-- reload it when notified on idres_invalidate with the '*zone' mark.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

CREATE TABLE delegations (
    prefix      text PRIMARY KEY REFERENCES prefixes (prefix) ON DELETE CASCADE,
    servers     json NOT NULL,          -- [{"url": ..., "key": ..., "binary": "host:port"?}]
    ttl         integer NOT NULL CHECK (ttl BETWEEN 0 AND 2147483647),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
