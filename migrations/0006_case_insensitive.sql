-- 0006: identifiers compare case-insensitively (ASCII letters), as the Handle.Net server
-- does by default (case_sensitive = no, "highly recommended" by its manual).
-- handles.handle becomes the folded key (prefix and suffix with ASCII letters
-- upper-cased); handles.spelling keeps the identifier as first written when it differs,
-- so listings show it. Answers always echo the spelling of the request.
-- A database already holding identifiers that differ only in case cannot be folded
-- without merging them: it stays case-sensitive (node_settings.case_sensitive = true)
-- and the migration says which, so an operator can resolve them first.
-- The audit trail is re-keyed the same way, the one change ever made to it: only its
-- handle column (the lookup key), no event, actor, time or record content.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '600s';

CREATE TABLE node_settings (
    name   text PRIMARY KEY,
    value  text NOT NULL
);
ALTER TABLE handles ADD COLUMN spelling text;

DO $$
DECLARE
    lower_ascii CONSTANT text := 'abcdefghijklmnopqrstuvwxyz';
    upper_ascii CONSTANT text := 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
    clashes text;
BEGIN
    SELECT string_agg(k, ', ') INTO clashes FROM (
        SELECT translate(handle, lower_ascii, upper_ascii) AS k FROM handles
        GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT 20) c;
    IF clashes IS NOT NULL THEN
        INSERT INTO node_settings VALUES ('case_sensitive', 'true');
        RAISE WARNING 'identifiers differ only in case (%): this database stays case-sensitive', clashes;
        RETURN;
    END IF;
    INSERT INTO node_settings VALUES ('case_sensitive', 'false');
    UPDATE handles SET spelling = handle, handle = translate(handle, lower_ascii, upper_ascii)
        WHERE handle <> translate(handle, lower_ascii, upper_ascii);
    UPDATE operators SET identity = translate(identity, lower_ascii, upper_ascii)
        WHERE identity <> translate(identity, lower_ascii, upper_ascii);
    ALTER TABLE audit DISABLE TRIGGER audit_append_only;
    UPDATE audit SET handle = translate(handle, lower_ascii, upper_ascii)
        WHERE handle <> translate(handle, lower_ascii, upper_ascii);
    ALTER TABLE audit ENABLE TRIGGER audit_append_only;
END $$;
