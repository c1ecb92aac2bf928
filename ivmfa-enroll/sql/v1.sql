-- ivmfa fleet schema, version 1 (docs/SCHEMA.md explains every table, role, function and rule).
--
-- Run once per database by a superuser, in a database of its own with UTF8 encoding:
--     psql -v ON_ERROR_STOP=1 -d ivmfa -f v1.sql
-- It is one transaction: it installs everything or nothing. It refuses a database that
-- already has the schema (upgrades are separate scripts) and roles that exist with more
-- power than they should have.
--
-- The rules every function here keeps, each one learnt from a leak:
--   * Secrets (TOTP keys, recovery salts and hashes) live only in tables of schema ivmfa,
--     which nobody but the NOLOGIN, non-superuser owner ivmfa_owner may use.
--   * Hosts and administrators reach them only through SECURITY DEFINER functions in
--     ivmfa_api, each granted to one group role.
--   * Every function pins search_path (pg_catalog first, pg_temp last) and every message
--     setting a caller can raise (ivmfa.pinned_settings() lists them; applied at the end);
--     every name of ours is written with its schema.
--   * A secret is never held in a PL/pgSQL variable: it goes from its column into the
--     expression that uses it, inside one SQL statement.
--   * No constraint but the key on a table that holds a secret or a hash (a CHECK or NOT
--     NULL violation prints the row).
--   * Every error inside an API function is caught and answered with the verdict 'error';
--     only the SQLSTATE is kept, in the audit table.
--   * An attempt is counted, and committed, before it is judged (submit, then verify), so
--     a caller cannot roll a count back after seeing the verdict.
--   * The database's clock is the only clock.

BEGIN;

SET LOCAL client_min_messages = warning;
SET LOCAL search_path = pg_catalog, pg_temp;

-- Refuse to install twice, or next to a pgcrypto another application put elsewhere.
DO $install$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname IN ('ivmfa', 'ivmfa_api')) THEN
        RAISE EXCEPTION 'ivmfa: this database already has the ivmfa schema'
            USING HINT = 'upgrade it with the upgrade script instead of installing again';
    END IF;
    IF pg_catalog.current_setting('server_encoding') <> 'UTF8' THEN
        RAISE EXCEPTION 'ivmfa: the database must use the UTF8 encoding'
            USING HINT = 'CREATE DATABASE ivmfa ENCODING ''UTF8'' TEMPLATE template0';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pgcrypto') THEN
        RAISE EXCEPTION 'ivmfa: pgcrypto is already installed in this database'
            USING HINT = 'install ivmfa into a database of its own';
    END IF;
END
$install$;

