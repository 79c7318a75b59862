-- Per-minute security-event counters, so the ops metrics' 1 h / 24 h windows (contract §7) cost
-- the same whatever the last day's volume. Before this, last1h/last24h were count(*) range scans
-- over security_event_audit: one GET /ops/release/metrics read every row of the last 24 hours
-- (3.3 s with 1,000,000 events in one day, past the statement timeout at ten times that).
--
-- Shape
--   security_event_counts_by_minute  one row per (event type, UTC minute) with the number of
--                                    events appended in that minute; kept by the insert trigger of
--                                    0002 (replaced below) under the chain lock, in the appending
--                                    transaction, so it is exactly as visible as the rows it counts.
--                                    Only the last 48 hours are kept (see Pruning). Guarded like
--                                    security_event_counts: written only from inside the trigger.
--
-- Exact windows
--   A window [now() - w, now()] is the sum of the buckets of the minutes after the one its start
--   falls in, plus a count(*) over the raw rows of that one boundary minute from the start on (a
--   range scan of at most one minute of rows on the created_at index). Every bucket after the
--   boundary minute lies wholly inside the window, so the result equals count(*) WHERE created_at
--   >= now() - w. Minutes are truncated in UTC (date_trunc(…, 'UTC')), independent of the
--   session's TimeZone. The query is countsByTypeQuery in app/audit/store.ts.
--   Archived rows leave the table but not their buckets, and archive_security_events() does not
--   touch this table. A cut older than the 24-hour window (the default: SECURITY_AUDIT_HOT_DAYS
--   >= 1) changes no bucket the windows read; while a cut lies within the last day (only
--   --hot-days 0 or a recent --before do that) the query says so and the store counts rows
--   instead, until the cut is a day old. Archived rows are a seq prefix, and seq order is
--   created_at order barring a backwards clock step, so the first row left in the table tells.
--
-- Pruning
--   When an append creates a new minute row for its type (the upsert returns count = 1: once per
--   type and minute), it deletes that type's minutes older than 48 hours before it. Each minute row
--   is created once and deleted once, so pruning costs O(1) amortised per append and nothing on
--   the common path (an append into an existing minute is the one upsert). The table holds at most
--   2,881 rows per event type (~80,000 for every type); a type that stops occurring keeps its last
--   48 hours of minutes until it occurs again. 48 hours is twice what the windows read (the minutes
--   after now() - 24 h): pruning is relative to a type's own newest event, never later than now(),
--   and even a clock step of less than a day cannot make it reach into the window.
--
-- Costs
--   One more upsert per append under the chain lock (and, once per type and minute, an index range
--   delete that usually finds one row). Like the all-time counter, each append leaves a dead
--   version of its minute row (a HOT update: the count is not indexed).
--
-- Deploying
--   The migration locks security_event_audit against writes (SHARE ROW EXCLUSIVE) before it
--   replaces the trigger and backfills, so no append can slip between the backfill's snapshot and
--   the new trigger: appends wait for the migration (about a second per million rows of the last
--   25 hours) and then run the new trigger; an append already in progress is waited for and
--   counted by the backfill. Reads are not blocked.
--   The lock comes from re-enabling the chain trigger (a no-op: it is enabled), because LOCK TABLE
--   in a mode that blocks writes needs UPDATE, DELETE or TRUNCATE on the table before PostgreSQL
--   17, which 0002 revoked from the owner; ALTER TABLE needs only ownership.

ALTER TABLE security_event_audit ENABLE TRIGGER security_event_audit_chain;

CREATE TABLE security_event_counts_by_minute (
  event_type text NOT NULL,
  -- date_trunc('minute', created_at, 'UTC') of the counted rows.
  minute timestamptz NOT NULL,
  count bigint NOT NULL CHECK (count > 0),
  PRIMARY KEY (event_type, minute)
);

-- The minutes of the last 25 hours (whole minutes; the windows read those after now() - 24 h).
-- Minutes before that are never read, so they are not reconstructed.
INSERT INTO security_event_counts_by_minute (event_type, minute, count)
SELECT event_type, date_trunc('minute', created_at, 'UTC'), count(*)
  FROM security_event_audit
 WHERE created_at >= date_trunc('minute', now() - interval '25 hours', 'UTC')
 GROUP BY 1, 2;

-- 0002's append trigger plus the minute counter. CREATE OR REPLACE keeps its owner, SECURITY
-- DEFINER and grants, and the trigger that calls it.
CREATE OR REPLACE FUNCTION security_event_audit_before_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_head record;
  v_minute timestamptz;
  v_minute_count bigint;
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
  v_minute := date_trunc('minute', NEW.created_at, 'UTC');
  INSERT INTO security_event_counts_by_minute AS m (event_type, minute, count) VALUES (NEW.event_type, v_minute, 1)
    ON CONFLICT (event_type, minute) DO UPDATE SET count = m.count + 1
    RETURNING m.count INTO v_minute_count;
  -- A new minute for this type (see Pruning in the header): drop its minutes older than 48 hours.
  -- Hours, not days: '2 days' would follow the session's daylight-saving transitions.
  IF v_minute_count = 1 THEN
    DELETE FROM security_event_counts_by_minute
     WHERE event_type = NEW.event_type AND minute < v_minute - interval '48 hours';
  END IF;
  RETURN NEW;
END
$$;

-- Written only from inside the insert trigger, like security_event_counts (0002).
CREATE TRIGGER security_event_counts_by_minute_guard
  BEFORE INSERT OR UPDATE OR DELETE ON security_event_counts_by_minute
  FOR EACH ROW EXECUTE FUNCTION security_event_audit_internal_only();
CREATE TRIGGER security_event_counts_by_minute_no_truncate
  BEFORE TRUNCATE ON security_event_counts_by_minute
  FOR EACH STATEMENT EXECUTE FUNCTION security_event_audit_internal_only();

-- As for security_event_counts: the owner keeps write access (the SECURITY DEFINER trigger runs
-- as the owner; the guard still rejects writes from outside it), PUBLIC has none.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON security_event_counts_by_minute FROM PUBLIC;
