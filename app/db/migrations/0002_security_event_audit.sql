-- The security-event trail (contract §8): append-only, hash-chained, archivable.
--
-- Shape
--   security_event_audit          one row per event; UPDATE/DELETE/TRUNCATE rejected (privileges
--                                 and triggers) for everybody but the archive routine's role.
--   security_event_audit_head     one row: the newest (seq, id, hash). Appenders lock it, which
--                                 makes a REPEATABLE READ appender fail with a serialization error
--                                 instead of forking the chain, and it lets the verifier notice
--                                 rows cut from the end of the chain.
--   security_event_audit_anchor   one row: the last archived (seq, hash). The first remaining row
--                                 chains to it, so the chain stays verifiable after archiving.
--   security_event_audit_archives one row per archive run (append-only history of the cuts).
--   security_event_counts         all-time count per event type, maintained by the insert
--                                 trigger, so the ops metrics need no count(*) over the table.
--
-- Hash chain
--   hash = lower-hex SHA-256 of the UTF-8 bytes of security_event_canonical(row), where the
--   canonical text is the jsonb text of an array of strings and nulls:
--     ["karaxas.security_event.v1", seq, id, event_type, user_id, session_id, ip, user_agent,
--      request_id, details, created_at, prev_hash]
--   seq as decimal text; uuids in PostgreSQL's lower-case text form; ip as inet text (always
--   with the mask, e.g. "10.0.0.1/32"); details as the jsonb's own text (PostgreSQL's canonical
--   key order and spacing); created_at in UTC as YYYY-MM-DDTHH:MI:SS.ffffffZ. Every element is a
--   JSON string or null, so the encoding is unambiguous and can be recomputed outside PostgreSQL:
--   '[' || elements as JSON strings (only " \ and control characters escaped) joined by ', ' || ']'.
--   prev_hash is the previous row's hash (highest seq before it), or the anchor's hash for the
--   first row; genesis is 64 zeros.
--
-- Serialisation
--   The insert trigger takes a transaction-level advisory lock (key 7305114202, shared with
--   nothing else) before it assigns seq, created_at and prev_hash. Concurrent appenders therefore
--   run one at a time until their transaction ends: the chain never forks, and seq order (and
--   created_at order, barring a backwards clock step) equals commit order, which keeps newest-first
--   keyset pagination stable while rows are being added.
--   Costs: every audited transaction in the database queues on this lock from its append to its
--   commit, so append last and commit promptly — the lock hold (append + commit round trip and
--   flush) bounds audited transactions per second. Each append also leaves a dead version of the
--   head row and of one counter row; pruning keeps them small, but a transaction that stays open
--   for long (anywhere in the database) holds that back, and thousands of appends inside one
--   transaction slow down as the versions pile up. Record a handful of events per transaction.
--
-- Residual risk (read before deploying)
--   The table OWNER can still ALTER TABLE ... DISABLE TRIGGER, DROP TRIGGER, re-GRANT itself the
--   revoked privileges, or drop the table; a superuser can rewrite rows and recompute every hash
--   (the hash is unkeyed). The chain makes edits evident; it does not prevent an owner from
--   rewriting history. Production should run migrations as a separate owner role (NOLOGIN or
--   deploy-only) and give the runtime role only INSERT/SELECT here, SELECT on the anchor/head/
--   counts and EXECUTE on what it needs; periodically copying the head (seq, hash) somewhere the
--   database cannot write to makes even a full rewrite evident.
--   A non-superuser that creates karaxas_audit_archiver keeps ADMIN OPTION on it (PostgreSQL 16+),
--   so it could grant itself the role and delete rows; again, a separate owner role closes this.
--   Whoever may EXECUTE archive_security_events() can remove the oldest rows (only a prefix, only
--   with their exact count and last hash, always recorded in security_event_audit_archives).

-- The archive routine's role. Roles are cluster-wide and several databases (test clones, a
-- staging database on the same instance) run this migration, so create it only when missing and
-- tolerate a concurrent creator.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'karaxas_audit_archiver') THEN
    BEGIN
      CREATE ROLE karaxas_audit_archiver NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      NULL;
    END;
  END IF;
  -- A login-capable archiver would be a way around the immutability trigger: refuse to build on it.
  IF (SELECT rolcanlogin OR rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = 'karaxas_audit_archiver') THEN
    RAISE EXCEPTION 'role karaxas_audit_archiver must be NOLOGIN NOSUPERUSER NOBYPASSRLS';
  END IF;
