-- Realtime (contract §5, §8): one-time websocket tickets, chat messages, the chat write limit
-- and mute state, large-notification bodies, and session-revocation notifications.

-- One-time websocket tickets. Only the SHA-256 of the ticket is stored. A ticket is consumed by
-- one atomic UPDATE that also checks its session (app/realtime/store.ts `consumeTicket`).
CREATE TABLE ws_tickets (
  ticket_hash bytea PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  session_id uuid NOT NULL REFERENCES user_sessions (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  consumed_at timestamptz,
  CHECK (expires_at > created_at),
  CHECK (expires_at <= created_at + interval '60 seconds')
);
-- Housekeeping deletes tickets some time after they expired.
CREATE INDEX ws_tickets_expires ON ws_tickets (expires_at);
-- The per-session cap on outstanding tickets counts these.
CREATE INDEX ws_tickets_outstanding ON ws_tickets (session_id, expires_at) WHERE consumed_at IS NULL;

-- Chat messages. `display_name` is the sender's name at send time; `text` is stored exactly as
-- accepted (NFC, validated) and never interpreted as markup by the server.
CREATE TABLE chat_messages (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  channel text NOT NULL CONSTRAINT chat_messages_channel_check CHECK (channel ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  display_name text NOT NULL,
  text text NOT NULL CHECK (char_length(text) BETWEEN 1 AND 2000),
  client_msg_id text CHECK (client_msg_id ~ '^[A-Za-z0-9._:-]{1,64}$'),
  sent_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- History pages: newest first, keyset (sent_at, id).
CREATE INDEX chat_messages_channel_sent ON chat_messages (channel, sent_at DESC, id DESC);
-- Idempotent sends: a retried clientMsgId returns the stored message instead of a second one.
CREATE UNIQUE INDEX chat_messages_user_client_msg ON chat_messages (user_id, client_msg_id) WHERE client_msg_id IS NOT NULL;
CREATE INDEX chat_messages_user ON chat_messages (user_id);

-- Chat write limit and mute state, shared by every instance.
--
-- Why PostgreSQL and not Redis: Redis is optional in our deployment (REDIS_URL may be unset), and
-- a per-instance fallback would let a user multiply the limit by the number of instances. The
-- send already writes the message in a PostgreSQL transaction, so the check costs no extra
-- round trip: the user's row is locked (serialising that user's sends across instances) and
-- updated in the same transaction as the insert. The contention is per user only.
--
-- The limit is a sliding log: `recent_sends` holds the times of the accepted sends of the last
-- window (at most CHAT_RATE_LIMIT_MAX entries), so "at most MAX in any WINDOW seconds" holds
-- exactly and retryAfter is when the oldest of them leaves the window.
--
-- A "violation" is a send rejected by that limit. A "repeated violation" is the third one within
-- 60 seconds (the client ignored retryAfter twice): the user is muted for
-- CHAT_MUTE_BASE_SECONDS * 2^mute_level, at most CHAT_MUTE_MAX_SECONDS, and mute_level grows by
-- one. Sends while muted are refused without counting. mute_level returns to 0 after 24 hours
-- without a mute.
CREATE TABLE chat_rate_limits (
  user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
  recent_sends timestamptz[] NOT NULL DEFAULT '{}',
  violations integer NOT NULL DEFAULT 0,
  first_violation_at timestamptz,
  mute_level integer NOT NULL DEFAULT 0,
  muted_until timestamptz,
  last_muted_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_rate_limits_updated ON chat_rate_limits (updated_at);

-- One chat write attempt, called inside the send's transaction. Locks the user's row, then:
--   muted            → outcome 'muted', retry_after_ms until the mute ends (nothing counted);
--   over the limit   → outcome 'rate_limited' (a violation), or 'muted' when it is the
--                      repeated one (just_muted, mute_seconds set);
--   otherwise        → outcome 'allowed', the send is logged.
CREATE FUNCTION chat_rate_limit_attempt(
  p_user_id uuid,
  p_max integer,
  p_window_seconds integer,
  p_mute_base_seconds integer,
  p_mute_max_seconds integer,
  p_violation_threshold integer DEFAULT 3,
  p_violation_window_seconds integer DEFAULT 60
) RETURNS TABLE (outcome text, retry_after_ms bigint, just_muted boolean, mute_seconds integer, mute_level integer, violations integer)
LANGUAGE plpgsql AS $$
DECLARE
  v_now timestamptz := clock_timestamp();
  v_window interval := make_interval(secs => p_window_seconds);
  v_row chat_rate_limits%ROWTYPE;
  v_recent timestamptz[];
  v_mute integer;
BEGIN
  INSERT INTO chat_rate_limits (user_id) VALUES (p_user_id) ON CONFLICT (user_id) DO NOTHING;
  SELECT * INTO v_row FROM chat_rate_limits c WHERE c.user_id = p_user_id FOR UPDATE;

  IF v_row.muted_until IS NOT NULL AND v_row.muted_until > v_now THEN
    RETURN QUERY SELECT 'muted'::text, ceil(extract(epoch FROM v_row.muted_until - v_now) * 1000)::bigint,
      false, NULL::integer, v_row.mute_level, v_row.violations;
    RETURN;
  END IF;

  -- Backoff decays after a day without a mute.
  IF v_row.last_muted_at IS NOT NULL AND v_row.last_muted_at < v_now - interval '24 hours' THEN
    v_row.mute_level := 0;
  END IF;

  SELECT coalesce(array_agg(t ORDER BY t), '{}') INTO v_recent
  FROM unnest(v_row.recent_sends) AS t WHERE t > v_now - v_window;

  IF cardinality(v_recent) < p_max THEN
    UPDATE chat_rate_limits c
    SET recent_sends = v_recent || v_now, mute_level = v_row.mute_level, updated_at = v_now
    WHERE c.user_id = p_user_id;
    RETURN QUERY SELECT 'allowed'::text, 0::bigint, false, NULL::integer, v_row.mute_level, v_row.violations;
    RETURN;
  END IF;

  -- A violation. Count it within the violation window.
  IF v_row.first_violation_at IS NULL OR v_row.first_violation_at <= v_now - make_interval(secs => p_violation_window_seconds) THEN
    v_row.violations := 1;
    v_row.first_violation_at := v_now;
  ELSE
    v_row.violations := v_row.violations + 1;
  END IF;

  IF v_row.violations >= p_violation_threshold THEN
    v_mute := least(p_mute_max_seconds::bigint, p_mute_base_seconds::bigint * (2::bigint ^ least(v_row.mute_level, 40))::bigint)::integer;
    UPDATE chat_rate_limits c
    SET recent_sends = v_recent, violations = 0, first_violation_at = NULL, mute_level = v_row.mute_level + 1,
        muted_until = v_now + make_interval(secs => v_mute), last_muted_at = v_now, updated_at = v_now
    WHERE c.user_id = p_user_id;
    RETURN QUERY SELECT 'muted'::text, v_mute::bigint * 1000, true, v_mute, v_row.mute_level + 1, v_row.violations;
    RETURN;
  END IF;

  UPDATE chat_rate_limits c
  SET recent_sends = v_recent, violations = v_row.violations, first_violation_at = v_row.first_violation_at,
      mute_level = v_row.mute_level, updated_at = v_now
  WHERE c.user_id = p_user_id;
  RETURN QUERY SELECT 'rate_limited'::text,
    greatest(1, ceil(extract(epoch FROM (v_recent[1] + v_window) - v_now) * 1000))::bigint,
    false, NULL::integer, v_row.mute_level, v_row.violations;
END;
$$;

-- Bodies of notifications too large for NOTIFY's 8000-byte payload: the notification carries
-- `ref:<id>` and listeners read the body here (app/db/notifications.ts). Rows are short-lived.
CREATE TABLE notification_payloads (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  channel text NOT NULL,
  payload text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_payloads_created ON notification_payloads (created_at);

-- Session revocation → NOTIFY karaxas_session_revoked, on every path that sets revoked_at
-- (logout, revoke-one, revoke-all, reuse detection, ops bulk revocation, anything added later),
-- delivered at commit. Statement-level with transition tables, so a bulk revocation sends
-- batches of {"sessionIds": [...], "userIds": [...]} — 80 sessions per notification keeps the
-- payload under 7,500 bytes — instead of one notification per row.
--
-- PostgreSQL does not allow a column list (UPDATE OF revoked_at) together with transition
-- tables, so this fires for every UPDATE statement on user_sessions; the common case (a refresh
-- touching last_used_at) leaves at the first EXISTS check.
CREATE FUNCTION user_sessions_notify_revoked() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  v_batch record;
BEGIN
  IF TG_OP = 'UPDATE' THEN
    IF NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.revoked_at IS NOT NULL) THEN
      RETURN NULL;
    END IF;
    FOR v_batch IN
      WITH revoked AS (
        SELECT n.id, n.user_id, (row_number() OVER (ORDER BY n.user_id, n.id) - 1) / 80 AS bucket
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE o.revoked_at IS NULL AND n.revoked_at IS NOT NULL
      )
      SELECT json_agg(r.id ORDER BY r.id) AS session_ids, json_agg(DISTINCT r.user_id) AS user_ids
      FROM revoked r GROUP BY r.bucket ORDER BY r.bucket
    LOOP
      PERFORM pg_notify('karaxas_session_revoked', json_build_object('sessionIds', v_batch.session_ids, 'userIds', v_batch.user_ids)::text);
    END LOOP;
  ELSE
    -- A deleted session (its user deleted) ends like a revoked one.
    FOR v_batch IN
      WITH gone AS (
        SELECT o.id, o.user_id, (row_number() OVER (ORDER BY o.user_id, o.id) - 1) / 80 AS bucket
        FROM old_rows o WHERE o.revoked_at IS NULL
      )
      SELECT json_agg(g.id ORDER BY g.id) AS session_ids, json_agg(DISTINCT g.user_id) AS user_ids
      FROM gone g GROUP BY g.bucket ORDER BY g.bucket
    LOOP
      PERFORM pg_notify('karaxas_session_revoked', json_build_object('sessionIds', v_batch.session_ids, 'userIds', v_batch.user_ids)::text);
    END LOOP;
  END IF;
  RETURN NULL;
END;
$$;

CREATE TRIGGER user_sessions_revoked_notify
  AFTER UPDATE ON user_sessions
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION user_sessions_notify_revoked();

CREATE TRIGGER user_sessions_deleted_notify
  AFTER DELETE ON user_sessions
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION user_sessions_notify_revoked();
