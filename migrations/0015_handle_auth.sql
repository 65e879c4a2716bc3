-- 0015: Handle challenge-response (issue 13). A native administrative request waits here
-- for the client's answer to its challenge (the Handle.Net client answers on a new TCP
-- connection, which another worker may take); an HTTP session authenticated by
-- "Authorization: Handle" is kept here by the hash of its id (the id is a credential).
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

CREATE TABLE native_challenges (
    session_id  integer PRIMARY KEY,          -- the challenge's session id (server-chosen)
    nonce       bytea NOT NULL,               -- 16 random bytes
    request     bytea NOT NULL,               -- the request it answers, envelope included
    expires_at  timestamptz NOT NULL
);

CREATE TABLE http_sessions (
    id_hash     bytea PRIMARY KEY,            -- SHA-256 of the session id
    operator_id integer NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    identity    text NOT NULL,                -- INDEX:HANDLE the client proved it holds
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX http_sessions_expiry ON http_sessions (expires_at);