END
$$;

CREATE TABLE security_event_audit (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  seq bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT security_event_audit_seq_key UNIQUE,
  -- Keep in sync with securityEventTypes in app/audit/types.ts (a test compares them).
  event_type text NOT NULL CONSTRAINT security_event_audit_event_type_check CHECK (event_type IN (
    'user_registered',
    'login_succeeded',
    'login_failed',
    'account_locked',
    'rate_limited',
    'mfa_enrolled',
    'mfa_enabled',
    'mfa_disabled',
    'mfa_failed',
    'mfa_replay_rejected',
    'recovery_code_used',
    'refresh_rotated',
    'refresh_token_grace_reuse',
    'refresh_token_reuse_detected',
    'session_revoked',
    'session_bulk_revocation',
    'logout',
    'ws_ticket_issued',
    'ws_ticket_rejected',
    'ws_origin_rejected',
    'chat_rate_limited',
    'chat_muted',
    'password_reset_forced',
    'password_changed',
    'ops_auth_failed',
    'role_changed'
  )),
  -- No foreign keys: events outlive the users and sessions they mention, and a cascading or
  -- restricting FK would either rewrite this append-only table or block deleting a user.
  user_id uuid,
  session_id uuid,
  ip inet,
  user_agent text CHECK (char_length(user_agent) <= 512),
  request_id text CHECK (char_length(request_id) <= 128),
  -- Scrubbed of secrets by the service; the size cap is a backstop against runaway payloads.
  details jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object' AND octet_length(details::text) <= 65536),
  -- Forced by the insert trigger to clock_timestamp() taken under the chain lock, so it grows
  -- with seq (now() would be the transaction start, out of commit order).
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  prev_hash text NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
  hash text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$')
);

-- Ops queries (contract §7): newest-first keyset pages over all rows, by type and by user, and
-- the last1h/last24h counters per type (range scans on the type index).
CREATE INDEX security_event_audit_created ON security_event_audit (created_at DESC, id DESC);
CREATE INDEX security_event_audit_type_created ON security_event_audit (event_type, created_at DESC, id DESC);
CREATE INDEX security_event_audit_user_created ON security_event_audit (user_id, created_at DESC, id DESC) WHERE user_id IS NOT NULL;

