-- For the test suite only; never install it on a fleet. Adds the role ivmfa_clock and the
-- schema ivmfa_test: the host API at a time the caller chooses (a host must never choose
-- it: one lucky guess at a time still to come would push a watermark into the future), and
-- the rewinding the exactly-once tests need between rounds.
BEGIN;
SET LOCAL client_min_messages = warning;
SET LOCAL search_path = pg_catalog, pg_temp;

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'ivmfa_clock') THEN
        CREATE ROLE ivmfa_clock NOLOGIN;
    END IF;
    EXECUTE pg_catalog.format('GRANT CONNECT ON DATABASE %I TO ivmfa_clock',
                              pg_catalog.current_database());
END
$roles$;

CREATE SCHEMA ivmfa_test AUTHORIZATION ivmfa_owner;
GRANT USAGE ON SCHEMA ivmfa_test TO ivmfa_clock;
SET LOCAL ROLE ivmfa_owner;

CREATE FUNCTION ivmfa_test.before_prompt_at(p_user text, p_source text,
                                            p_take_notice boolean, p_now bigint)
RETURNS TABLE (status text, digits smallint, wait_seconds bigint, reset_pending boolean,
               notice text, inband_enroll boolean)
LANGUAGE sql SECURITY DEFINER
AS $$ SELECT * FROM ivmfa.before_prompt(p_user, p_source, p_take_notice, p_now) $$;

CREATE FUNCTION ivmfa_test.submit_at(p_user text, p_answer text, p_source text, p_now bigint)
RETURNS TABLE (verdict text, attempt bigint, wait_seconds bigint)
LANGUAGE sql SECURITY DEFINER
AS $$ SELECT * FROM ivmfa.submit(p_user, p_answer, p_source, 0, p_now) $$;

CREATE FUNCTION ivmfa_test.submit_grace_at(p_user text, p_answer text, p_source text,
                                           p_grace_period integer, p_now bigint)
RETURNS TABLE (verdict text, attempt bigint, wait_seconds bigint)
LANGUAGE sql SECURITY DEFINER
AS $$ SELECT * FROM ivmfa.submit(p_user, p_answer, p_source, p_grace_period, p_now) $$;

CREATE FUNCTION ivmfa_test.grace_at(p_user text, p_address text, p_period integer,
                                    p_now bigint)
RETURNS TABLE (verdict text, seconds_left bigint)
LANGUAGE sql SECURITY DEFINER
AS $$ SELECT * FROM ivmfa.grace(p_user, p_address, p_period, p_now) $$;

CREATE FUNCTION ivmfa_test.verify_at(p_attempt bigint, p_now bigint)
RETURNS TABLE (verdict text, failures integer, wait_seconds bigint, recovery_left integer,
               clock_offset_seconds bigint)
LANGUAGE sql SECURITY DEFINER
AS $$ SELECT * FROM ivmfa.verify(p_attempt, p_now) $$;

CREATE FUNCTION ivmfa_test.setup_begin_at(p_user text, p_now bigint)
RETURNS TABLE (verdict text, secret_base32 text, digits smallint, period integer,
               algorithm text)
LANGUAGE sql SECURITY DEFINER
AS $$ SELECT * FROM ivmfa.setup_begin(p_user, p_now) $$;

CREATE FUNCTION ivmfa_test.setup_finish_at(p_user text, p_answer text, p_now bigint)
RETURNS TABLE (verdict text, tries_left integer, recovery_codes text[])
LANGUAGE sql SECURITY DEFINER
AS $$ SELECT * FROM ivmfa.setup_finish(p_user, p_answer, p_now) $$;

-- The code a key gives at a time: RFC 6238 vectors computed by the database itself.
CREATE FUNCTION ivmfa_test.totp_at(p_key bytea, p_now bigint, p_digits integer,
                                   p_algorithm text)
RETURNS text
LANGUAGE sql SECURITY DEFINER
AS $$ SELECT ivmfa.hotp(p_key, p_now / 30, p_digits::smallint, p_algorithm) $$;

-- Forgets the watermark, refused steps and failures, so that a race can be run again
-- with the same code.
CREATE FUNCTION ivmfa_test.rewind(p_user text) RETURNS void
LANGUAGE sql SECURITY DEFINER
AS $$
    UPDATE ivmfa.account AS a SET last_step = 0, refused = '{}', total_count = 0,
           total_last = 0 WHERE a.name = p_user;
    DELETE FROM ivmfa.failure AS f WHERE f.name = p_user;
$$;

SELECT ivmfa.pin_functions('ivmfa_test');
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ivmfa_test FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA ivmfa_test TO ivmfa_clock;
RESET ROLE;
COMMIT;
