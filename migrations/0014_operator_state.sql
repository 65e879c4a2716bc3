-- 0014: operators that can be disabled, tokens that expire and say when they were last used
-- (issue 12, operator commands). A disabled operator's tokens and secret are refused at
-- once (every request reads them: registry/bearers.py); enabling it again restores them.
-- last_used_at is written at most once a minute per token, in one statement per loop turn.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

ALTER TABLE operators ADD COLUMN disabled_at timestamptz;
ALTER TABLE tokens ADD COLUMN expires_at timestamptz,
                   ADD COLUMN last_used_at timestamptz;