CREATE TABLE security_event_audit_anchor (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  last_seq bigint NOT NULL,
  last_hash text NOT NULL CHECK (last_hash ~ '^[0-9a-f]{64}$'),
  archived_rows bigint NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO security_event_audit_anchor (last_seq, last_hash) VALUES (0, repeat('0', 64));

CREATE TABLE security_event_audit_head (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  last_seq bigint NOT NULL,
  last_id uuid,
  last_hash text NOT NULL CHECK (last_hash ~ '^[0-9a-f]{64}$')
);
INSERT INTO security_event_audit_head (last_seq, last_id, last_hash) VALUES (0, NULL, repeat('0', 64));

CREATE TABLE security_event_audit_archives (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  first_seq bigint NOT NULL,
  through_seq bigint NOT NULL,
  row_count bigint NOT NULL,
  -- The anchor before the cut and the hash that became the new anchor.
  previous_anchor_hash text NOT NULL,
  last_hash text NOT NULL,
  archived_at timestamptz NOT NULL DEFAULT now(),
  -- The login role that called the routine (current_user is the archiver role inside it).
  archived_by text NOT NULL DEFAULT session_user
);

-- Counts every event ever recorded, archived ones included (a monotonic counter, so a rate can
-- be derived from two readings; it does not drop when old rows are archived).
CREATE TABLE security_event_counts (
  event_type text PRIMARY KEY,
  total bigint NOT NULL DEFAULT 0
);

-- The canonical text of a row (see the header). STABLE because to_char is; the format used has
-- no locale-dependent parts, and the explicit UTC conversion makes it independent of TimeZone.
CREATE FUNCTION security_event_canonical(
  p_seq bigint, p_id uuid, p_event_type text, p_user_id uuid, p_session_id uuid, p_ip inet,
  p_user_agent text, p_request_id text, p_details jsonb, p_created_at timestamptz, p_prev_hash text
) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT jsonb_build_array(
    'karaxas.security_event.v1',
    p_seq::text,
    p_id::text,
    p_event_type,
    p_user_id::text,
    p_session_id::text,
    p_ip::text,
    p_user_agent,
    p_request_id,
    p_details::text,
    to_char(p_created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    p_prev_hash
  )::text
$$;

CREATE FUNCTION security_event_hash(
  p_seq bigint, p_id uuid, p_event_type text, p_user_id uuid, p_session_id uuid, p_ip inet,
  p_user_agent text, p_request_id text, p_details jsonb, p_created_at timestamptz, p_prev_hash text
) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT encode(sha256(convert_to(security_event_canonical(
    p_seq, p_id, p_event_type, p_user_id, p_session_id, p_ip, p_user_agent, p_request_id, p_details, p_created_at, p_prev_hash
  ), 'UTF8')), 'hex')
$$;

-- Appends: lock, then assign everything that depends on the order. SECURITY DEFINER (owner) so
-- the runtime role needs no rights on the head, the counters or the identity sequence; the
-- protecting triggers on those tables admit writes only from inside this trigger.
CREATE FUNCTION security_event_audit_before_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_head record;
BEGIN
  PERFORM pg_advisory_xact_lock(7305114202);
  -- FOR UPDATE: a REPEATABLE READ/SERIALIZABLE transaction whose snapshot predates the last
  -- append fails here with a serialization error (and is retried) instead of chaining to a
  -- stale head.
  -- WHERE singleton: through the primary key, so a head bloated by a long transaction elsewhere
  -- (each append leaves a dead version) costs an index probe, not a scan of every dead version.
  SELECT last_seq, last_hash INTO STRICT v_head FROM security_event_audit_head WHERE singleton FOR UPDATE;
  -- The identity value was drawn before the lock; draw again under it so seq follows commit order.
  NEW.seq := nextval(pg_get_serial_sequence('public.security_event_audit', 'seq'));
  -- Ids are ours too: a caller-chosen id could collide, and an ON CONFLICT that skipped the row
  -- after this trigger moved the head would make the head point at nothing.
  NEW.id := gen_random_uuid();
  NEW.created_at := clock_timestamp();
  NEW.prev_hash := v_head.last_hash;
  NEW.hash := security_event_hash(
    NEW.seq, NEW.id, NEW.event_type, NEW.user_id, NEW.session_id, NEW.ip, NEW.user_agent,
    NEW.request_id, NEW.details, NEW.created_at, NEW.prev_hash
  );
  UPDATE security_event_audit_head SET last_seq = NEW.seq, last_id = NEW.id, last_hash = NEW.hash WHERE singleton;
  INSERT INTO security_event_counts AS c (event_type, total) VALUES (NEW.event_type, 1)
    ON CONFLICT (event_type) DO UPDATE SET total = c.total + 1;
  RETURN NEW;
END
$$;

CREATE TRIGGER security_event_audit_chain
  BEFORE INSERT ON security_event_audit
  FOR EACH ROW EXECUTE FUNCTION security_event_audit_before_insert();

-- Rejects UPDATE and TRUNCATE always, DELETE unless it comes from the archive routine (which runs
-- as karaxas_audit_archiver). Not SECURITY DEFINER: current_user must be the caller's role.
CREATE FUNCTION security_event_audit_reject_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_user = 'karaxas_audit_archiver' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'security_event_audit is append-only: % is not allowed', TG_OP
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'old rows leave only through archive_security_events() after they were exported';
END
$$;

-- Statement level too, so that even a DELETE/UPDATE matching no row fails, and TRUNCATE (which
-- fires no row triggers) is covered.
CREATE TRIGGER security_event_audit_no_update_delete
  BEFORE UPDATE OR DELETE ON security_event_audit
  FOR EACH ROW EXECUTE FUNCTION security_event_audit_reject_change();
CREATE TRIGGER security_event_audit_no_update_delete_statement
  BEFORE UPDATE OR DELETE ON security_event_audit
  FOR EACH STATEMENT EXECUTE FUNCTION security_event_audit_reject_change();
CREATE TRIGGER security_event_audit_no_truncate
  BEFORE TRUNCATE ON security_event_audit
  FOR EACH STATEMENT EXECUTE FUNCTION security_event_audit_reject_change();

-- The head and the counters change only from inside the insert trigger (trigger depth > 1).
CREATE FUNCTION security_event_audit_internal_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  IF pg_trigger_depth() > 1 AND TG_OP <> 'TRUNCATE' THEN
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;
  RAISE EXCEPTION '% is maintained by the security_event_audit insert trigger: % is not allowed', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER security_event_audit_head_guard
  BEFORE INSERT OR UPDATE OR DELETE ON security_event_audit_head
  FOR EACH ROW EXECUTE FUNCTION security_event_audit_internal_only();
CREATE TRIGGER security_event_audit_head_no_truncate
  BEFORE TRUNCATE ON security_event_audit_head
  FOR EACH STATEMENT EXECUTE FUNCTION security_event_audit_internal_only();
CREATE TRIGGER security_event_counts_guard
  BEFORE INSERT OR UPDATE OR DELETE ON security_event_counts
  FOR EACH ROW EXECUTE FUNCTION security_event_audit_internal_only();
CREATE TRIGGER security_event_counts_no_truncate
  BEFORE TRUNCATE ON security_event_counts
  FOR EACH STATEMENT EXECUTE FUNCTION security_event_audit_internal_only();

-- The anchor moves only through the archive routine; the archive history only grows through it.
CREATE FUNCTION security_event_audit_archiver_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  IF current_user = 'karaxas_audit_archiver' AND (
    (TG_TABLE_NAME = 'security_event_audit_anchor' AND TG_OP = 'UPDATE')
    OR (TG_TABLE_NAME = 'security_event_audit_archives' AND TG_OP = 'INSERT')
  ) THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION '% changes only through archive_security_events(): % is not allowed', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER security_event_audit_anchor_guard
  BEFORE INSERT OR UPDATE OR DELETE ON security_event_audit_anchor
  FOR EACH ROW EXECUTE FUNCTION security_event_audit_archiver_only();
CREATE TRIGGER security_event_audit_anchor_no_truncate
  BEFORE TRUNCATE ON security_event_audit_anchor
  FOR EACH STATEMENT EXECUTE FUNCTION security_event_audit_archiver_only();
CREATE TRIGGER security_event_audit_archives_guard
  BEFORE INSERT OR UPDATE OR DELETE ON security_event_audit_archives
  FOR EACH ROW EXECUTE FUNCTION security_event_audit_archiver_only();
CREATE TRIGGER security_event_audit_archives_no_truncate
  BEFORE TRUNCATE ON security_event_audit_archives
  FOR EACH STATEMENT EXECUTE FUNCTION security_event_audit_archiver_only();

-- The one way rows leave: the caller exported rows up to p_through_seq, checked the export (count,
-- checksum, chain) and passes what it saw. Rows are deleted only when the table still holds
-- exactly that: the same number of rows up to p_through_seq, ending in a row with that seq and
-- that hash, chained intact from the current anchor. The anchor then moves to that row, so the
-- first remaining row still verifies. Any mismatch raises and deletes nothing.
--
-- Archive in batches (e.g. 50 000 rows per call): the rows are verified and deleted in one
-- transaction. Appenders are not blocked (they touch the newest row, this the oldest); two
-- archivers serialise on the anchor row and the second one finds its rows gone and fails.
--
-- Returns the number of rows deleted. Owned by karaxas_audit_archiver (SECURITY DEFINER), the
-- only role the immutability trigger lets delete.
CREATE FUNCTION archive_security_events(p_through_seq bigint, p_expected_count bigint, p_expected_last_hash text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_anchor record;
  v_count bigint;
  v_first_seq bigint;
  v_last_seq bigint;
  v_last_hash text;
  v_broken_id uuid;
  v_deleted bigint;
BEGIN
  IF p_through_seq IS NULL OR p_expected_count IS NULL OR p_expected_last_hash IS NULL OR p_expected_count < 1 THEN
    RAISE EXCEPTION 'archive_security_events: through seq, a positive expected count and the expected last hash are required'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;

  SELECT last_seq, last_hash INTO STRICT v_anchor FROM security_event_audit_anchor WHERE singleton FOR UPDATE;

  SELECT count(*), min(seq), max(seq) INTO v_count, v_first_seq, v_last_seq
    FROM security_event_audit WHERE seq <= p_through_seq;
  IF v_count <> p_expected_count THEN
    RAISE EXCEPTION 'archive_security_events: % rows up to seq %, the export holds %; nothing deleted',
      v_count, p_through_seq, p_expected_count USING ERRCODE = 'data_exception';
  END IF;
  IF v_last_seq <> p_through_seq THEN
    RAISE EXCEPTION 'archive_security_events: no row has seq %; nothing deleted', p_through_seq
      USING ERRCODE = 'data_exception';
  END IF;
  SELECT hash INTO STRICT v_last_hash FROM security_event_audit WHERE seq = p_through_seq;
  IF v_last_hash <> p_expected_last_hash THEN
    RAISE EXCEPTION 'archive_security_events: the hash of row % differs from the export; nothing deleted', p_through_seq
      USING ERRCODE = 'data_exception';
  END IF;

  -- Deleting a tampered segment would move the anchor past the evidence: verify it first.
  SELECT id INTO v_broken_id
    FROM (
      SELECT id, seq, hash,
             prev_hash <> coalesce(lag(hash) OVER (ORDER BY seq), v_anchor.last_hash)
               OR hash <> security_event_hash(seq, id, event_type, user_id, session_id, ip, user_agent,
                                              request_id, details, created_at, prev_hash) AS broken
        FROM security_event_audit
       WHERE seq <= p_through_seq
    ) chained
   WHERE broken
   ORDER BY seq
   LIMIT 1;
  IF v_broken_id IS NOT NULL THEN
    RAISE EXCEPTION 'archive_security_events: the chain is broken at row %; nothing deleted', v_broken_id
      USING ERRCODE = 'data_exception';
  END IF;

  DELETE FROM security_event_audit WHERE seq <= p_through_seq;
  GET DIAGNOSTICS v_deleted = ROW_COUNT;

  UPDATE security_event_audit_anchor
     SET last_seq = p_through_seq, last_hash = v_last_hash, archived_rows = archived_rows + v_deleted, updated_at = now()
   WHERE singleton;
  INSERT INTO security_event_audit_archives (first_seq, through_seq, row_count, previous_anchor_hash, last_hash)
    VALUES (v_first_seq, p_through_seq, v_deleted, v_anchor.last_hash, v_last_hash);
  RETURN v_deleted;
END
$$;

-- Privileges. PUBLIC never had write access to new tables; the REVOKEs from CURRENT_USER take
-- the owner's own UPDATE/DELETE/TRUNCATE away, which matters where the runtime role also runs the
-- migrations (superusers bypass privileges; for them the triggers above are the barrier).
REVOKE UPDATE, DELETE, TRUNCATE, TRIGGER ON security_event_audit FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE, TRIGGER ON security_event_audit FROM CURRENT_USER;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON security_event_audit_anchor, security_event_audit_archives FROM PUBLIC;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON security_event_audit_anchor, security_event_audit_archives FROM CURRENT_USER;
-- The owner keeps write access to the head and the counters: the SECURITY DEFINER insert trigger
-- runs as the owner (their guard trigger still rejects writes from outside it).
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON security_event_audit_head, security_event_counts FROM PUBLIC;

GRANT SELECT, DELETE ON security_event_audit TO karaxas_audit_archiver;
GRANT SELECT, UPDATE ON security_event_audit_anchor TO karaxas_audit_archiver;
GRANT SELECT, INSERT ON security_event_audit_archives TO karaxas_audit_archiver;

-- Only the migrating role may call the archive routine (granted below, once the function has its
-- final owner); grant it to a dedicated ops role where the runtime role is separate.
REVOKE EXECUTE ON FUNCTION archive_security_events(bigint, bigint, text) FROM PUBLIC;

-- Hand the routine to the archiver role. A superuser may do that outright. Any other role must be
-- able to SET ROLE to it and the role must be able to create in this schema — both are lent for
-- this statement only (a CREATEROLE migrator holds ADMIN on a role it created; on PostgreSQL 16+
-- that alone is not SET), so the migrating role is not left a member of the archiver role.
DO $$
DECLARE
  v_me text := current_user;
  v_pg16 boolean := current_setting('server_version_num')::int >= 160000;
  v_schema text := current_schema();
  v_lent_membership boolean := false;
  v_lent_create boolean := false;
BEGIN
  IF NOT pg_has_role(v_me, 'karaxas_audit_archiver', CASE WHEN v_pg16 THEN 'SET' ELSE 'MEMBER' END) THEN
    BEGIN
      IF v_pg16 THEN
        EXECUTE format('GRANT karaxas_audit_archiver TO %I WITH INHERIT FALSE, SET TRUE', v_me);
      ELSE
        EXECUTE format('GRANT karaxas_audit_archiver TO %I', v_me);
      END IF;
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE EXCEPTION 'role % cannot hand archive_security_events() to karaxas_audit_archiver', v_me
        USING HINT = 'run this migration as a superuser or the role that created karaxas_audit_archiver, '
                     'or GRANT karaxas_audit_archiver TO ' || quote_ident(v_me) || ' WITH ADMIN OPTION first';
    END;
    v_lent_membership := true;
  END IF;
  IF NOT has_schema_privilege('karaxas_audit_archiver', v_schema, 'CREATE') THEN
    EXECUTE format('GRANT CREATE ON SCHEMA %I TO karaxas_audit_archiver', v_schema);
    v_lent_create := true;
  END IF;
  IF NOT has_schema_privilege('karaxas_audit_archiver', v_schema, 'USAGE') THEN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO karaxas_audit_archiver', v_schema);
  END IF;

  ALTER FUNCTION archive_security_events(bigint, bigint, text) OWNER TO karaxas_audit_archiver;
  -- The change of owner rewrote the migrating role's EXECUTE grant into the new owner's; grant it
  -- back as the new owner (SET ROLE needs the lent membership, hence here).
  EXECUTE 'SET LOCAL ROLE karaxas_audit_archiver';
  EXECUTE format('GRANT EXECUTE ON FUNCTION archive_security_events(bigint, bigint, text) TO %I', v_me);
  EXECUTE format('SET LOCAL ROLE %I', v_me);

  IF v_lent_create THEN
    EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM karaxas_audit_archiver', v_schema);
  END IF;
  IF v_lent_membership THEN
    EXECUTE format('REVOKE karaxas_audit_archiver FROM %I', v_me);
  END IF;
END
$$;