-- Roles are shared by every database of the cluster: create the missing ones, and refuse
-- existing ones that could log in or do more than their part.
DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['ivmfa_owner', 'ivmfa_host', 'ivmfa_admin'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format(
                'CREATE ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION '
                'NOBYPASSRLS', r);
        END IF;
    END LOOP;
    IF EXISTS (
        SELECT FROM pg_catalog.pg_roles
        WHERE rolname IN ('ivmfa_owner', 'ivmfa_host', 'ivmfa_admin')
          AND (rolsuper OR rolcanlogin OR rolcreatedb OR rolcreaterole OR rolreplication
               OR rolbypassrls)
    ) THEN
        RAISE EXCEPTION 'ivmfa: a role ivmfa_owner, ivmfa_host or ivmfa_admin exists with '
            'LOGIN, SUPERUSER, CREATEDB, CREATEROLE, REPLICATION or BYPASSRLS'
            USING HINT = 'these are group roles: ALTER ROLE ... NOLOGIN NOSUPERUSER ...';
    END IF;
    -- Nobody may act as the owner: it can read every secret.
    IF EXISTS (
        SELECT FROM pg_catalog.pg_auth_members
        WHERE roleid = 'ivmfa_owner'::regrole
    ) THEN
        RAISE EXCEPTION 'ivmfa: some role is a member of ivmfa_owner'
            USING HINT = 'REVOKE ivmfa_owner FROM that role';
    END IF;
    -- The owner and the groups are members of nothing, so they have nothing but what is
    -- granted here.
    IF EXISTS (
        SELECT FROM pg_catalog.pg_auth_members
        WHERE member IN ('ivmfa_owner'::regrole, 'ivmfa_host'::regrole,
                         'ivmfa_admin'::regrole)
    ) THEN
        RAISE EXCEPTION 'ivmfa: ivmfa_owner, ivmfa_host or ivmfa_admin is a member of a role'
            USING HINT = 'REVOKE that membership';
    END IF;

    -- PUBLIC may not connect or make temporary tables (a temporary table shadows a table
    -- named without its schema); only the groups connect.
    EXECUTE pg_catalog.format('REVOKE ALL ON DATABASE %I FROM PUBLIC',
                              pg_catalog.current_database());
    EXECUTE pg_catalog.format('GRANT CONNECT ON DATABASE %I TO ivmfa_host, ivmfa_admin',
                              pg_catalog.current_database());
END
$roles$;

REVOKE ALL ON SCHEMA public FROM PUBLIC;

-- Large objects are readable by whoever made them and can fill the disk: nobody here needs
-- them. (Reading server files with lo_import is already superuser-only.)
REVOKE EXECUTE ON FUNCTION
    pg_catalog.lo_creat(integer), pg_catalog.lo_create(oid),
    pg_catalog.lo_from_bytea(oid, bytea), pg_catalog.lo_put(oid, bigint, bytea),
    pg_catalog.lo_import(text), pg_catalog.lo_import(text, oid)
FROM PUBLIC;

CREATE SCHEMA ivmfa AUTHORIZATION ivmfa_owner;
CREATE SCHEMA ivmfa_api AUTHORIZATION ivmfa_owner;
COMMENT ON SCHEMA ivmfa IS 'ivmfa: secrets and state; only its owner may use it';
COMMENT ON SCHEMA ivmfa_api IS 'ivmfa: the functions hosts and administrators may call';

-- HMAC and digests, in the private schema: nobody but the owner may call them.
CREATE EXTENSION pgcrypto WITH SCHEMA ivmfa;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ivmfa FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA ivmfa TO ivmfa_owner;

-- New functions are executable by PUBLIC unless this says otherwise.
ALTER DEFAULT PRIVILEGES FOR ROLE ivmfa_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE ivmfa_owner REVOKE ALL ON TABLES FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE ivmfa_owner REVOKE ALL ON SEQUENCES FROM PUBLIC;

GRANT USAGE ON SCHEMA ivmfa_api TO ivmfa_host, ivmfa_admin;

-- Everything from here on belongs to the owner.
SET LOCAL ROLE ivmfa_owner;

------------------------------------------------------------------------------------------
-- Tables
------------------------------------------------------------------------------------------

CREATE TABLE ivmfa.meta (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    schema_version integer NOT NULL
);
INSERT INTO ivmfa.meta (schema_version) VALUES (1);

-- Fleet-wide policy: one value for every host, so no host can loosen it for itself.
CREATE TABLE ivmfa.settings (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    totp_window smallint NOT NULL DEFAULT 1 CHECK (totp_window BETWEEN 0 AND 10),
    max_failures integer NOT NULL DEFAULT 3 CHECK (max_failures BETWEEN 1 AND 1000),
    max_failures_per_user integer NOT NULL DEFAULT 10
        CHECK (max_failures_per_user BETWEEN 1 AND 10000),
    backoff_seconds integer NOT NULL DEFAULT 30 CHECK (backoff_seconds BETWEEN 1 AND 86400),
    max_backoff_seconds integer NOT NULL DEFAULT 900
        CHECK (max_backoff_seconds BETWEEN 1 AND 86400),
    ticket_lifetime_seconds integer NOT NULL DEFAULT 259200
        CHECK (ticket_lifetime_seconds BETWEEN 3600 AND 31536000),
    -- Whether an unenrolled user may set up in a login without an approved reset.
    inband_enroll boolean NOT NULL DEFAULT false,
    -- How long an attempt filed by submit() may wait for verify().
    attempt_lifetime_seconds integer NOT NULL DEFAULT 60
        CHECK (attempt_lifetime_seconds BETWEEN 5 AND 3600),
    -- How long a set-up begun in a login may wait for its code.
    setup_lifetime_seconds integer NOT NULL DEFAULT 600
        CHECK (setup_lifetime_seconds BETWEEN 60 AND 86400),
    -- How many presses ahead of the counter a hardware token's code is looked for (the
    -- file store's hotp_window).
    hotp_window smallint NOT NULL DEFAULT 10 CHECK (hotp_window BETWEEN 0 AND 50),
    -- The longest grace period any host may ask for (hosts ask for their own grace_period);
    -- 0 turns grace periods off on every host.
    grace_period_max integer NOT NULL DEFAULT 86400
        CHECK (grace_period_max BETWEEN 0 AND 86400),
    CHECK (max_backoff_seconds >= backoff_seconds)
);
INSERT INTO ivmfa.settings DEFAULT VALUES;

-- One row per user name: the row every decision about the user locks, and the state that
-- changes at every login. It outlives an enrollment, so that a removed and re-made
-- enrollment cannot take a used code again.
CREATE TABLE ivmfa.account (
    name text PRIMARY KEY,
    created bigint NOT NULL,
    -- Highest time step accepted so far; a code must be for a later one.
    last_step bigint NOT NULL DEFAULT 0,
    -- Failures from every source together since the last success, and the latest's time.
    total_count integer NOT NULL DEFAULT 0,
    total_last bigint NOT NULL DEFAULT 0,
    -- Future steps a wrong code matched: refused when their time comes.
    refused bigint[] NOT NULL DEFAULT '{}',
    -- Successes so far: an attempt filed before a success lost its counted failure to it.
    successes bigint NOT NULL DEFAULT 0
);

-- The key: an app's (TOTP) or a hardware token's (HOTP). No constraint but the key of the
-- row, and no default: a violation's message would print the row.
CREATE TABLE ivmfa.secret (
    name text PRIMARY KEY REFERENCES ivmfa.account ON DELETE CASCADE,
    key bytea,
    algorithm text,
    digits smallint,
    -- Seconds per step (TOTP); 30 and unused for a token.
    period integer,
    -- The window for this user, if not the fleet's (TOTP only).
    totp_window smallint,
    enrolled bigint,
    -- 'totp' (an app, by the clock) or 'hotp' (a hardware token, by its counter).
    kind text
);

-- Where a hardware token stands: the counter its next code is expected for; the codes of
-- every counter before it are used. What last_step is to an app, kept per key (named by
-- ivmfa.token_key_id, a hash no one can turn back into the key) and outliving the
-- enrollment: the same token provisioned again goes on from where it was, so the codes it
-- showed stay used. Moved only under the account row's lock. The key_id is derived from a
-- key, so no constraint but the key.
CREATE TABLE ivmfa.token_counter (
    name text REFERENCES ivmfa.account ON DELETE CASCADE,
    key_id bytea,
    next bigint,
    PRIMARY KEY (name, key_id)
);

-- Grace periods (a host's grace_period): a right code from a remote address, through a
-- host, lets that user's logins from that address through that same host skip the code for
-- a while. Kept per host role: a host that claims a right code came from an address (it
-- sees the user's codes, and says what the source is) gains nothing on the other hosts.
-- At most 8 addresses per user and host, as the file store keeps per user.
CREATE TABLE ivmfa.grace (
    name text NOT NULL REFERENCES ivmfa.account ON DELETE CASCADE,
    host text NOT NULL,
    -- The address in PostgreSQL's canonical spelling (ivmfa.canonical_address).
    address text NOT NULL,
    -- When its latest right code was filed.
    at bigint NOT NULL,
    PRIMARY KEY (name, host, address)
);

-- An enrollment an administrator has begun (admin_enroll, admin_enroll_key), waiting for a
-- code that confirms the app or token holds the key. Holds a key: no constraint but its key.
CREATE TABLE ivmfa.pending_enrollment (
    name text PRIMARY KEY REFERENCES ivmfa.account ON DELETE CASCADE,
    key bytea,
    kind text,
    algorithm text,
    digits smallint,
    period integer,
    started bigint,
    admin text,
    tries integer,
    replace_existing boolean
);

-- Consecutive failures per user and source (the remote host the login came from).
CREATE TABLE ivmfa.failure (
    name text NOT NULL REFERENCES ivmfa.account ON DELETE CASCADE,
    source text NOT NULL,
    count integer NOT NULL,
    last bigint NOT NULL,
    PRIMARY KEY (name, source)
);

-- Recovery codes: a salt per set and a SHA-256 of salt || code per code, as the file store
-- keeps them. A used code's row is deleted.
CREATE TABLE ivmfa.recovery_set (
    name text PRIMARY KEY REFERENCES ivmfa.account ON DELETE CASCADE,
    salt bytea,
    issued bigint
);
CREATE TABLE ivmfa.recovery_code (
    name text REFERENCES ivmfa.recovery_set ON DELETE CASCADE,
    idx integer,
    hash bytea,
    PRIMARY KEY (name, idx)
);

-- An answer filed by submit(), its failure already counted, waiting for verify(). Its
-- recovery_hash comes from a salt, so, like the tables of secrets, no constraint but its key.
CREATE TABLE ivmfa.attempt (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text REFERENCES ivmfa.account ON DELETE CASCADE,
    host text,
    source text,
    -- The digits typed, if they have the shape of a code.
    code text,
    -- SHA-256 of the recovery set's salt and the answer, if it has the shape of a
    -- recovery code.
    recovery_hash bytea,
    at bigint,
    successes bigint,
    -- The transaction that filed it: judged only once that one has committed.
    xact xid8,
    -- submit_grace: the address a right code begins a grace period for, and its length.
    grace_address text,
    grace_period integer
);
CREATE INDEX attempt_name ON ivmfa.attempt (name);

-- Flow 3: one pending request per user.
CREATE TABLE ivmfa.reset_request (
    name text PRIMARY KEY REFERENCES ivmfa.account ON DELETE CASCADE,
    filed bigint NOT NULL,
    service text NOT NULL,
    rhost text NOT NULL,
    tty text NOT NULL,
    host text NOT NULL
);

-- Opened by an approved reset: the user's next login through one host role sets up a new
-- key. Only that host may: the key is shown to the host that sets it up, so a ticket any
-- host could take would let root on any host give the user a key it knows. The host is the
-- one the request came through unless the administrator named another.
CREATE TABLE ivmfa.ticket (
    name text PRIMARY KEY REFERENCES ivmfa.account ON DELETE CASCADE,
    issued bigint NOT NULL,
    expires bigint NOT NULL,
    approved_by text NOT NULL,
    host text NOT NULL
);

-- Left by a denied reset: its reason is shown once, at the next login through the host the
-- request came through that can show it (no other host reads or takes it).
CREATE TABLE ivmfa.notice (
    name text PRIMARY KEY REFERENCES ivmfa.account ON DELETE CASCADE,
    time bigint NOT NULL,
    reason text NOT NULL,
    host text NOT NULL
);

-- A set-up begun in a login: the new key waits here for its first code.
CREATE TABLE ivmfa.pending_setup (
    name text PRIMARY KEY REFERENCES ivmfa.account ON DELETE CASCADE,
    key bytea,
    started bigint,
    host text,
    tries integer,
    grant_kind text
);

-- Every verify, request and administrative action, with the role that authenticated.
CREATE TABLE ivmfa.audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT pg_catalog.statement_timestamp(),
    role text NOT NULL,
    action text NOT NULL,
    user_name text,
    source text,
    outcome text NOT NULL
);

------------------------------------------------------------------------------------------
-- Building blocks (private: only the owner may call them)
------------------------------------------------------------------------------------------

-- The message and parsing settings a caller can change, pinned on every function of ours
-- (applied at the end of this file). Settings only a superuser can change (log_statement,
-- log_min_messages, log_min_duration_statement, auto_explain.*) are out of a host's reach.
-- plan_cache_mode is pinned for speed, not secrecy: each statement of a PL/pgSQL function
-- is then planned once per server process, where custom plans would plan it again at every
-- call, running the building blocks below on their constant arguments as they go.
CREATE FUNCTION ivmfa.pinned_settings() RETURNS text[]
LANGUAGE sql IMMUTABLE
AS $$
    SELECT ARRAY[
        'search_path = pg_catalog, pg_temp',
        'client_min_messages = error',
        'debug_print_parse = off',
        'debug_print_rewritten = off',
        'debug_print_plan = off',
        'debug_pretty_print = off',
        'trace_notify = off',
        'trace_sort = off',
        'log_parameter_max_length_on_error = 0',
        'exit_on_error = off',
        'standard_conforming_strings = on',
        'transform_null_equals = off',
        'plpgsql.print_strict_params = off',
        'plpgsql.extra_warnings = none',
        'plpgsql.extra_errors = none',
        'plpgsql.check_asserts = off',
        'plan_cache_mode = force_generic_plan'
    ]
$$;

-- The database's clock, the only one: the start of the client's statement, in whole
-- seconds. (now() would be the start of the transaction, which a client can hold open.)
CREATE FUNCTION ivmfa.clock() RETURNS bigint
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN pg_catalog.floor(
        pg_catalog.date_part('epoch', pg_catalog.statement_timestamp()))::bigint;
END
$$;

-- A user name as the file store accepts it (ivmfa-core's UserName): letters, digits, '.',
-- '_', '-', '@' and a trailing '$', not starting with '.', '-' or '@'; at most 128 bytes.
CREATE FUNCTION ivmfa.valid_name(p_name text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    RETURN p_name IS NOT NULL
       AND pg_catalog.octet_length(p_name) BETWEEN 1 AND 128
       AND pg_catalog.ltrim(pg_catalog.left(p_name, 1),
               'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_') = ''
       AND pg_catalog.ltrim(
               CASE WHEN pg_catalog.right(p_name, 1) = '$'
                    THEN pg_catalog.left(p_name, -1) ELSE p_name END,
               'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-@') = '';
END
$$;

-- The form a failure source is kept in, as the file store keeps it: printable ASCII as it
-- is, except '"', '\' and '%', which like every other byte become %XX; at most 255
-- characters, never cut inside an escape.
CREATE FUNCTION ivmfa.source_key(p_source text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    RETURN (
        WITH raw AS (
            SELECT pg_catalog.substr(
                       pg_catalog.convert_to(COALESCE(p_source, ''), 'UTF8'), 1, 255) AS b
        ), piece AS (
            SELECT i,
                   CASE WHEN v BETWEEN 33 AND 126 AND v NOT IN (34, 37, 92)
                        THEN pg_catalog.chr(v)
                        ELSE '%' || pg_catalog.upper(
                                        pg_catalog.lpad(pg_catalog.to_hex(v), 2, '0'))
                   END AS p
            FROM raw, pg_catalog.generate_series(0, pg_catalog.length(raw.b) - 1) AS i,
                 LATERAL (SELECT pg_catalog.get_byte(raw.b, i) AS v) AS byte
        ), upto AS (
            SELECT i, p, pg_catalog.sum(pg_catalog.length(p)) OVER (ORDER BY i) AS total
            FROM piece
        )
        SELECT COALESCE(pg_catalog.string_agg(p, '' ORDER BY i), '')
        FROM upto WHERE total <= 255
    );
END
$$;

-- RFC 4226 HOTP with RFC 6238's choice of hash, for the counters p_from to p_to: each
-- counter with its code, the HMAC of the 8-byte big-endian counter dynamically truncated
-- to its low `digits` decimal digits. Called with the key column itself, in the FROM list
-- of the statement that compares the codes, so that a search of many counters is one
-- statement (OFFSET 0 keeps each HMAC computed once, not once per use).
-- The one function of ours that pins nothing (ivmfa.pin_functions skips it): a SQL
-- function with settings of its own is never inlined, and inlined, its body becomes part
-- of the calling statement, planned and run under the caller's pinned settings; a search
-- then costs a third of a call. Nobody but the owner may call it, and every caller pins.
CREATE FUNCTION ivmfa.codes(p_key bytea, p_from bigint, p_to bigint, p_digits smallint,
                            p_algorithm text)
RETURNS TABLE (counter bigint, code text)
LANGUAGE sql IMMUTABLE
AS $$
    SELECT c, pg_catalog.lpad(
        ((((pg_catalog.get_byte(m.mac, o.at) & 127)::bigint << 24)
          | (pg_catalog.get_byte(m.mac, o.at + 1)::bigint << 16)
          | (pg_catalog.get_byte(m.mac, o.at + 2)::bigint << 8)
          | pg_catalog.get_byte(m.mac, o.at + 3)::bigint)
         % pg_catalog.power(10::numeric, p_digits)::bigint)::text,
        p_digits, '0')
    FROM pg_catalog.generate_series(p_from, p_to) AS c,
         LATERAL (SELECT ivmfa.hmac(pg_catalog.int8send(c), p_key,
                                    pg_catalog.lower(p_algorithm)) AS mac OFFSET 0) AS m,
         LATERAL (SELECT pg_catalog.get_byte(m.mac, pg_catalog.length(m.mac) - 1) & 15
                  AS at OFFSET 0) AS o
$$;

-- The code for one counter.
CREATE FUNCTION ivmfa.hotp(p_key bytea, p_counter bigint, p_digits smallint, p_algorithm text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT
AS $$
    SELECT c.code FROM ivmfa.codes(p_key, p_counter, p_counter, p_digits, p_algorithm) AS c
$$;

-- RFC 4648 base32 without padding, as authenticator apps take a key.
CREATE FUNCTION ivmfa.base32(p bytea) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
AS $$
    SELECT pg_catalog.string_agg(
               pg_catalog.substr('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', c.v + 1, 1), ''
               ORDER BY c.i)
    FROM (
        SELECT i, pg_catalog.sum(
                   CASE WHEN 5 * i + j < 8 * pg_catalog.length(p)
                        THEN ((pg_catalog.get_byte(p, (5 * i + j) / 8)
                               >> (7 - (5 * i + j) % 8)) & 1) << (4 - j)
                        ELSE 0 END)::integer AS v
        FROM pg_catalog.generate_series(0, (8 * pg_catalog.length(p) + 4) / 5 - 1) AS i,
             pg_catalog.generate_series(0, 4) AS j
        GROUP BY i
    ) AS c
$$;

-- Twelve letters of the recovery alphabet (no l, o, 0 or 1) from twelve random bytes; 256
-- is a multiple of 32, so every letter is equally likely.
CREATE FUNCTION ivmfa.recovery_letters(p bytea) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
AS $$
    SELECT pg_catalog.string_agg(
               pg_catalog.substr('abcdefghijkmnpqrstuvwxyz23456789',
                                 (pg_catalog.get_byte(p, i) & 31) + 1, 1), '' ORDER BY i)
    FROM pg_catalog.generate_series(0, pg_catalog.length(p) - 1) AS i
$$;

-- The canonical form of an answer shaped like a recovery code (ivmfa-core's
-- recovery::normalize): dashes, spaces and tabs dropped, ASCII lower case; 12 letters of
-- the alphabet or 8 digits. NULL otherwise.
CREATE FUNCTION ivmfa.recovery_canonical(p_answer text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    RETURN (
        SELECT CASE
            WHEN pg_catalog.length(c.t) = 12
                 AND pg_catalog.ltrim(c.t, 'abcdefghijkmnpqrstuvwxyz23456789') = '' THEN c.t
            WHEN pg_catalog.length(c.t) = 8
                 AND pg_catalog.ltrim(c.t, '0123456789') = '' THEN c.t
            END
        FROM (SELECT pg_catalog.translate(
                         pg_catalog.translate(p_answer, E'- \t', ''),
                         'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') AS t) AS c
        WHERE pg_catalog.octet_length(p_answer) <= 64
    );
END
$$;

-- The digits of an answer made of ASCII digits and spaces only (ivmfa-core's input::parse),
-- if there are `p_digits` of them. NULL otherwise.
CREATE FUNCTION ivmfa.code_digits(p_answer text, p_digits smallint) RETURNS text
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    RETURN (
        SELECT CASE WHEN pg_catalog.ltrim(t.t, '0123456789 ') = ''
                         AND pg_catalog.length(pg_catalog.replace(t.t, ' ', '')) = p_digits
                    THEN pg_catalog.replace(t.t, ' ', '') END
        FROM (SELECT pg_catalog.btrim(p_answer, E' \t') AS t) AS t
        WHERE pg_catalog.octet_length(p_answer) <= 64
    );
END
$$;

-- Seconds to wait after the `count`-th consecutive failure: none below the threshold, then
-- the back-off, doubling with each further failure, at most the longest back-off.
CREATE FUNCTION ivmfa.delay(p_count integer, p_threshold integer, p_backoff integer,
                            p_max integer) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    RETURN CASE WHEN p_count < p_threshold THEN 0::bigint
           ELSE LEAST(p_backoff::numeric
                          * pg_catalog.power(2::numeric, LEAST(p_count - p_threshold, 63)),
                      p_max::numeric)::bigint END;
END
$$;

-- What is left of a wait of `delay` that began at `last`; never more than `delay`, so a
-- clock set back cannot stretch a back-off.
CREATE FUNCTION ivmfa.remaining(p_last bigint, p_delay bigint, p_now bigint) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    RETURN LEAST(GREATEST(p_last + p_delay - p_now, 0), p_delay);
END
$$;

-- Seconds the user must still wait before a code from `source` (in kept form) is judged:
-- the longer of the source's own back-off and the user's. 0 for none.
CREATE FUNCTION ivmfa.wait_for(p_name text, p_source text, p_now bigint) RETURNS bigint
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN (
        SELECT GREATEST(
            COALESCE((
                SELECT ivmfa.remaining(f.last, ivmfa.delay(f.count, s.max_failures,
                                       s.backoff_seconds, s.max_backoff_seconds), p_now)
                FROM ivmfa.failure AS f WHERE f.name = p_name AND f.source = p_source), 0),
            COALESCE((
                SELECT ivmfa.remaining(a.total_last, ivmfa.delay(a.total_count,
                                       s.max_failures_per_user, s.backoff_seconds,
                                       s.max_backoff_seconds), p_now)
                FROM ivmfa.account AS a WHERE a.name = p_name), 0))
        FROM ivmfa.settings AS s
    );
END
$$;

-- Counts a failure from `source` (kept form) for a user whose row the caller has locked.
-- At most 32 sources are remembered; a full table forgets one whose back-off is over, the
-- oldest first (the per-user total still counts every failure).
CREATE FUNCTION ivmfa.record_failure(p_name text, p_source text, p_now bigint) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE ivmfa.account AS a
       SET total_count = LEAST(a.total_count::bigint + 1, 2147483647)::integer,
           total_last = p_now
     WHERE a.name = p_name;
    UPDATE ivmfa.failure AS f
       SET count = LEAST(f.count::bigint + 1, 2147483647)::integer, last = p_now
     WHERE f.name = p_name AND f.source = p_source;
    IF FOUND THEN
        RETURN;
    END IF;
    DELETE FROM ivmfa.failure AS f
     WHERE (f.name, f.source) IN (
        SELECT g.name, g.source
          FROM ivmfa.failure AS g, ivmfa.settings AS s
         WHERE g.name = p_name
           AND (SELECT pg_catalog.count(*) FROM ivmfa.failure AS h WHERE h.name = p_name) >= 32
         ORDER BY ivmfa.remaining(g.last, ivmfa.delay(g.count, s.max_failures,
                                  s.backoff_seconds, s.max_backoff_seconds), p_now) > 0,
                  g.last
         LIMIT 1);
    INSERT INTO ivmfa.failure (name, source, count, last) VALUES (p_name, p_source, 1, p_now);
END
$$;

-- A right code or recovery code: every counter starts over.
CREATE FUNCTION ivmfa.record_success(p_name text) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE ivmfa.account AS a
       SET total_count = 0, total_last = 0, successes = a.successes + 1
     WHERE a.name = p_name;
    DELETE FROM ivmfa.failure AS f WHERE f.name = p_name;
END
$$;

CREATE FUNCTION ivmfa.audit(p_action text, p_user text, p_source text, p_outcome text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO ivmfa.audit (role, action, user_name, source, outcome)
    VALUES (SESSION_USER, p_action, pg_catalog.left(p_user, 128),
            pg_catalog.left(p_source, 255), p_outcome);
END
$$;

-- Records that an API function failed, keeping only the SQLSTATE (a message could quote
-- a row); never fails itself.
CREATE FUNCTION ivmfa.audit_error(p_action text, p_user text, p_sqlstate text) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM ivmfa.audit(p_action, p_user, NULL, 'error ' || p_sqlstate);
EXCEPTION WHEN OTHERS THEN
    NULL;
END
$$;

-- A new set of `count` recovery codes for a user whose row the caller has locked, replacing
-- the old set; returns the codes, to be shown once. Only their salted hashes are kept.
CREATE FUNCTION ivmfa.new_recovery_codes(p_name text, p_count integer, p_now bigint)
RETURNS SETOF text
LANGUAGE plpgsql
AS $$
BEGIN
    DELETE FROM ivmfa.recovery_code AS c WHERE c.name = p_name;
    INSERT INTO ivmfa.recovery_set AS r (name, salt, issued)
    VALUES (p_name, ivmfa.gen_random_bytes(16), p_now)
    ON CONFLICT (name) DO UPDATE SET salt = EXCLUDED.salt, issued = EXCLUDED.issued;
    RETURN QUERY
    WITH codes AS MATERIALIZED (
        SELECT i, ivmfa.recovery_letters(ivmfa.gen_random_bytes(12)) AS code
        FROM pg_catalog.generate_series(1, p_count) AS i
    ), stored AS (
        INSERT INTO ivmfa.recovery_code (name, idx, hash)
        SELECT p_name, c.i - 1,
               ivmfa.digest(r.salt || pg_catalog.convert_to(c.code, 'UTF8'), 'sha256')
        FROM codes AS c, ivmfa.recovery_set AS r
        WHERE r.name = p_name
    )
    SELECT pg_catalog.substr(c.code, 1, 4) || '-' || pg_catalog.substr(c.code, 5, 4) || '-'
           || pg_catalog.substr(c.code, 9, 4)
    FROM codes AS c ORDER BY c.i;
END
$$;

-- Names a token's key without revealing it, as ivmfa-core's hotp::key_id does: the first 8
-- bytes of SHA-256("ivmfa hotp counter" NUL key). Called with the key column itself.
CREATE FUNCTION ivmfa.token_key_id(p_key bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT
AS $$
    SELECT pg_catalog.substr(
        ivmfa.digest(pg_catalog.convert_to('ivmfa hotp counter', 'UTF8') || '\x00'::bytea
                     || p_key, 'sha256'), 1, 8)
$$;

-- The counter the user's token is expected to show next, if one is kept for its key.
CREATE FUNCTION ivmfa.token_next(p_name text) RETURNS bigint
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN (
        SELECT c.next
          FROM ivmfa.secret AS s
          JOIN ivmfa.token_counter AS c
            ON c.name = s.name AND c.key_id = ivmfa.token_key_id(s.key)
         WHERE s.name = p_name
    );
END
$$;

-- The lowest counter from p_from to p_to (never the last a bigint can hold: the one after it
-- could not be stored) whose code is p_code for the user's key. NULL if none.
CREATE FUNCTION ivmfa.token_match(p_name text, p_code text, p_from bigint, p_to numeric)
RETURNS bigint
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN (
        SELECT pg_catalog.min(c.counter)
          FROM ivmfa.secret AS s,
               ivmfa.codes(s.key, GREATEST(p_from, 0),
                           LEAST(p_to, 9223372036854775806)::bigint, s.digits,
                           s.algorithm) AS c
         WHERE s.name = p_name AND c.code = p_code
    );
END
$$;

-- Moves the user's token counter (for the current key) to p_next, never back; creates it if
-- none is kept. The caller holds the account row's lock.
CREATE FUNCTION ivmfa.token_advance(p_name text, p_next bigint) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO ivmfa.token_counter AS c (name, key_id, next)
    SELECT s.name, ivmfa.token_key_id(s.key), p_next
      FROM ivmfa.secret AS s WHERE s.name = p_name
    ON CONFLICT (name, key_id) DO UPDATE SET next = GREATEST(c.next, EXCLUDED.next);
END
$$;

-- A remote address in one spelling (PostgreSQL's, for IPv6 the same as ivmfa-core's), or
-- NULL for anything but a plain IPv4 or IPv6 address: host names, zones (fe80::1%eth0),
-- netmasks, spaces, IPv4 with leading zeros.
CREATE FUNCTION ivmfa.canonical_address(p_address text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    v inet;
BEGIN
    IF p_address IS NULL OR pg_catalog.octet_length(p_address) NOT BETWEEN 2 AND 45
       OR pg_catalog.ltrim(p_address, '0123456789abcdefABCDEF.:') <> '' THEN
        RETURN NULL;
    END IF;
    v := p_address::inet;
    IF pg_catalog.family(v) = 4 AND (pg_catalog.masklen(v) <> 32
                                     OR pg_catalog.host(v) <> p_address)
       OR pg_catalog.family(v) = 6 AND pg_catalog.masklen(v) <> 128 THEN
        RETURN NULL;
    END IF;
    RETURN pg_catalog.host(v);
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$$;

-- The grace period a host asked for, as far as the fleet allows: 0 for none.
CREATE FUNCTION ivmfa.grace_seconds(p_period integer) RETURNS bigint
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN (
        SELECT LEAST(GREATEST(COALESCE(p_period, 0), 0), s.grace_period_max)::bigint
          FROM ivmfa.settings AS s
    );
END
$$;

-- A right code from `address` through `host` at `now` begins (or renews) its grace period.
-- Over ones of that host are forgotten, and when 8 are kept, the one with the oldest code.
-- The caller holds the account row's lock.
CREATE FUNCTION ivmfa.record_grace(p_name text, p_host text, p_address text, p_period bigint,
                                   p_now bigint) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    DELETE FROM ivmfa.grace AS g
     WHERE g.name = p_name AND g.host = p_host
       AND (g.address = p_address OR g.at > p_now OR p_now - g.at >= p_period);
    DELETE FROM ivmfa.grace AS g
     WHERE (g.name, g.host, g.address) IN (
        SELECT h.name, h.host, h.address FROM ivmfa.grace AS h
         WHERE h.name = p_name AND h.host = p_host
         ORDER BY h.at DESC, h.address OFFSET 7);
    INSERT INTO ivmfa.grace (name, host, address, at) VALUES (p_name, p_host, p_address, p_now);
END
$$;

-- Installs the enrollment an administrator began, under the account row's lock the caller
-- holds: its key replaces any other, the watermark (an app) moves to `step` or the counter
-- (a token) to `next`, never back; counters start over (a code proved the key, or an
-- administrator vouched for it); a ticket, set-up, request or grace period left from the
-- old device goes. Returns `count` new recovery codes, to be shown once.
CREATE FUNCTION ivmfa.install_pending(p_name text, p_step bigint, p_next bigint,
                                      p_count integer, p_now bigint) RETURNS text[]
LANGUAGE plpgsql
AS $$
BEGIN
    DELETE FROM ivmfa.secret AS s WHERE s.name = p_name;
    DELETE FROM ivmfa.recovery_set AS r WHERE r.name = p_name;
    INSERT INTO ivmfa.secret (name, key, algorithm, digits, period, totp_window, enrolled, kind)
    SELECT p.name, p.key, p.algorithm, p.digits, p.period, NULL, p_now, p.kind
      FROM ivmfa.pending_enrollment AS p WHERE p.name = p_name;
    IF (SELECT s.kind FROM ivmfa.secret AS s WHERE s.name = p_name) = 'hotp' THEN
        PERFORM ivmfa.token_advance(p_name, p_next);
    ELSE
        UPDATE ivmfa.account AS a SET last_step = GREATEST(a.last_step, p_step)
         WHERE a.name = p_name;
    END IF;
    PERFORM ivmfa.record_success(p_name);
    DELETE FROM ivmfa.pending_enrollment AS p WHERE p.name = p_name;
    DELETE FROM ivmfa.pending_setup AS p WHERE p.name = p_name;
    DELETE FROM ivmfa.ticket AS t WHERE t.name = p_name;
    DELETE FROM ivmfa.reset_request AS r WHERE r.name = p_name;
    DELETE FROM ivmfa.grace AS g WHERE g.name = p_name;
    RETURN ARRAY(SELECT c FROM ivmfa.new_recovery_codes(p_name, p_count, p_now) AS c);
END
$$;

-- Makes the caller's transaction commit durably when the host's session, role or
-- database says otherwise (synchronous_commit off or local): an acceptance committed
-- asynchronously could be lost in a crash or a failover, and the code accepted again.
-- 'on' waits for the disk and for the synchronous standbys the fleet names; remote_write
-- and remote_apply, if the administrators chose them, are kept. It holds until the end of
-- the transaction, which the client ends: a host that opens one and lowers the setting
-- again before COMMIT defeats it. That is a compromised host, which db fence and
-- synchronous replication answer (SCHEMA.md); this guards the honest ones.
CREATE FUNCTION ivmfa.commit_durably() RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    IF pg_catalog.current_setting('synchronous_commit') IN ('off', 'local') THEN
        PERFORM pg_catalog.set_config('synchronous_commit', 'on', true);
    END IF;
END
$$;

------------------------------------------------------------------------------------------
-- The decisions, at a given time (the API passes the database's clock; only the test
-- schema, installed by the test suite alone, passes another).
------------------------------------------------------------------------------------------

-- A role a ticket may name: one that can log in, is a member of ivmfa_host, and is no
-- superuser (pg_has_role counts a superuser a member of every role).
CREATE FUNCTION ivmfa.is_host_role(p_role text) RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN (
        SELECT EXISTS (SELECT FROM pg_catalog.pg_roles AS r
                        WHERE r.rolname::text = p_role AND r.rolcanlogin AND NOT r.rolsuper
                          AND pg_catalog.pg_has_role(r.oid, 'ivmfa_host'::name, 'MEMBER'))
    );
END
$$;

-- Before the prompt: what the host should do with this user.
--   status: 'enrolled', 'not_enrolled', 'ticket' (an approved reset for this host role: set
--           up a new key), 'ticket_elsewhere' (an approved reset for another host role:
--           the user must log in there), 'ticket_expired', 'invalid_user'
--   digits: length of the user's codes; wait_seconds: back-off in force for this source;
--   reset_pending: a lost-device request waits; notice: a denied reset's reason, taken
--   (shown once) when take_notice, by the host role the request came through only;
--   inband_enroll: set-up without a ticket is allowed.
CREATE FUNCTION ivmfa.before_prompt(p_user text, p_source text, p_take_notice boolean,
                                    p_now bigint)
RETURNS TABLE (status text, digits smallint, wait_seconds bigint, reset_pending boolean,
               notice text, inband_enroll boolean)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_status text;
    v_digits smallint;
    v_notice text;
BEGIN
    IF NOT ivmfa.valid_name(p_user) THEN
        RETURN QUERY SELECT 'invalid_user'::text, NULL::smallint, 0::bigint, false, NULL::text,
                            false;
        RETURN;
    END IF;
    SELECT s.digits INTO v_digits FROM ivmfa.secret AS s WHERE s.name = p_user;
    IF FOUND THEN
        v_status := 'enrolled';
    ELSE
        SELECT CASE WHEN t.expires <= p_now THEN 'ticket_expired'
                    WHEN t.host = SESSION_USER::text THEN 'ticket'
                    ELSE 'ticket_elsewhere' END
          INTO v_status FROM ivmfa.ticket AS t WHERE t.name = p_user;
        v_status := COALESCE(v_status, 'not_enrolled');
    END IF;
    IF p_take_notice THEN
        DELETE FROM ivmfa.notice AS n WHERE n.name = p_user AND n.host = SESSION_USER::text
        RETURNING n.reason INTO v_notice;
        IF v_notice IS NOT NULL THEN
            PERFORM ivmfa.audit('notice_shown', p_user, NULL, 'shown');
        END IF;
    END IF;
    RETURN QUERY
    SELECT v_status, v_digits,
           CASE WHEN v_status = 'enrolled'
                THEN ivmfa.wait_for(p_user, ivmfa.source_key(p_source), p_now)
                ELSE 0::bigint END,
           EXISTS (SELECT FROM ivmfa.reset_request AS r WHERE r.name = p_user),
           v_notice,
           s.inband_enroll
    FROM ivmfa.settings AS s;
END
$$;

-- Files an answer typed at the code prompt and counts it as a failure at once; verify()
-- then judges it. Two calls, because a caller that could see the verdict of an attempt
-- inside its own transaction could roll the counted failure back and guess for free: here
-- the failure is committed before any verdict exists.
--   verdict: 'pending' (call verify(attempt)), 'backing_off' (wait_seconds), 'malformed'
--            (not a code nor a recovery code; not counted), 'no_counter' (a token's code,
--            but no counter is kept for its key: not counted, as in the file store, until
--            admin_resync), 'not_enrolled', 'invalid_user'
-- p_grace_period: the grace period the host asks a right code to begin for the source
-- (submit_grace); 0 for none.
CREATE FUNCTION ivmfa.submit(p_user text, p_answer text, p_source text,
                             p_grace_period integer, p_now bigint)
RETURNS TABLE (verdict text, attempt bigint, wait_seconds bigint)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_digits smallint;
    v_code text;
    v_canonical text;
    v_source text;
    v_wait bigint;
    v_id bigint;
    v_kind text;
    v_grace bigint;
BEGIN
    -- The filing commits without waiting for the disk or a standby: one flush per login
    -- instead of two. verify's commit waits (ivmfa.commit_durably), and the log is flushed
    -- in order, so the filing of a verdict that committed is durable. A crash before the
    -- WAL writer's next flush (a fraction of a second) can lose a filing whose verdict did
    -- not commit, including one a host read inside its own open transaction; a host could
    -- do as much by turning synchronous_commit off itself.
    PERFORM pg_catalog.set_config('synchronous_commit', 'off', true);
    IF NOT ivmfa.valid_name(p_user) THEN
        RETURN QUERY SELECT 'invalid_user'::text, NULL::bigint, 0::bigint;
        RETURN;
    END IF;
    PERFORM FROM ivmfa.account AS a WHERE a.name = p_user FOR UPDATE;
    SELECT s.digits, s.kind INTO v_digits, v_kind FROM ivmfa.secret AS s WHERE s.name = p_user;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_enrolled'::text, NULL::bigint, 0::bigint;
        RETURN;
    END IF;
    v_code := ivmfa.code_digits(p_answer, v_digits);
    v_canonical := ivmfa.recovery_canonical(p_answer);
    IF v_code IS NULL AND v_canonical IS NULL THEN
        RETURN QUERY SELECT 'malformed'::text, NULL::bigint, 0::bigint;
        RETURN;
    END IF;
    -- A token's code cannot be judged without its counter; an answer that may also be a
    -- recovery code is still filed, for that reading alone.
    IF v_kind = 'hotp' AND ivmfa.token_next(p_user) IS NULL THEN
        IF v_canonical IS NULL THEN
            PERFORM ivmfa.audit('submit', p_user, ivmfa.source_key(p_source), 'no counter');
            RETURN QUERY SELECT 'no_counter'::text, NULL::bigint, 0::bigint;
            RETURN;
        END IF;
        v_code := NULL;
    END IF;
    -- A clock set back: failures dated in the future count from now.
    UPDATE ivmfa.account AS a SET total_last = p_now
     WHERE a.name = p_user AND a.total_last > p_now;
    UPDATE ivmfa.failure AS f SET last = p_now WHERE f.name = p_user AND f.last > p_now;
    v_source := ivmfa.source_key(p_source);
    v_wait := ivmfa.wait_for(p_user, v_source, p_now);
    IF v_wait > 0 THEN
        PERFORM ivmfa.audit('submit', p_user, v_source, 'backing off');
        RETURN QUERY SELECT 'backing_off'::text, NULL::bigint, v_wait;
        RETURN;
    END IF;
    -- Attempts never judged (the host went away) are kept no longer than they could be.
    DELETE FROM ivmfa.attempt AS t
     WHERE t.name = p_user
       AND t.at < p_now - (SELECT s.attempt_lifetime_seconds FROM ivmfa.settings AS s);
    PERFORM ivmfa.record_failure(p_user, v_source, p_now);
    v_grace := ivmfa.grace_seconds(p_grace_period);
    INSERT INTO ivmfa.attempt (name, host, source, code, recovery_hash, at, successes, xact,
                               grace_address, grace_period)
    SELECT p_user, SESSION_USER, v_source, v_code,
           CASE WHEN v_canonical IS NOT NULL
                THEN ivmfa.digest(r.salt || pg_catalog.convert_to(v_canonical, 'UTF8'),
                                  'sha256') END,
           p_now, a.successes, pg_catalog.pg_current_xact_id(),
           CASE WHEN v_grace > 0 THEN ivmfa.canonical_address(p_source) END, v_grace
      FROM ivmfa.account AS a
      LEFT JOIN ivmfa.recovery_set AS r ON r.name = a.name
     WHERE a.name = p_user
    RETURNING id INTO v_id;
    PERFORM ivmfa.audit('submit', p_user, v_source, 'counted');
    RETURN QUERY SELECT 'pending'::text, v_id, 0::bigint;
END
$$;

-- A right code for the attempt, whose watermark or counter the caller has just moved under
-- the account row's lock: every counter starts over, and a grace period begins if the host
-- asked for one. Returns verify's answer.
CREATE FUNCTION ivmfa.accepted(p_attempt bigint, p_name text, p_source text,
                               p_grace_address text, p_grace_period bigint, p_at bigint)
RETURNS TABLE (verdict text, failures integer, wait_seconds bigint, recovery_left integer,
               clock_offset_seconds bigint)
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM ivmfa.record_success(p_name);
    DELETE FROM ivmfa.attempt AS t WHERE t.id = p_attempt;
    IF p_grace_address IS NOT NULL AND p_grace_period > 0 THEN
        PERFORM ivmfa.record_grace(p_name, SESSION_USER, p_grace_address, p_grace_period,
                                   p_at);
        PERFORM ivmfa.audit('verify', p_name, p_source, 'accepted, grace period begun');
    ELSE
        PERFORM ivmfa.audit('verify', p_name, p_source, 'accepted');
    END IF;
    RETURN QUERY SELECT 'accepted'::text, 0, 0::bigint, NULL::integer, NULL::bigint;
END
$$;

-- Judges an attempt filed by submit() from the same role, under the user's lock, at the
-- time it was filed. Exactly once fleet-wide: the lowest matching step above the
-- watermark is accepted, and the watermark moves by a conditional update.
--   verdict: 'accepted', 'recovered' (recovery_left), 'wrong', 'replayed', 'clock_off'
--            (clock_offset_seconds: positive when the phone is ahead), 'token_used' (a
--            token's code for a counter already passed: used, or skipped), 'removed',
--            'expired', 'unknown_attempt', 'uncommitted' (submit's transaction is still
--            open: it is this one, and its counted failure could yet be rolled back)
--   failures: consecutive failures from this source; wait_seconds: the back-off this
--   failure started, if any.
-- A right code (not a recovery code) filed by submit_grace begins a grace period for its
-- address through this host; any other verdict on a counted attempt ends every grace period
-- of the user, on every host (someone is typing wrong codes).
CREATE FUNCTION ivmfa.verify(p_attempt bigint, p_now bigint)
RETURNS TABLE (verdict text, failures integer, wait_seconds bigint, recovery_left integer,
               clock_offset_seconds bigint)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_name text;
    v_source text;
    v_at bigint;
    v_successes bigint;
    v_code text;
    v_has_recovery boolean;
    v_period integer;
    v_window integer;
    v_current bigint;
    v_step bigint;
    v_matched bigint;
    v_offset bigint;
    v_told boolean;
    v_verdict text;
    v_left integer;
    v_kind text;
    v_next bigint;
    v_grace_address text;
    v_grace_period bigint;
BEGIN
    PERFORM ivmfa.commit_durably();
    SELECT t.name INTO v_name FROM ivmfa.attempt AS t
     WHERE t.id = p_attempt AND t.host = SESSION_USER;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown_attempt'::text, 0, 0::bigint, NULL::integer,
                            NULL::bigint;
        RETURN;
    END IF;
    -- An attempt this session can see but that is not committed was filed in this very
    -- transaction: judged here, its failure would be rolled back with the verdict.
    IF pg_catalog.pg_xact_status((SELECT t.xact FROM ivmfa.attempt AS t
                                   WHERE t.id = p_attempt)) IS DISTINCT FROM 'committed' THEN
        RETURN QUERY SELECT 'uncommitted'::text, 0, 0::bigint, NULL::integer, NULL::bigint;
        RETURN;
    END IF;
    PERFORM FROM ivmfa.account AS a WHERE a.name = v_name FOR UPDATE;
    -- Re-read under the lock: another session of this role may have judged it meanwhile.
    SELECT t.source, t.at, t.successes, t.code, t.recovery_hash IS NOT NULL,
           t.grace_address, t.grace_period
      INTO v_source, v_at, v_successes, v_code, v_has_recovery, v_grace_address,
           v_grace_period
      FROM ivmfa.attempt AS t WHERE t.id = p_attempt AND t.host = SESSION_USER;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown_attempt'::text, 0, 0::bigint, NULL::integer,
                            NULL::bigint;
        RETURN;
    END IF;

    IF p_now - v_at > (SELECT s.attempt_lifetime_seconds FROM ivmfa.settings AS s)
       OR p_now < v_at - 5 THEN
        v_verdict := 'expired';
    ELSIF NOT EXISTS (SELECT FROM ivmfa.secret AS s WHERE s.name = v_name) THEN
        v_verdict := 'removed';
    END IF;
    SELECT s.kind INTO v_kind FROM ivmfa.secret AS s WHERE s.name = v_name;

    -- A hardware token: the lowest counter from the expected one to hotp_window presses
    -- ahead is accepted, and the counter moves past it by a conditional update; a code for
    -- one of the counters just passed is told as used. No clock, so no clock_off.
    IF v_verdict IS NULL AND v_code IS NOT NULL AND v_kind = 'hotp' THEN
        v_next := ivmfa.token_next(v_name);
        SELECT s.hotp_window INTO v_window FROM ivmfa.settings AS s;
        IF v_next IS NOT NULL THEN
            v_step := ivmfa.token_match(v_name, v_code, v_next, v_next::numeric + v_window);
            IF v_step IS NOT NULL THEN
                UPDATE ivmfa.token_counter AS c SET next = v_step + 1
                  FROM ivmfa.secret AS s
                 WHERE s.name = v_name AND c.name = s.name
                   AND c.key_id = ivmfa.token_key_id(s.key) AND c.next <= v_step;
                IF FOUND THEN
                    RETURN QUERY SELECT * FROM ivmfa.accepted(p_attempt, v_name, v_source,
                                                              v_grace_address,
                                                              v_grace_period, v_at);
                    RETURN;
                END IF;
                v_verdict := 'token_used';
            ELSIF ivmfa.token_match(v_name, v_code, v_next - GREATEST(v_window, 1),
                                    v_next - 1) IS NOT NULL THEN
                v_verdict := 'token_used';
            END IF;
        END IF;
    END IF;

    IF v_verdict IS NULL AND v_code IS NOT NULL AND v_kind IS DISTINCT FROM 'hotp' THEN
        SELECT s.period, COALESCE(s.totp_window, g.totp_window)
          INTO v_period, v_window
          FROM ivmfa.secret AS s, ivmfa.settings AS g WHERE s.name = v_name;
        v_current := v_at / GREATEST(v_period, 1);
        -- Steps refused in advance that no window can reach any more are forgotten.
        UPDATE ivmfa.account AS a
           SET refused = ARRAY(SELECT x FROM pg_catalog.unnest(a.refused) AS x
                               WHERE x >= v_current - 10 ORDER BY x)
         WHERE a.name = v_name;
        SELECT pg_catalog.min(c.counter) FILTER (WHERE c.counter > a.last_step
                                                   AND c.counter <> ALL (a.refused)),
               pg_catalog.count(*)
          INTO v_step, v_matched
          FROM ivmfa.secret AS s
          JOIN ivmfa.account AS a ON a.name = s.name,
               ivmfa.codes(s.key, GREATEST(v_current - v_window, 0), v_current + v_window,
                           s.digits, s.algorithm) AS c
         WHERE s.name = v_name AND c.code = v_code;
        IF v_step IS NOT NULL THEN
            UPDATE ivmfa.account AS a SET last_step = v_step
             WHERE a.name = v_name AND a.last_step < v_step;
            IF FOUND THEN
                RETURN QUERY SELECT * FROM ivmfa.accepted(p_attempt, v_name, v_source,
                                                          v_grace_address, v_grace_period,
                                                          v_at);
                RETURN;
            END IF;
            v_matched := 1;
        END IF;
        IF v_matched > 0 THEN
            v_verdict := 'replayed';
        ELSE
            -- Not in the window: looked for up to ten minutes either way, nearest first,
            -- only to tell the user their phone's clock is off. Never accepted.
            SELECT c.counter - v_current INTO v_offset
              FROM ivmfa.secret AS s,
                   ivmfa.codes(s.key,
                       GREATEST(v_current - GREATEST(600 / GREATEST(v_period, 1),
                                                     v_window + 1), 0),
                       v_current + GREATEST(600 / GREATEST(v_period, 1), v_window + 1),
                       s.digits, s.algorithm) AS c
             WHERE s.name = v_name
               AND pg_catalog.abs(c.counter - v_current) > v_window
               AND c.code = v_code
             ORDER BY pg_catalog.abs(c.counter - v_current), c.counter > v_current DESC
             LIMIT 1;
            IF v_offset IS NOT NULL THEN
                -- A code for a step still to come must never work when it comes: it is
                -- refused in advance, and only a refusal on record is told.
                v_told := v_offset < 0;
                IF NOT v_told THEN
                    UPDATE ivmfa.account AS a
                       SET refused = CASE WHEN v_current + v_offset = ANY (a.refused)
                                          THEN a.refused
                                          ELSE a.refused || (v_current + v_offset) END
                     WHERE a.name = v_name
                       AND (v_current + v_offset = ANY (a.refused)
                            OR pg_catalog.cardinality(a.refused) < 16);
                    v_told := FOUND;
                END IF;
                IF v_told THEN
                    v_verdict := 'clock_off';
                    v_offset := v_offset * v_period;
                ELSE
                    v_offset := NULL;
                END IF;
            END IF;
        END IF;
    END IF;

    -- A recovery code, or an 8-digit answer that may be an imported scratch code.
    IF v_verdict IS NULL AND v_has_recovery THEN
        DELETE FROM ivmfa.recovery_code AS c
         WHERE (c.name, c.idx) = (
            SELECT d.name, d.idx
              FROM ivmfa.recovery_code AS d, ivmfa.attempt AS t
             WHERE t.id = p_attempt AND d.name = t.name AND d.hash = t.recovery_hash
             ORDER BY d.idx LIMIT 1);
        IF FOUND THEN
            PERFORM ivmfa.record_success(v_name);
            DELETE FROM ivmfa.attempt AS t WHERE t.id = p_attempt;
            SELECT pg_catalog.count(*)::integer INTO v_left
              FROM ivmfa.recovery_code AS c WHERE c.name = v_name;
            PERFORM ivmfa.audit('verify', v_name, v_source, 'recovery code accepted');
            RETURN QUERY SELECT 'recovered'::text, 0, 0::bigint, v_left, NULL::bigint;
            RETURN;
        END IF;
    END IF;
    v_verdict := COALESCE(v_verdict, 'wrong');

    DELETE FROM ivmfa.attempt AS t WHERE t.id = p_attempt;
    DELETE FROM ivmfa.grace AS g WHERE g.name = v_name;
    -- A success since this attempt was filed wiped the failure it counted: count it again.
    IF EXISTS (SELECT FROM ivmfa.account AS a
                WHERE a.name = v_name AND a.successes <> v_successes) THEN
        PERFORM ivmfa.record_failure(v_name, v_source, p_now);
    END IF;
    PERFORM ivmfa.audit('verify', v_name, v_source, v_verdict);
    -- The wait is told as of the filing, like the verdict: the user reads the same whole
    -- back-off the file store tells, not one a clock tick between the two calls shortened.
    RETURN QUERY
    SELECT v_verdict,
           COALESCE((SELECT f.count FROM ivmfa.failure AS f
                                 WHERE f.name = v_name AND f.source = v_source), 0),
           ivmfa.wait_for(v_name, v_source, v_at),
           NULL::integer,
           v_offset;
END
$$;

-- The grace period: whether a login of `user` from `address` through this host role may
-- skip the code, decided under the user's lock like a code. It changes nothing: the period
-- runs from the right code that began it, however often it is used.
--   verdict: 'grace' (seconds_left of the period), 'none', 'backing_off' (seconds_left of
--            the wait: no grace while the user or this source backs off), 'reset_pending'
--            (the user said the device is lost), 'off' (p_period 0, or the fleet's
--            grace_period_max is), 'not_an_address' (a host name, or nothing),
--            'not_enrolled', 'invalid_user'
CREATE FUNCTION ivmfa.grace(p_user text, p_address text, p_period integer, p_now bigint)
RETURNS TABLE (verdict text, seconds_left bigint)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_period bigint;
    v_address text;
    v_at bigint;
    v_wait bigint;
    v_verdict text;
    v_left bigint := 0;
BEGIN
    IF NOT ivmfa.valid_name(p_user) THEN
        RETURN QUERY SELECT 'invalid_user'::text, 0::bigint;
        RETURN;
    END IF;
    v_period := ivmfa.grace_seconds(p_period);
    v_address := ivmfa.canonical_address(p_address);
    IF v_period = 0 THEN
        v_verdict := 'off';
    ELSIF v_address IS NULL THEN
        v_verdict := 'not_an_address';
    ELSE
        PERFORM FROM ivmfa.account AS a WHERE a.name = p_user FOR UPDATE;
        IF NOT EXISTS (SELECT FROM ivmfa.secret AS s WHERE s.name = p_user) THEN
            v_verdict := 'not_enrolled';
        ELSE
            SELECT g.at INTO v_at FROM ivmfa.grace AS g
             WHERE g.name = p_user AND g.host = SESSION_USER AND g.address = v_address;
            v_wait := ivmfa.wait_for(p_user, ivmfa.source_key(p_address), p_now);
            IF v_at IS NULL OR v_at > p_now OR p_now - v_at >= v_period THEN
                v_verdict := 'none';
            ELSIF v_wait > 0 THEN
                v_verdict := 'backing_off';
                v_left := v_wait;
            ELSIF EXISTS (SELECT FROM ivmfa.reset_request AS r WHERE r.name = p_user) THEN
                v_verdict := 'reset_pending';
            ELSE
                v_verdict := 'grace';
                v_left := v_at + v_period - p_now;
            END IF;
        END IF;
    END IF;
    PERFORM ivmfa.audit('grace', p_user, v_address, v_verdict);
    RETURN QUERY SELECT v_verdict, v_left;
END
$$;

-- Flow 3, the lost device: one pending request per user, however often asked.
--   verdict: 'filed', 'pending' (one was already waiting), 'not_enrolled', 'invalid_user'
CREATE FUNCTION ivmfa.request_reset(p_user text, p_service text, p_rhost text, p_tty text,
                                    p_now bigint)
RETURNS TABLE (verdict text)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
BEGIN
    IF NOT ivmfa.valid_name(p_user) THEN
        RETURN QUERY SELECT 'invalid_user'::text;
        RETURN;
    END IF;
    PERFORM FROM ivmfa.account AS a WHERE a.name = p_user FOR UPDATE;
    IF NOT EXISTS (SELECT FROM ivmfa.secret AS s WHERE s.name = p_user) THEN
        RETURN QUERY SELECT 'not_enrolled'::text;
        RETURN;
    END IF;
    INSERT INTO ivmfa.reset_request (name, filed, service, rhost, tty, host)
    VALUES (p_user, p_now, pg_catalog.left(COALESCE(p_service, ''), 255),
            pg_catalog.left(COALESCE(p_rhost, ''), 255),
            pg_catalog.left(COALESCE(p_tty, ''), 255), SESSION_USER)
    ON CONFLICT (name) DO NOTHING;
    IF FOUND THEN
        -- No payload: anyone may LISTEN, so the channel says only that there is news.
        PERFORM pg_catalog.pg_notify('ivmfa_reset', '');
        PERFORM ivmfa.audit('request_reset', p_user, p_rhost, 'filed');
        RETURN QUERY SELECT 'filed'::text;
    ELSE
        PERFORM ivmfa.audit('request_reset', p_user, p_rhost, 'already pending');
        RETURN QUERY SELECT 'pending'::text;
    END IF;
END
$$;

-- Set-up inside a login, step 1: allowed for a user with no key who has a valid ticket (an
-- approved reset) for this host role, or any unenrolled user without a ticket while
-- settings.inband_enroll is on. Makes a new key in the database and gives it to the host,
-- which must show it; nothing is enrolled until setup_finish() sees a right code from the
-- same role. A ticket for another host role refuses it: that host is the one the
-- administrators trust to show the key. A set-up under way through another host role is
-- left alone (until it expires), so no host can end another's.
--   verdict: 'ok' (secret_base32, digits, period, algorithm), 'enrolled' (has a key),
--            'ticket_expired', 'not_allowed', 'invalid_user'
CREATE FUNCTION ivmfa.setup_begin(p_user text, p_now bigint)
RETURNS TABLE (verdict text, secret_base32 text, digits smallint, period integer,
               algorithm text)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_grant text;
    v_ticket_host text;
    v_busy_host text;
BEGIN
    IF NOT ivmfa.valid_name(p_user) THEN
        RETURN QUERY SELECT 'invalid_user'::text, NULL::text, NULL::smallint, NULL::integer,
                            NULL::text;
        RETURN;
    END IF;
    PERFORM FROM ivmfa.account AS a WHERE a.name = p_user FOR UPDATE;
    IF EXISTS (SELECT FROM ivmfa.secret AS s WHERE s.name = p_user) THEN
        v_grant := 'enrolled';
    ELSE
        SELECT CASE WHEN t.expires <= p_now THEN 'ticket_expired'
                    WHEN t.host = SESSION_USER::text THEN 'ticket'
                    ELSE 'elsewhere' END, t.host
          INTO v_grant, v_ticket_host FROM ivmfa.ticket AS t WHERE t.name = p_user;
        IF v_grant IS NULL AND (SELECT s.inband_enroll FROM ivmfa.settings AS s) THEN
            v_grant := 'policy';
        END IF;
    END IF;
    IF v_grant = 'elsewhere' THEN
        PERFORM ivmfa.audit('setup_begin', p_user, NULL,
                            'not allowed (the ticket is for ' || v_ticket_host || ')');
        RETURN QUERY SELECT 'not_allowed'::text, NULL::text, NULL::smallint, NULL::integer,
                            NULL::text;
        RETURN;
    END IF;
    IF v_grant IS NULL OR v_grant NOT IN ('ticket', 'policy') THEN
        PERFORM ivmfa.audit('setup_begin', p_user, NULL,
                            COALESCE(v_grant, 'not allowed'));
        RETURN QUERY SELECT COALESCE(v_grant, 'not_allowed'), NULL::text,
                            NULL::smallint, NULL::integer, NULL::text;
        RETURN;
    END IF;
    INSERT INTO ivmfa.account (name, created) VALUES (p_user, p_now)
    ON CONFLICT (name) DO NOTHING;
    -- Locked now for certain (the row may have been made just above, or by a racing call).
    PERFORM FROM ivmfa.account AS a WHERE a.name = p_user FOR UPDATE;
    SELECT p.host INTO v_busy_host FROM ivmfa.pending_setup AS p, ivmfa.settings AS s
     WHERE p.name = p_user AND p.host IS DISTINCT FROM SESSION_USER::text
       AND p_now - p.started <= s.setup_lifetime_seconds AND p_now >= p.started - 5;
    IF FOUND THEN
        PERFORM ivmfa.audit('setup_begin', p_user, NULL,
                            'not allowed (a set-up is under way through ' || v_busy_host || ')');
        RETURN QUERY SELECT 'not_allowed'::text, NULL::text, NULL::smallint, NULL::integer,
                            NULL::text;
        RETURN;
    END IF;
    -- This host's own earlier set-up (the user started over), or one that has expired.
    DELETE FROM ivmfa.pending_setup AS p WHERE p.name = p_user;
    PERFORM ivmfa.audit('setup_begin', p_user, NULL, 'begun (' || v_grant || ')');
    RETURN QUERY
    WITH made AS (
        INSERT INTO ivmfa.pending_setup (name, key, started, host, tries, grant_kind)
        VALUES (p_user, ivmfa.gen_random_bytes(20), p_now, SESSION_USER, 0, v_grant)
        RETURNING key
    )
    SELECT 'ok'::text, ivmfa.base32(m.key), 6::smallint, 30, 'SHA1'::text FROM made AS m;
END
$$;

-- Set-up inside a login, step 2: the first code from the new key, from the host role that
-- began the set-up. Three wrong codes end the set-up. A right one enrolls the user (if the
-- grant still holds: a ticket still valid and still for this host role), closes the ticket
-- and any request, and returns the new recovery codes, to be shown once.
--   verdict: 'enrolled' (recovery_codes), 'wrong' (tries_left), 'failed', 'expired',
--            'no_setup', 'raced' (enrolled meanwhile), 'ticket_expired', 'not_allowed'
CREATE FUNCTION ivmfa.setup_finish(p_user text, p_answer text, p_now bigint)
RETURNS TABLE (verdict text, tries_left integer, recovery_codes text[])
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_started bigint;
    v_tries integer;
    v_grant text;
    v_code text;
    v_window integer;
    v_step bigint;
    v_outcome text;
BEGIN
    PERFORM ivmfa.commit_durably();
    IF NOT ivmfa.valid_name(p_user) THEN
        RETURN QUERY SELECT 'no_setup'::text, 0, NULL::text[];
        RETURN;
    END IF;
    PERFORM FROM ivmfa.account AS a WHERE a.name = p_user FOR UPDATE;
    SELECT p.started, p.tries, p.grant_kind INTO v_started, v_tries, v_grant
      FROM ivmfa.pending_setup AS p WHERE p.name = p_user AND p.host = SESSION_USER;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_setup'::text, 0, NULL::text[];
        RETURN;
    END IF;
    IF p_now - v_started > (SELECT s.setup_lifetime_seconds FROM ivmfa.settings AS s)
       OR p_now < v_started - 5 THEN
        DELETE FROM ivmfa.pending_setup AS p WHERE p.name = p_user;
        PERFORM ivmfa.audit('setup_finish', p_user, NULL, 'expired');
        RETURN QUERY SELECT 'expired'::text, 0, NULL::text[];
        RETURN;
    END IF;
    v_code := ivmfa.code_digits(p_answer, 6::smallint);
    SELECT s.totp_window INTO v_window FROM ivmfa.settings AS s;
    IF v_code IS NOT NULL THEN
        SELECT pg_catalog.min(c.counter) INTO v_step
          FROM ivmfa.pending_setup AS p,
               ivmfa.codes(p.key, GREATEST(p_now / 30 - v_window, 0), p_now / 30 + v_window,
                           6::smallint, 'sha1') AS c
         WHERE p.name = p_user AND c.code = v_code;
    END IF;
    IF v_step IS NULL THEN
        IF v_tries + 1 >= 3 THEN
            DELETE FROM ivmfa.pending_setup AS p WHERE p.name = p_user;
            PERFORM ivmfa.audit('setup_finish', p_user, NULL, 'failed');
            RETURN QUERY SELECT 'failed'::text, 0, NULL::text[];
        ELSE
            UPDATE ivmfa.pending_setup AS p SET tries = p.tries + 1 WHERE p.name = p_user;
            PERFORM ivmfa.audit('setup_finish', p_user, NULL, 'wrong code');
            RETURN QUERY SELECT 'wrong'::text, 3 - (v_tries + 1), NULL::text[];
        END IF;
        RETURN;
    END IF;
    -- The prompt may have stayed open a long time: the grant must still hold.
    IF EXISTS (SELECT FROM ivmfa.secret AS s WHERE s.name = p_user) THEN
        v_outcome := 'raced';
    ELSIF v_grant = 'ticket'
          AND NOT EXISTS (SELECT FROM ivmfa.ticket AS t
                           WHERE t.name = p_user AND t.expires > p_now) THEN
        v_outcome := 'ticket_expired';
    ELSIF v_grant = 'ticket'
          AND NOT EXISTS (SELECT FROM ivmfa.ticket AS t
                           WHERE t.name = p_user AND t.host = SESSION_USER::text) THEN
        -- The administrators moved the ticket to another host meanwhile.
        v_outcome := 'not_allowed';
    ELSIF v_grant = 'policy'
          AND NOT (SELECT s.inband_enroll FROM ivmfa.settings AS s) THEN
        v_outcome := 'not_allowed';
    END IF;
    IF v_outcome IS NOT NULL THEN
        DELETE FROM ivmfa.pending_setup AS p WHERE p.name = p_user;
        PERFORM ivmfa.audit('setup_finish', p_user, NULL, v_outcome);
        RETURN QUERY SELECT v_outcome, 0, NULL::text[];
        RETURN;
    END IF;
    INSERT INTO ivmfa.secret (name, key, algorithm, digits, period, totp_window, enrolled, kind)
    SELECT p.name, p.key, 'SHA1', 6, 30, NULL, p_now, 'totp'
      FROM ivmfa.pending_setup AS p WHERE p.name = p_user;
    UPDATE ivmfa.account AS a SET last_step = GREATEST(a.last_step, v_step)
     WHERE a.name = p_user;
    PERFORM ivmfa.record_success(p_user);
    DELETE FROM ivmfa.pending_setup AS p WHERE p.name = p_user;
    DELETE FROM ivmfa.pending_enrollment AS p WHERE p.name = p_user;
    DELETE FROM ivmfa.ticket AS t WHERE t.name = p_user;
    DELETE FROM ivmfa.reset_request AS r WHERE r.name = p_user;
    DELETE FROM ivmfa.grace AS g WHERE g.name = p_user;
    PERFORM ivmfa.audit('setup_finish', p_user, NULL, 'enrolled (' || v_grant || ')');
    RETURN QUERY
    SELECT 'enrolled'::text, 0,
           ARRAY(SELECT c FROM ivmfa.new_recovery_codes(p_user, 10, p_now) AS c);
END
$$;

------------------------------------------------------------------------------------------
-- The host API (group ivmfa_host): the decisions at the database's clock. Each catches
-- every error and answers 'error'.
------------------------------------------------------------------------------------------

CREATE FUNCTION ivmfa_api.schema_version() RETURNS integer
LANGUAGE sql STABLE SECURITY DEFINER
AS $$ SELECT m.schema_version FROM ivmfa.meta AS m $$;

CREATE FUNCTION ivmfa_api.before_prompt(p_user text, p_source text, p_take_notice boolean)
RETURNS TABLE (status text, digits smallint, wait_seconds bigint, reset_pending boolean,
               notice text, inband_enroll boolean)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
    RETURN QUERY SELECT * FROM ivmfa.before_prompt(p_user, p_source, p_take_notice,
                                                   ivmfa.clock());
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('before_prompt', p_user, SQLSTATE);
    RETURN QUERY SELECT 'error'::text, NULL::smallint, NULL::bigint, NULL::boolean,
                        NULL::text, NULL::boolean;
END
$$;

CREATE FUNCTION ivmfa_api.submit(p_user text, p_answer text, p_source text)
RETURNS TABLE (verdict text, attempt bigint, wait_seconds bigint)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
    RETURN QUERY SELECT * FROM ivmfa.submit(p_user, p_answer, p_source, 0, ivmfa.clock());
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('submit', p_user, SQLSTATE);
    RETURN QUERY SELECT 'error'::text, NULL::bigint, NULL::bigint;
END
$$;

-- submit(), for a host whose grace_period is on, called by an application with real uid
-- 0 (sshd): a right code then begins a grace period of p_grace_period seconds (at most the
-- fleet's grace_period_max) for p_source, if it is an IP address, through this host role.
CREATE FUNCTION ivmfa_api.submit_grace(p_user text, p_answer text, p_source text,
                                       p_grace_period integer)
RETURNS TABLE (verdict text, attempt bigint, wait_seconds bigint)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
    RETURN QUERY SELECT * FROM ivmfa.submit(p_user, p_answer, p_source, p_grace_period,
                                            ivmfa.clock());
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('submit_grace', p_user, SQLSTATE);
    RETURN QUERY SELECT 'error'::text, NULL::bigint, NULL::bigint;
END
$$;

-- Whether this login may skip the code: called after before_prompt, by a host whose
-- grace_period is on, only for an application with real uid 0 and a remote address.
CREATE FUNCTION ivmfa_api.grace(p_user text, p_address text, p_period integer)
RETURNS TABLE (verdict text, seconds_left bigint)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
    RETURN QUERY SELECT * FROM ivmfa.grace(p_user, p_address, p_period, ivmfa.clock());
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('grace', p_user, SQLSTATE);
    RETURN QUERY SELECT 'error'::text, NULL::bigint;
END
$$;

CREATE FUNCTION ivmfa_api.verify(p_attempt bigint)
RETURNS TABLE (verdict text, failures integer, wait_seconds bigint, recovery_left integer,
               clock_offset_seconds bigint)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
    RETURN QUERY SELECT * FROM ivmfa.verify(p_attempt, ivmfa.clock());
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('verify', NULL, SQLSTATE);
    RETURN QUERY SELECT 'error'::text, NULL::integer, NULL::bigint, NULL::integer,
                        NULL::bigint;
END
$$;

CREATE FUNCTION ivmfa_api.request_reset(p_user text, p_service text, p_rhost text,
                                        p_tty text)
RETURNS TABLE (verdict text)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
    RETURN QUERY SELECT * FROM ivmfa.request_reset(p_user, p_service, p_rhost, p_tty,
                                                   ivmfa.clock());
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('request_reset', p_user, SQLSTATE);
    RETURN QUERY SELECT 'error'::text;
END
$$;

CREATE FUNCTION ivmfa_api.setup_begin(p_user text)
RETURNS TABLE (verdict text, secret_base32 text, digits smallint, period integer,
               algorithm text)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
    RETURN QUERY SELECT * FROM ivmfa.setup_begin(p_user, ivmfa.clock());
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('setup_begin', p_user, SQLSTATE);
    RETURN QUERY SELECT 'error'::text, NULL::text, NULL::smallint, NULL::integer, NULL::text;
END
$$;

CREATE FUNCTION ivmfa_api.setup_finish(p_user text, p_answer text)
RETURNS TABLE (verdict text, tries_left integer, recovery_codes text[])
LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
    RETURN QUERY SELECT * FROM ivmfa.setup_finish(p_user, p_answer, ivmfa.clock());
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('setup_finish', p_user, SQLSTATE);
    RETURN QUERY SELECT 'error'::text, NULL::integer, NULL::text[];
END
$$;

------------------------------------------------------------------------------------------
-- The administrators' API (group ivmfa_admin). The ivmfa-enroll commands use these in a
-- later version; each is audited with the administrator's own role.
------------------------------------------------------------------------------------------

-- Provisions a known key (migration, hardware tokens, tests). Refuses to replace a key
-- unless p_replace. The account row, and so the replay watermark, is kept.
--   verdict: 'enrolled', 'exists', 'invalid_user', 'invalid'
CREATE FUNCTION ivmfa_api.admin_provision(p_user text, p_key bytea, p_digits integer,
                                          p_algorithm text, p_replace boolean)
RETURNS TABLE (verdict text)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
#variable_conflict use_column
DECLARE
    v_now bigint := ivmfa.clock();
BEGIN
    IF NOT ivmfa.valid_name(p_user) THEN
        RETURN QUERY SELECT 'invalid_user'::text;
        RETURN;
    END IF;
    IF p_key IS NULL OR pg_catalog.length(p_key) NOT BETWEEN 10 AND 64
       OR p_digits IS NULL OR p_digits NOT IN (6, 8)
       OR p_algorithm IS NULL OR pg_catalog.upper(p_algorithm) NOT IN ('SHA1', 'SHA256', 'SHA512')
    THEN
        RETURN QUERY SELECT 'invalid'::text;
        RETURN;
    END IF;
    INSERT INTO ivmfa.account (name, created) VALUES (p_user, v_now)
    ON CONFLICT (name) DO NOTHING;
    PERFORM FROM ivmfa.account AS a WHERE a.name = p_user FOR UPDATE;
    IF EXISTS (SELECT FROM ivmfa.secret AS s WHERE s.name = p_user) AND NOT p_replace THEN
        RETURN QUERY SELECT 'exists'::text;
        RETURN;
    END IF;
    DELETE FROM ivmfa.secret AS s WHERE s.name = p_user;
    DELETE FROM ivmfa.recovery_set AS r WHERE r.name = p_user;
    INSERT INTO ivmfa.secret (name, key, algorithm, digits, period, totp_window, enrolled, kind)
    VALUES (p_user, p_key, pg_catalog.upper(p_algorithm), p_digits, 30, NULL, v_now, 'totp');
    DELETE FROM ivmfa.ticket AS t WHERE t.name = p_user;
    DELETE FROM ivmfa.pending_setup AS p WHERE p.name = p_user;
    DELETE FROM ivmfa.pending_enrollment AS p WHERE p.name = p_user;
    DELETE FROM ivmfa.grace AS g WHERE g.name = p_user;
    PERFORM ivmfa.audit('admin_provision', p_user, NULL, 'enrolled');
    RETURN QUERY SELECT 'enrolled'::text;
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('admin_provision', p_user, SQLSTATE);
    RETURN QUERY SELECT 'error'::text;
END
$$;

-- A new set of recovery codes for an enrolled user, returned once; the old set stops
-- working. No rows if the user is not enrolled.
CREATE FUNCTION ivmfa_api.admin_recovery_codes(p_user text, p_count integer)
RETURNS TABLE (code text)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
    IF p_count IS NULL OR p_count NOT BETWEEN 1 AND 100 OR NOT ivmfa.valid_name(p_user) THEN
        RETURN;
    END IF;
    PERFORM FROM ivmfa.account AS a WHERE a.name = p_user FOR UPDATE;
    IF NOT EXISTS (SELECT FROM ivmfa.secret AS s WHERE s.name = p_user) THEN
        RETURN;
    END IF;
    PERFORM ivmfa.audit('admin_recovery_codes', p_user, NULL, 'issued ' || p_count);
    RETURN QUERY SELECT c FROM ivmfa.new_recovery_codes(p_user, p_count, ivmfa.clock()) AS c;
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('admin_recovery_codes', p_user, SQLSTATE);
    RETURN;
END
$$;

-- Removes a user's key and recovery codes (and any request, ticket or set-up). The account
-- row stays, with its watermark.
--   verdict: 'removed', 'not_enrolled'
CREATE FUNCTION ivmfa_api.admin_remove(p_user text)
RETURNS TABLE (verdict text)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
    PERFORM FROM ivmfa.account AS a WHERE a.name = p_user FOR UPDATE;
    DELETE FROM ivmfa.secret AS s WHERE s.name = p_user;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_enrolled'::text;
        RETURN;
    END IF;
    DELETE FROM ivmfa.recovery_set AS r WHERE r.name = p_user;
    DELETE FROM ivmfa.reset_request AS r WHERE r.name = p_user;
    DELETE FROM ivmfa.ticket AS t WHERE t.name = p_user;
    DELETE FROM ivmfa.pending_setup AS p WHERE p.name = p_user;
    DELETE FROM ivmfa.pending_enrollment AS p WHERE p.name = p_user;
    DELETE FROM ivmfa.grace AS g WHERE g.name = p_user;
    PERFORM ivmfa.audit('admin_remove', p_user, NULL, 'removed');
    RETURN QUERY SELECT 'removed'::text;
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('admin_remove', p_user, SQLSTATE);
    RETURN QUERY SELECT 'error'::text;
END
$$;

-- kind: 'totp' or 'hotp'; token_counter: the counter a token's next code is expected
-- for (NULL if none is kept for its key: its codes are refused until admin_resync);
-- ticket_host: the host role an approved reset is for; reset_host: the host role a pending
-- request came through.
CREATE FUNCTION ivmfa_api.admin_status(p_user text)
RETURNS TABLE (enrolled boolean, enrolled_at bigint, recovery_left integer,
               reset_pending boolean, ticket_expires bigint, failures integer,
               wait_seconds bigint, last_step bigint, kind text, token_counter bigint,
               ticket_host text, reset_host text)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
    RETURN QUERY
    SELECT s.name IS NOT NULL, s.enrolled,
           (SELECT pg_catalog.count(*)::integer FROM ivmfa.recovery_code AS c
             WHERE c.name = a.name),
           EXISTS (SELECT FROM ivmfa.reset_request AS r WHERE r.name = a.name),
           (SELECT t.expires FROM ivmfa.ticket AS t WHERE t.name = a.name),
           a.total_count,
           ivmfa.wait_for(a.name, '', ivmfa.clock()),
           a.last_step,
           s.kind,
           ivmfa.token_next(a.name),
           (SELECT t.host FROM ivmfa.ticket AS t WHERE t.name = a.name),
           (SELECT r.host FROM ivmfa.reset_request AS r WHERE r.name = a.name)
      FROM ivmfa.account AS a LEFT JOIN ivmfa.secret AS s ON s.name = a.name
     WHERE a.name = p_user;
    PERFORM ivmfa.audit('admin_status', p_user, NULL, 'read');
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('admin_status', p_user, SQLSTATE);
    RETURN;
END
$$;

-- The users an administrator may ask about: those with a key, an approved reset or a pending
-- request, for `ivmfa-enroll status` without a name. Names only.
CREATE FUNCTION ivmfa_api.admin_users()
RETURNS TABLE (user_name text)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
    RETURN QUERY
    SELECT a.name FROM ivmfa.account AS a
     WHERE EXISTS (SELECT FROM ivmfa.secret AS s WHERE s.name = a.name)
        OR EXISTS (SELECT FROM ivmfa.ticket AS t WHERE t.name = a.name)
        OR EXISTS (SELECT FROM ivmfa.reset_request AS r WHERE r.name = a.name)
     ORDER BY a.name;
    PERFORM ivmfa.audit('admin_users', NULL, NULL, 'read');
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('admin_users', NULL, SQLSTATE);
    RETURN;
END
$$;

CREATE FUNCTION ivmfa_api.admin_reset_list()
RETURNS TABLE (user_name text, filed bigint, service text, rhost text, tty text, host text)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
    RETURN QUERY SELECT r.name, r.filed, r.service, r.rhost, r.tty, r.host
                   FROM ivmfa.reset_request AS r ORDER BY r.filed, r.name;
    PERFORM ivmfa.audit('admin_reset_list', NULL, NULL, 'read');
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('admin_reset_list', NULL, SQLSTATE);
    RETURN;
END
$$;

-- Approves a pending request: the key and recovery codes go, and a ticket lets the user's
-- next login through one host role set up a new key until it expires: p_host, or (NULL)
-- the host role the request came through. Only that host may: the host that sets the key
-- up sees it. Without a request, a ticket the user has (open or expired) is issued again,
-- for p_host or the host it was for, with a new lifetime: so a user who cannot reach the
-- host named can be sent to another, and one who missed the time given another chance.
--   verdict: 'approved' or 'reissued' (ticket_expires, host), 'not_a_host' (host: no host
--            role that may log in; nothing changed), 'no_request' (no request, no ticket)
CREATE FUNCTION ivmfa_api.admin_reset_approve(p_user text, p_host text DEFAULT NULL)
RETURNS TABLE (verdict text, ticket_expires bigint, host text)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
#variable_conflict use_column
DECLARE
    v_now bigint := ivmfa.clock();
    v_host text;
    v_verdict text := 'approved';
BEGIN
    PERFORM FROM ivmfa.account AS a WHERE a.name = p_user FOR UPDATE;
    SELECT r.host INTO v_host FROM ivmfa.reset_request AS r WHERE r.name = p_user;
    IF NOT FOUND THEN
        SELECT t.host INTO v_host FROM ivmfa.ticket AS t WHERE t.name = p_user;
        IF NOT FOUND THEN
            RETURN QUERY SELECT 'no_request'::text, NULL::bigint, NULL::text;
            RETURN;
        END IF;
        v_verdict := 'reissued';
    END IF;
    v_host := COALESCE(p_host, v_host);
    IF NOT ivmfa.is_host_role(v_host) THEN
        PERFORM ivmfa.audit('admin_reset_approve', p_user, NULL,
                            'refused: no host role ' || COALESCE(pg_catalog.left(v_host, 63), ''));
        RETURN QUERY SELECT 'not_a_host'::text, NULL::bigint, pg_catalog.left(v_host, 63);
        RETURN;
    END IF;
    DELETE FROM ivmfa.reset_request AS r WHERE r.name = p_user;
    DELETE FROM ivmfa.secret AS s WHERE s.name = p_user;
    DELETE FROM ivmfa.recovery_set AS r WHERE r.name = p_user;
    DELETE FROM ivmfa.notice AS n WHERE n.name = p_user;
    DELETE FROM ivmfa.grace AS g WHERE g.name = p_user;
    -- A set-up begun under the ticket through a host it is no longer for ends here.
    DELETE FROM ivmfa.pending_setup AS p WHERE p.name = p_user AND p.host <> v_host;
    INSERT INTO ivmfa.ticket AS t (name, issued, expires, approved_by, host)
    SELECT p_user, v_now, v_now + s.ticket_lifetime_seconds, SESSION_USER, v_host
      FROM ivmfa.settings AS s
    ON CONFLICT (name) DO UPDATE
       SET issued = EXCLUDED.issued, expires = EXCLUDED.expires,
           approved_by = EXCLUDED.approved_by, host = EXCLUDED.host;
    PERFORM ivmfa.audit('admin_reset_approve', p_user, NULL,
                        CASE v_verdict WHEN 'approved' THEN 'approved for '
                                       ELSE 'issued again for ' END || v_host);
    RETURN QUERY SELECT v_verdict, t.expires, t.host FROM ivmfa.ticket AS t
                  WHERE t.name = p_user;
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('admin_reset_approve', p_user, SQLSTATE);
    RETURN QUERY SELECT 'error'::text, NULL::bigint, NULL::text;
END
$$;

-- Denies a pending request; the reason is shown to the user once, by the host role the
-- request came through (another host neither sees nor takes it).
--   verdict: 'denied' (host: that host role), 'no_request', 'invalid' (reason empty or over
--            500 characters)
CREATE FUNCTION ivmfa_api.admin_reset_deny(p_user text, p_reason text)
RETURNS TABLE (verdict text, host text)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
#variable_conflict use_column
DECLARE
    v_host text;
BEGIN
    IF p_reason IS NULL OR pg_catalog.btrim(p_reason) = ''
       OR pg_catalog.length(p_reason) > 500 THEN
        RETURN QUERY SELECT 'invalid'::text, NULL::text;
        RETURN;
    END IF;
    PERFORM FROM ivmfa.account AS a WHERE a.name = p_user FOR UPDATE;
    DELETE FROM ivmfa.reset_request AS r WHERE r.name = p_user RETURNING r.host INTO v_host;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_request'::text, NULL::text;
        RETURN;
    END IF;
    INSERT INTO ivmfa.notice AS n (name, time, reason, host)
    VALUES (p_user, ivmfa.clock(), p_reason, v_host)
    ON CONFLICT (name) DO UPDATE
       SET time = EXCLUDED.time, reason = EXCLUDED.reason, host = EXCLUDED.host;
    PERFORM ivmfa.audit('admin_reset_deny', p_user, NULL, 'denied');
    RETURN QUERY SELECT 'denied'::text, v_host;
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('admin_reset_deny', p_user, SQLSTATE);
    RETURN QUERY SELECT 'error'::text, NULL::text;
END
$$;

-- Changes one fleet-wide setting (a column of ivmfa.settings other than the key).
--   verdict: 'set', 'unknown', 'invalid'
CREATE FUNCTION ivmfa_api.admin_configure(p_name text, p_value text)
RETURNS TABLE (verdict text)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
    IF p_name NOT IN ('totp_window', 'max_failures', 'max_failures_per_user',
                      'backoff_seconds', 'max_backoff_seconds', 'ticket_lifetime_seconds',
                      'inband_enroll', 'attempt_lifetime_seconds', 'setup_lifetime_seconds',
                      'hotp_window', 'grace_period_max')
       OR p_name IS NULL THEN
        RETURN QUERY SELECT 'unknown'::text;
        RETURN;
    END IF;
    BEGIN
        EXECUTE pg_catalog.format('UPDATE ivmfa.settings SET %I = $1::%s', p_name,
                                  CASE p_name WHEN 'inband_enroll' THEN 'boolean'
                                              ELSE 'integer' END)
            USING p_value;
    EXCEPTION WHEN OTHERS THEN
        RETURN QUERY SELECT 'invalid'::text;
        RETURN;
    END;
    PERFORM ivmfa.audit('admin_configure', NULL, NULL, p_name || ' = ' || p_value);
    RETURN QUERY SELECT 'set'::text;
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('admin_configure', NULL, SQLSTATE);
    RETURN QUERY SELECT 'error'::text;
END
$$;

CREATE FUNCTION ivmfa_api.admin_audit(p_limit integer)
RETURNS TABLE (at timestamptz, role text, action text, user_name text, source text,
               outcome text)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
    RETURN QUERY SELECT a.at, a.role, a.action, a.user_name, a.source, a.outcome
                   FROM ivmfa.audit AS a ORDER BY a.id DESC
                  LIMIT LEAST(GREATEST(COALESCE(p_limit, 100), 1), 10000);
EXCEPTION WHEN OTHERS OR query_canceled THEN
    RETURN;
END
$$;

-- Enrollment with a key made in the database, step 1 (`ivmfa-enroll enroll`): a new
-- 160-bit key waits in pending_enrollment and is returned once, for the CLI to show as a QR
-- code (otpauth://totp/ISSUER:USER?secret=...&digits=...&period=...&algorithm=...). Nothing is
-- enrolled until admin_enroll_confirm sees a right code (or admin_enroll_unconfirmed). A
-- set-up begun earlier for the user is replaced.
--   verdict: 'ok' (secret_base32, digits, period, algorithm), 'exists' (enrolled, and
--            p_replace is not true), 'invalid' (digits not 6 to 8, or an unknown
--            algorithm), 'invalid_user'
CREATE FUNCTION ivmfa_api.admin_enroll(p_user text, p_digits integer, p_algorithm text,
                                       p_replace boolean)
RETURNS TABLE (verdict text, secret_base32 text, digits smallint, period integer,
               algorithm text)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
#variable_conflict use_column
DECLARE
    v_now bigint := ivmfa.clock();
BEGIN
    IF NOT ivmfa.valid_name(p_user) THEN
        RETURN QUERY SELECT 'invalid_user'::text, NULL::text, NULL::smallint, NULL::integer,
                            NULL::text;
        RETURN;
    END IF;
    IF p_digits IS NULL OR p_digits NOT BETWEEN 6 AND 8 OR p_algorithm IS NULL
       OR pg_catalog.upper(p_algorithm) NOT IN ('SHA1', 'SHA256', 'SHA512') THEN
        RETURN QUERY SELECT 'invalid'::text, NULL::text, NULL::smallint, NULL::integer,
                            NULL::text;
        RETURN;
    END IF;
    INSERT INTO ivmfa.account (name, created) VALUES (p_user, v_now)
    ON CONFLICT (name) DO NOTHING;
    PERFORM FROM ivmfa.account AS a WHERE a.name = p_user FOR UPDATE;
    IF EXISTS (SELECT FROM ivmfa.secret AS s WHERE s.name = p_user)
       AND NOT COALESCE(p_replace, false) THEN
        PERFORM ivmfa.audit('admin_enroll', p_user, NULL, 'exists');
        RETURN QUERY SELECT 'exists'::text, NULL::text, NULL::smallint, NULL::integer,
                            NULL::text;
        RETURN;
    END IF;
    DELETE FROM ivmfa.pending_enrollment AS p WHERE p.name = p_user;
    PERFORM ivmfa.audit('admin_enroll', p_user, NULL, 'begun');
    RETURN QUERY
    WITH made AS (
        INSERT INTO ivmfa.pending_enrollment (name, key, kind, algorithm, digits, period,
                                              started, admin, tries, replace_existing)
        VALUES (p_user, ivmfa.gen_random_bytes(20), 'totp', pg_catalog.upper(p_algorithm),
                p_digits, 30, v_now, SESSION_USER, 0, COALESCE(p_replace, false))
        RETURNING key, digits, period, algorithm
    )
    SELECT 'ok'::text, ivmfa.base32(m.key), m.digits, m.period, m.algorithm FROM made AS m;
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('admin_enroll', p_user, SQLSTATE);
    RETURN QUERY SELECT 'error'::text, NULL::text, NULL::smallint, NULL::integer, NULL::text;
END
$$;

-- Enrollment of a key the administrator has, step 1: an app's key given with `enroll
-- --secret`, or a hardware token's (`enroll --hotp`, kind 'hotp'). Like admin_enroll, it
-- waits for a confirming code (or admin_enroll_unconfirmed); the key is not returned.
--   verdict: 'ok', 'exists', 'invalid' (a key of 16 to 128 bytes, 6 to 8 digits, SHA1,
--            SHA256 or SHA512, kind 'totp' or 'hotp'), 'invalid_user'
CREATE FUNCTION ivmfa_api.admin_enroll_key(p_user text, p_key bytea, p_kind text,
                                           p_digits integer, p_algorithm text,
                                           p_replace boolean)
RETURNS TABLE (verdict text)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
DECLARE
    v_now bigint := ivmfa.clock();
BEGIN
    IF NOT ivmfa.valid_name(p_user) THEN
        RETURN QUERY SELECT 'invalid_user'::text;
        RETURN;
    END IF;
    IF p_key IS NULL OR pg_catalog.length(p_key) NOT BETWEEN 16 AND 128
       OR p_digits IS NULL OR p_digits NOT BETWEEN 6 AND 8 OR p_algorithm IS NULL
       OR pg_catalog.upper(p_algorithm) NOT IN ('SHA1', 'SHA256', 'SHA512')
       OR p_kind IS NULL OR pg_catalog.lower(p_kind) NOT IN ('totp', 'hotp') THEN
        RETURN QUERY SELECT 'invalid'::text;
        RETURN;
    END IF;
    INSERT INTO ivmfa.account (name, created) VALUES (p_user, v_now)
    ON CONFLICT (name) DO NOTHING;
    PERFORM FROM ivmfa.account AS a WHERE a.name = p_user FOR UPDATE;
    IF EXISTS (SELECT FROM ivmfa.secret AS s WHERE s.name = p_user)
       AND NOT COALESCE(p_replace, false) THEN
        PERFORM ivmfa.audit('admin_enroll_key', p_user, NULL, 'exists');
        RETURN QUERY SELECT 'exists'::text;
        RETURN;
    END IF;
    DELETE FROM ivmfa.pending_enrollment AS p WHERE p.name = p_user;
    INSERT INTO ivmfa.pending_enrollment (name, key, kind, algorithm, digits, period, started,
                                          admin, tries, replace_existing)
    VALUES (p_user, p_key, pg_catalog.lower(p_kind), pg_catalog.upper(p_algorithm), p_digits,
            30, v_now, SESSION_USER, 0, COALESCE(p_replace, false));
    PERFORM ivmfa.audit('admin_enroll_key', p_user, NULL, 'begun (' || pg_catalog.lower(p_kind)
                                                          || ')');
    RETURN QUERY SELECT 'ok'::text;
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('admin_enroll_key', p_user, SQLSTATE);
    RETURN QUERY SELECT 'error'::text;
END
$$;

-- Enrollment, step 2: a code from the app or token, judged as a login will judge it (an
-- app: the fleet's window around now; a token: hotp_window presses from where the same key
-- stands, or from 0). The CLI's ceremony: three wrong answers end it, having saved
-- nothing; a right one installs the key with its watermark at the code's step (or the
-- counter past it), so the confirming code cannot log in as well, and returns
-- p_recovery_count (1 to 100; NULL for 10) recovery codes, to be shown once. Only the
-- administrator role that began it may finish it.
--   verdict: 'enrolled' (recovery_codes), 'wrong' (tries_left; clock_offset_seconds when
--            an app's code was right for a time that far off), 'failed', 'expired',
--            'exists' (enrolled meanwhile, and the set-up was not to replace), 'no_enrollment',
--            'invalid' (p_recovery_count), 'invalid_user'
CREATE FUNCTION ivmfa_api.admin_enroll_confirm(p_user text, p_code text,
                                               p_recovery_count integer)
RETURNS TABLE (verdict text, tries_left integer, clock_offset_seconds bigint,
               recovery_codes text[])
LANGUAGE plpgsql SECURITY DEFINER
AS $$
#variable_conflict use_column
DECLARE
    v_now bigint := ivmfa.clock();
    v_count integer := COALESCE(p_recovery_count, 10);
    v_kind text;
    v_digits smallint;
    v_period integer;
    v_started bigint;
    v_tries integer;
    v_replace boolean;
    v_code text;
    v_window integer;
    v_current bigint;
    v_from bigint;
    v_step bigint;
    v_offset bigint;
BEGIN
    IF NOT ivmfa.valid_name(p_user) THEN
        RETURN QUERY SELECT 'invalid_user'::text, 0, NULL::bigint, NULL::text[];
        RETURN;
    END IF;
    IF v_count NOT BETWEEN 1 AND 100 THEN
        RETURN QUERY SELECT 'invalid'::text, 0, NULL::bigint, NULL::text[];
        RETURN;
    END IF;
    PERFORM FROM ivmfa.account AS a WHERE a.name = p_user FOR UPDATE;
    SELECT p.kind, p.digits, p.period, p.started, p.tries, p.replace_existing
      INTO v_kind, v_digits, v_period, v_started, v_tries, v_replace
      FROM ivmfa.pending_enrollment AS p WHERE p.name = p_user AND p.admin = SESSION_USER;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_enrollment'::text, 0, NULL::bigint, NULL::text[];
        RETURN;
    END IF;
    IF v_now - v_started > (SELECT s.setup_lifetime_seconds FROM ivmfa.settings AS s)
       OR v_now < v_started - 5 THEN
        DELETE FROM ivmfa.pending_enrollment AS p WHERE p.name = p_user;
        PERFORM ivmfa.audit('admin_enroll_confirm', p_user, NULL, 'expired');
        RETURN QUERY SELECT 'expired'::text, 0, NULL::bigint, NULL::text[];
        RETURN;
    END IF;
    v_code := ivmfa.code_digits(p_code, v_digits);
    IF v_code IS NOT NULL AND v_kind = 'hotp' THEN
        SELECT s.hotp_window INTO v_window FROM ivmfa.settings AS s;
        SELECT COALESCE((SELECT c.next FROM ivmfa.token_counter AS c
                          WHERE c.name = p.name AND c.key_id = ivmfa.token_key_id(p.key)), 0)
          INTO v_from FROM ivmfa.pending_enrollment AS p WHERE p.name = p_user;
        SELECT pg_catalog.min(c) INTO v_step
          FROM ivmfa.pending_enrollment AS p,
               pg_catalog.generate_series(v_from,
                   LEAST(v_from::numeric + v_window, 9223372036854775806)::bigint) AS c
         WHERE p.name = p_user AND ivmfa.hotp(p.key, c, p.digits, p.algorithm) = v_code;
    ELSIF v_code IS NOT NULL THEN
        SELECT s.totp_window INTO v_window FROM ivmfa.settings AS s;
        v_current := v_now / v_period;
        SELECT pg_catalog.min(st) INTO v_step
          FROM ivmfa.pending_enrollment AS p,
               pg_catalog.generate_series(GREATEST(v_current - v_window, 0),
                                          v_current + v_window) AS st
         WHERE p.name = p_user AND ivmfa.hotp(p.key, st, p.digits, p.algorithm) = v_code;
        IF v_step IS NULL THEN
            -- Only to tell the administrator the phone's clock seems off.
            SELECT (st - v_current) * v_period INTO v_offset
              FROM ivmfa.pending_enrollment AS p,
                   pg_catalog.generate_series(
                       GREATEST(v_current - GREATEST(600 / v_period, v_window + 1), 0),
                       v_current + GREATEST(600 / v_period, v_window + 1)) AS st
             WHERE p.name = p_user AND pg_catalog.abs(st - v_current) > v_window
               AND ivmfa.hotp(p.key, st, p.digits, p.algorithm) = v_code
             ORDER BY pg_catalog.abs(st - v_current), st > v_current DESC
             LIMIT 1;
        END IF;
    END IF;
    IF v_step IS NULL THEN
        IF v_tries + 1 >= 3 THEN
            DELETE FROM ivmfa.pending_enrollment AS p WHERE p.name = p_user;
            PERFORM ivmfa.audit('admin_enroll_confirm', p_user, NULL, 'failed');
            RETURN QUERY SELECT 'failed'::text, 0, v_offset, NULL::text[];
        ELSE
            UPDATE ivmfa.pending_enrollment AS p SET tries = p.tries + 1
             WHERE p.name = p_user;
            PERFORM ivmfa.audit('admin_enroll_confirm', p_user, NULL, 'wrong code');
            RETURN QUERY SELECT 'wrong'::text, 3 - (v_tries + 1), v_offset, NULL::text[];
        END IF;
        RETURN;
    END IF;
    IF NOT v_replace AND EXISTS (SELECT FROM ivmfa.secret AS s WHERE s.name = p_user) THEN
        DELETE FROM ivmfa.pending_enrollment AS p WHERE p.name = p_user;
        PERFORM ivmfa.audit('admin_enroll_confirm', p_user, NULL, 'exists');
        RETURN QUERY SELECT 'exists'::text, 0, NULL::bigint, NULL::text[];
        RETURN;
    END IF;
    PERFORM ivmfa.audit('admin_enroll_confirm', p_user, NULL, 'enrolled (' || v_kind || ')');
    RETURN QUERY SELECT 'enrolled'::text, 0, NULL::bigint,
                        ivmfa.install_pending(p_user, v_step, v_step + 1, v_count, v_now);
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('admin_enroll_confirm', p_user, SQLSTATE);
    RETURN QUERY SELECT 'error'::text, NULL::integer, NULL::bigint, NULL::text[];
END
$$;

-- Enrollment, step 2 without a code (`enroll --no-confirm`, for a known key): the
-- administrator vouches for the key. The watermark stays where it is; a token's counter
-- goes on from where the same key stands, or starts at 0.
--   verdict: 'enrolled' (recovery_codes), 'exists', 'expired', 'no_enrollment', 'invalid',
--            'invalid_user'
CREATE FUNCTION ivmfa_api.admin_enroll_unconfirmed(p_user text, p_recovery_count integer)
RETURNS TABLE (verdict text, recovery_codes text[])
LANGUAGE plpgsql SECURITY DEFINER
AS $$
#variable_conflict use_column
DECLARE
    v_now bigint := ivmfa.clock();
    v_count integer := COALESCE(p_recovery_count, 10);
    v_started bigint;
    v_replace boolean;
    v_kind text;
BEGIN
    IF NOT ivmfa.valid_name(p_user) THEN
        RETURN QUERY SELECT 'invalid_user'::text, NULL::text[];
        RETURN;
    END IF;
    IF v_count NOT BETWEEN 1 AND 100 THEN
        RETURN QUERY SELECT 'invalid'::text, NULL::text[];
        RETURN;
    END IF;
    PERFORM FROM ivmfa.account AS a WHERE a.name = p_user FOR UPDATE;
    SELECT p.started, p.replace_existing, p.kind INTO v_started, v_replace, v_kind
      FROM ivmfa.pending_enrollment AS p WHERE p.name = p_user AND p.admin = SESSION_USER;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_enrollment'::text, NULL::text[];
        RETURN;
    END IF;
    IF v_now - v_started > (SELECT s.setup_lifetime_seconds FROM ivmfa.settings AS s)
       OR v_now < v_started - 5 THEN
        DELETE FROM ivmfa.pending_enrollment AS p WHERE p.name = p_user;
        PERFORM ivmfa.audit('admin_enroll_unconfirmed', p_user, NULL, 'expired');
        RETURN QUERY SELECT 'expired'::text, NULL::text[];
        RETURN;
    END IF;
    IF NOT v_replace AND EXISTS (SELECT FROM ivmfa.secret AS s WHERE s.name = p_user) THEN
        DELETE FROM ivmfa.pending_enrollment AS p WHERE p.name = p_user;
        PERFORM ivmfa.audit('admin_enroll_unconfirmed', p_user, NULL, 'exists');
        RETURN QUERY SELECT 'exists'::text, NULL::text[];
        RETURN;
    END IF;
    PERFORM ivmfa.audit('admin_enroll_unconfirmed', p_user, NULL,
                        'enrolled without a code (' || v_kind || ')');
    RETURN QUERY SELECT 'enrolled'::text, ivmfa.install_pending(p_user, 0, 0, v_count, v_now);
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('admin_enroll_unconfirmed', p_user, SQLSTATE);
    RETURN QUERY SELECT 'error'::text, NULL::text[];
END
$$;

-- `resync USER CODE1 CODE2`: a token that ran beyond the window (pressed more often than
-- the window while away from logins) is found again from two consecutive codes, searched
-- from the counter expected (or 0 if none is kept for the key) up to 1000 presses ahead,
-- never behind: codes before the counter stay used. The counter moves past the second code.
--   verdict: 'resynced' (counter_before, NULL if none was kept; counter_after),
--            'not_found', 'not_token' (an app's codes have no counter), 'malformed' (not
--            codes of the token's length), 'not_enrolled', 'invalid_user'
CREATE FUNCTION ivmfa_api.admin_resync(p_user text, p_code1 text, p_code2 text)
RETURNS TABLE (verdict text, counter_before bigint, counter_after bigint)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
#variable_conflict use_column
DECLARE
    v_kind text;
    v_digits smallint;
    v_first text;
    v_second text;
    v_before bigint;
    v_found bigint;
BEGIN
    IF NOT ivmfa.valid_name(p_user) THEN
        RETURN QUERY SELECT 'invalid_user'::text, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    PERFORM FROM ivmfa.account AS a WHERE a.name = p_user FOR UPDATE;
    SELECT s.kind, s.digits INTO v_kind, v_digits FROM ivmfa.secret AS s
     WHERE s.name = p_user;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_enrolled'::text, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF v_kind IS DISTINCT FROM 'hotp' THEN
        RETURN QUERY SELECT 'not_token'::text, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    v_first := ivmfa.code_digits(p_code1, v_digits);
    v_second := ivmfa.code_digits(p_code2, v_digits);
    IF v_first IS NULL OR v_second IS NULL THEN
        RETURN QUERY SELECT 'malformed'::text, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    v_before := ivmfa.token_next(p_user);
    SELECT pg_catalog.min(c) INTO v_found
      FROM ivmfa.secret AS s,
           pg_catalog.generate_series(COALESCE(v_before, 0),
               LEAST(COALESCE(v_before, 0)::numeric + 999, 9223372036854775805)::bigint) AS c
     WHERE s.name = p_user
       AND ivmfa.hotp(s.key, c, s.digits, s.algorithm) = v_first
       AND ivmfa.hotp(s.key, c + 1, s.digits, s.algorithm) = v_second;
    IF v_found IS NULL THEN
        PERFORM ivmfa.audit('admin_resync', p_user, NULL, 'not found');
        RETURN QUERY SELECT 'not_found'::text, v_before, v_before;
        RETURN;
    END IF;
    PERFORM ivmfa.token_advance(p_user, v_found + 2);
    PERFORM ivmfa.audit('admin_resync', p_user, NULL,
                        'counter ' || COALESCE(v_before::text, 'none') || ' -> '
                        || (v_found + 2)::text);
    RETURN QUERY SELECT 'resynced'::text, v_before, v_found + 2;
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('admin_resync', p_user, SQLSTATE);
    RETURN QUERY SELECT 'error'::text, NULL::bigint, NULL::bigint;
END
$$;

-- `db fence`, after a failover: a code accepted on the old primary whose commit had not
-- reached the new one would be accepted again. Every user's watermark is raised to the step
-- of now plus the user's window, so no app code from before now can be used again (users
-- wait at most window + 1 steps for a fresh code). Hardware tokens' counters are left
-- alone: a counter has no clock, so nothing tells how far a token went in the lost moments,
-- and moving every counter ahead would leave every token behind its counter, refused as
-- used until each one is resynchronised (see docs/SCHEMA.md).
--   verdict: 'fenced' (accounts: how many watermarks moved)
CREATE FUNCTION ivmfa_api.admin_fence()
RETURNS TABLE (verdict text, accounts integer)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
DECLARE
    v_now bigint := ivmfa.clock();
    v_count integer;
BEGIN
    UPDATE ivmfa.account AS a SET last_step = f.step
      FROM (SELECT b.name,
                   v_now / GREATEST(COALESCE(s.period, 30), 1)
                   + COALESCE(s.totp_window, g.totp_window) AS step
              FROM ivmfa.account AS b
              LEFT JOIN ivmfa.secret AS s ON s.name = b.name
             CROSS JOIN ivmfa.settings AS g) AS f
     WHERE f.name = a.name AND a.last_step < f.step;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    PERFORM ivmfa.audit('admin_fence', NULL, NULL, 'raised ' || v_count || ' watermarks');
    RETURN QUERY SELECT 'fenced'::text, v_count;
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('admin_fence', NULL, SQLSTATE);
    RETURN QUERY SELECT 'error'::text, NULL::integer;
END
$$;

-- Forgets audit rows older than p_keep_days days (1 to 3650): the table grows with every
-- call of the host API, refused ones too. The prune is itself an audit row.
--   verdict: 'pruned' (rows: how many went), 'invalid' (p_keep_days out of range)
CREATE FUNCTION ivmfa_api.admin_prune_audit(p_keep_days integer)
RETURNS TABLE (verdict text, rows bigint)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
DECLARE
    v_count bigint;
BEGIN
    IF p_keep_days IS NULL OR p_keep_days NOT BETWEEN 1 AND 3650 THEN
        RETURN QUERY SELECT 'invalid'::text, NULL::bigint;
        RETURN;
    END IF;
    DELETE FROM ivmfa.audit AS a
     WHERE a.at < pg_catalog.statement_timestamp()
                  - pg_catalog.make_interval(days => p_keep_days);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    PERFORM ivmfa.audit('admin_prune_audit', NULL, NULL,
                        'pruned ' || v_count || ' rows older than ' || p_keep_days || ' days');
    RETURN QUERY SELECT 'pruned'::text, v_count;
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('admin_prune_audit', NULL, SQLSTATE);
    RETURN QUERY SELECT 'error'::text, NULL::bigint;
END
$$;

-- The characters a failure source is kept in (ivmfa.source_key): printable ASCII but '"'
-- and '\', '%' starting an escape.
CREATE FUNCTION ivmfa.is_source_key(p text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    RETURN (
        SELECT p IS NOT NULL AND pg_catalog.octet_length(p) <= 255
           AND pg_catalog.ltrim(p, (SELECT pg_catalog.string_agg(pg_catalog.chr(i), '')
                                      FROM pg_catalog.generate_series(33, 126) AS i
                                     WHERE i NOT IN (34, 92))) = ''
    );
END
$$;

-- `db migrate`: one user of a file store, everything its secret.toml and state hold, so
-- that nothing is lost and no used code works again.
--   p_kind 'totp' or 'hotp'; p_key 16 to 128 bytes; p_digits 6 to 8; p_period 1 to 300
--   (an app; NULL for a token); p_algorithm; p_window the enrollment's own window (NULL:
--   the fleet's); p_enrolled its creation time.
--   p_recovery_salt (16 bytes, NULL for none), p_recovery_hashes: SHA-256(salt ‖ code) per
--   index, 32 bytes each, NULL where the file store blanked a used code;
--   p_recovery_used: the indices the state records as used for this salt.
--   p_last_step, p_refused: the watermark and steps refused in advance; p_token_next: the
--   counter a token is expected at (NULL if the state keeps none for its key).
--   p_total_failures, p_total_last, p_sources, p_source_failures, p_source_last: the
--   failure counts and their times (sources in the kept form), so a user backing off
--   still backs off.
-- The state is merged into what the database has, never lowering anything: the higher
-- watermark, the union of refused steps (the latest 16), the higher of each count and
-- time, the higher counter for the same key. The enrollment (key, recovery codes) goes in
-- if the user has none, or with p_replace.
--   verdict: 'imported' (recovery_left), 'exists' (the user is enrolled already and
--            p_replace is not true: only the state was merged), 'invalid' (problem says
--            which argument), 'invalid_user'
CREATE FUNCTION ivmfa_api.admin_import(
    p_user text, p_kind text, p_key bytea, p_digits integer, p_period integer,
    p_algorithm text, p_window integer, p_enrolled bigint,
    p_recovery_salt bytea, p_recovery_hashes bytea[], p_recovery_issued bigint,
    p_recovery_used integer[],
    p_last_step bigint, p_refused bigint[], p_token_next bigint,
    p_total_failures integer, p_total_last bigint,
    p_sources text[], p_source_failures integer[], p_source_last bigint[],
    p_replace boolean)
RETURNS TABLE (verdict text, problem text, recovery_left integer)
LANGUAGE plpgsql SECURITY DEFINER
AS $$
#variable_conflict use_column
DECLARE
    v_now bigint := ivmfa.clock();
    v_kind text := pg_catalog.lower(p_kind);
    v_problem text;
    v_installed boolean;
    v_left integer;
BEGIN
    IF NOT ivmfa.valid_name(p_user) THEN
        RETURN QUERY SELECT 'invalid_user'::text, NULL::text, NULL::integer;
        RETURN;
    END IF;
    v_problem := CASE
        WHEN v_kind IS NULL OR v_kind NOT IN ('totp', 'hotp') THEN 'kind'
        WHEN p_key IS NULL OR pg_catalog.length(p_key) NOT BETWEEN 16 AND 128 THEN 'key'
        WHEN p_digits IS NULL OR p_digits NOT BETWEEN 6 AND 8 THEN 'digits'
        WHEN p_algorithm IS NULL
             OR pg_catalog.upper(p_algorithm) NOT IN ('SHA1', 'SHA256', 'SHA512')
            THEN 'algorithm'
        WHEN v_kind = 'totp' AND (p_period IS NULL OR p_period NOT BETWEEN 1 AND 300)
            THEN 'period'
        WHEN p_window IS NOT NULL AND (v_kind = 'hotp' OR p_window NOT BETWEEN 0 AND 10)
            THEN 'window'
        WHEN p_enrolled < 0 THEN 'enrolled'
        WHEN p_recovery_salt IS NULL
             AND (COALESCE(pg_catalog.cardinality(p_recovery_hashes), 0) > 0
                  OR COALESCE(pg_catalog.cardinality(p_recovery_used), 0) > 0)
            THEN 'recovery_salt'
        WHEN pg_catalog.length(p_recovery_salt) <> 16 THEN 'recovery_salt'
        WHEN pg_catalog.cardinality(p_recovery_hashes) > 100
             OR EXISTS (SELECT FROM pg_catalog.unnest(p_recovery_hashes) AS h
                         WHERE pg_catalog.length(h) <> 32)
            THEN 'recovery_hashes'
        WHEN p_recovery_issued < 0 THEN 'recovery_issued'
        WHEN EXISTS (SELECT FROM pg_catalog.unnest(p_recovery_used) AS u
                      WHERE u IS NULL OR u NOT BETWEEN 0 AND 99)
            THEN 'recovery_used'
        WHEN p_last_step < 0 THEN 'last_step'
        WHEN pg_catalog.cardinality(p_refused) > 16
             OR EXISTS (SELECT FROM pg_catalog.unnest(p_refused) AS r WHERE r IS NULL OR r < 0)
            THEN 'refused'
        WHEN p_token_next IS NOT NULL AND (v_kind = 'totp' OR p_token_next < 0)
            THEN 'token_next'
        WHEN p_total_failures < 0 THEN 'total_failures'
        WHEN p_total_last < 0 THEN 'total_last'
        WHEN COALESCE(pg_catalog.cardinality(p_sources), 0) > 32
             OR COALESCE(pg_catalog.cardinality(p_sources), 0)
                <> COALESCE(pg_catalog.cardinality(p_source_failures), 0)
             OR COALESCE(pg_catalog.cardinality(p_sources), 0)
                <> COALESCE(pg_catalog.cardinality(p_source_last), 0)
             OR EXISTS (SELECT FROM ROWS FROM (pg_catalog.unnest(p_sources),
                                               pg_catalog.unnest(p_source_failures),
                                               pg_catalog.unnest(p_source_last)) AS x(s, c, l)
                         WHERE NOT ivmfa.is_source_key(x.s) OR x.c IS NULL OR x.c < 1
                            OR x.l IS NULL OR x.l < 0)
             OR (SELECT pg_catalog.count(DISTINCT x) FROM pg_catalog.unnest(p_sources) AS x)
                <> COALESCE(pg_catalog.cardinality(p_sources), 0)
            THEN 'sources'
        END;
    IF v_problem IS NOT NULL THEN
        PERFORM ivmfa.audit('admin_import', p_user, NULL, 'invalid ' || v_problem);
        RETURN QUERY SELECT 'invalid'::text, v_problem, NULL::integer;
        RETURN;
    END IF;

    INSERT INTO ivmfa.account (name, created) VALUES (p_user, COALESCE(p_enrolled, v_now))
    ON CONFLICT (name) DO NOTHING;
    PERFORM FROM ivmfa.account AS a WHERE a.name = p_user FOR UPDATE;
    v_installed := COALESCE(p_replace, false)
                   OR NOT EXISTS (SELECT FROM ivmfa.secret AS s WHERE s.name = p_user);
    IF v_installed THEN
        DELETE FROM ivmfa.secret AS s WHERE s.name = p_user;
        DELETE FROM ivmfa.recovery_set AS r WHERE r.name = p_user;
        DELETE FROM ivmfa.pending_setup AS p WHERE p.name = p_user;
        DELETE FROM ivmfa.pending_enrollment AS p WHERE p.name = p_user;
        DELETE FROM ivmfa.ticket AS t WHERE t.name = p_user;
        DELETE FROM ivmfa.grace AS g WHERE g.name = p_user;
        INSERT INTO ivmfa.secret (name, key, algorithm, digits, period, totp_window, enrolled,
                                  kind)
        VALUES (p_user, p_key, pg_catalog.upper(p_algorithm), p_digits,
                CASE WHEN v_kind = 'totp' THEN p_period ELSE 30 END, p_window,
                COALESCE(p_enrolled, v_now), v_kind);
        IF p_recovery_salt IS NOT NULL THEN
            INSERT INTO ivmfa.recovery_set (name, salt, issued)
            VALUES (p_user, p_recovery_salt, COALESCE(p_recovery_issued, v_now));
            INSERT INTO ivmfa.recovery_code (name, idx, hash)
            SELECT p_user, h.i - 1, h.hash
              FROM pg_catalog.unnest(p_recovery_hashes) WITH ORDINALITY AS h(hash, i)
             WHERE h.hash IS NOT NULL
               AND (h.i - 1) <> ALL (COALESCE(p_recovery_used, '{}'::integer[]));
        END IF;
    END IF;

    -- The state: merged, never lowered.
    UPDATE ivmfa.account AS a
       SET last_step = GREATEST(a.last_step, COALESCE(p_last_step, 0)),
           refused = ARRAY(SELECT x FROM (
                              SELECT DISTINCT x FROM pg_catalog.unnest(
                                  a.refused || COALESCE(p_refused, '{}'::bigint[])) AS x
                               ORDER BY x DESC LIMIT 16) AS y ORDER BY x),
           total_count = GREATEST(a.total_count, COALESCE(p_total_failures, 0)),
           total_last = GREATEST(a.total_last, COALESCE(p_total_last, 0))
     WHERE a.name = p_user;
    INSERT INTO ivmfa.failure AS f (name, source, count, last)
    SELECT p_user, x.s, x.c, x.l
      FROM ROWS FROM (pg_catalog.unnest(p_sources), pg_catalog.unnest(p_source_failures),
                      pg_catalog.unnest(p_source_last)) AS x(s, c, l)
    ON CONFLICT (name, source) DO UPDATE
       SET count = GREATEST(f.count, EXCLUDED.count), last = GREATEST(f.last, EXCLUDED.last);
    DELETE FROM ivmfa.failure AS f
     WHERE (f.name, f.source) IN (
        SELECT g.name, g.source FROM ivmfa.failure AS g WHERE g.name = p_user
         ORDER BY g.last DESC, g.source OFFSET 32);
    IF v_kind = 'hotp' AND p_token_next IS NOT NULL THEN
        INSERT INTO ivmfa.token_counter AS c (name, key_id, next)
        VALUES (p_user, ivmfa.token_key_id(p_key), p_token_next)
        ON CONFLICT (name, key_id) DO UPDATE SET next = GREATEST(c.next, EXCLUDED.next);
    END IF;

    SELECT pg_catalog.count(*)::integer INTO v_left
      FROM ivmfa.recovery_code AS c WHERE c.name = p_user;
    PERFORM ivmfa.audit('admin_import', p_user, NULL,
                        CASE WHEN v_installed THEN 'imported (' || v_kind || ')'
                             ELSE 'enrolled already: state merged' END);
    RETURN QUERY SELECT CASE WHEN v_installed THEN 'imported' ELSE 'exists' END, NULL::text,
                        v_left;
EXCEPTION WHEN OTHERS OR query_canceled THEN
    PERFORM ivmfa.audit_error('admin_import', p_user, SQLSTATE);
    RETURN QUERY SELECT 'error'::text, NULL::text, NULL::integer;
END
$$;

------------------------------------------------------------------------------------------
-- Rights and pinned settings
------------------------------------------------------------------------------------------

-- The pinned settings on every function of ours but ivmfa.codes (see there); the test
-- suite checks that no other lacks one, and that every message setting a host can change
-- is among them.
CREATE FUNCTION ivmfa.pin_functions(p_schema text) RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    f regprocedure;
    s text;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc AS p
              WHERE p.pronamespace = p_schema::regnamespace
                AND p.proowner = 'ivmfa_owner'::regrole
                AND p.oid <> 'ivmfa.codes(bytea, bigint, bigint, smallint, text)'::regprocedure
              LOOP
        FOREACH s IN ARRAY ivmfa.pinned_settings() LOOP
            EXECUTE pg_catalog.format('ALTER FUNCTION %s SET %s', f, s);
        END LOOP;
    END LOOP;
END
$$;
SELECT ivmfa.pin_functions('ivmfa');
SELECT ivmfa.pin_functions('ivmfa_api');

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ivmfa_api FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    ivmfa_api.schema_version(),
    ivmfa_api.before_prompt(text, text, boolean),
    ivmfa_api.submit(text, text, text),
    ivmfa_api.verify(bigint),
    ivmfa_api.request_reset(text, text, text, text),
    ivmfa_api.setup_begin(text),
    ivmfa_api.setup_finish(text, text),
    ivmfa_api.submit_grace(text, text, text, integer),
    ivmfa_api.grace(text, text, integer)
TO ivmfa_host;
GRANT EXECUTE ON FUNCTION
    ivmfa_api.schema_version(),
    ivmfa_api.admin_provision(text, bytea, integer, text, boolean),
    ivmfa_api.admin_recovery_codes(text, integer),
    ivmfa_api.admin_remove(text),
    ivmfa_api.admin_status(text),
    ivmfa_api.admin_users(),
    ivmfa_api.admin_reset_list(),
    ivmfa_api.admin_reset_approve(text, text),
    ivmfa_api.admin_reset_deny(text, text),
    ivmfa_api.admin_configure(text, text),
    ivmfa_api.admin_audit(integer),
    ivmfa_api.admin_enroll(text, integer, text, boolean),
    ivmfa_api.admin_enroll_key(text, bytea, text, integer, text, boolean),
    ivmfa_api.admin_enroll_confirm(text, text, integer),
    ivmfa_api.admin_enroll_unconfirmed(text, integer),
    ivmfa_api.admin_resync(text, text, text),
    ivmfa_api.admin_fence(),
    ivmfa_api.admin_prune_audit(integer),
    ivmfa_api.admin_import(text, text, bytea, integer, integer, text, integer, bigint, bytea,
                           bytea[], bigint, integer[], bigint, bigint[], bigint, integer,
                           bigint, text[], integer[], bigint[], boolean)
TO ivmfa_admin;

RESET ROLE;
COMMIT;
