-- Release policies, publish drains and the ops audit trail (contract §6, §7, §8).
--
-- Shape
--   admin_action_audit            one row per mutating ops call, written in the same transaction
--                                 as the change. Append-only, never deleted.
--   release_policies              per platform: min supported / latest version, force update,
--                                 login gate; at most one active per platform.
--   publish_drains                one row per published release: the drain's parameters and its
--                                 state (running → completed | failed). The only mutable table
--                                 here besides release_policies and service_instances.
--   publish_drain_events          the drain's lifecycle (requested, started, instance_started,
--                                 instance_completed, instance_failed, completed, failed) with
--                                 per-instance counts. Append-only, never deleted.
--   publish_drain_session_audit   every affected websocket of every instance and what was done
--                                 to it (notified, closed, skipped). Append-only, never deleted.
--   service_instances             heartbeat of every running API instance: the drain knows which
--                                 instances must report, and notices one that died.
--
-- Append-only tables: UPDATE, DELETE and TRUNCATE are revoked from the application's role (the
-- owner included, where it also runs migrations) and rejected by triggers for everybody, so even
-- a superuser connection must drop a trigger first (which leaves a trace in the DDL history).

CREATE FUNCTION reject_append_only_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$$;

-- ---------------------------------------------------------------------------------------------
-- admin_action_audit

CREATE TABLE admin_action_audit (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  -- 'ops-token' or the admin's user id.
  actor text NOT NULL CHECK (char_length(actor) BETWEEN 1 AND 100),
  action text NOT NULL CHECK (char_length(action) BETWEEN 1 AND 100),
  target text CHECK (char_length(target) <= 200),
  details jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object' AND octet_length(details::text) <= 65536),
  request_id text CHECK (char_length(request_id) <= 128),
  ip inet,
  -- clock_timestamp(): the moment of the insert, so rows of one transaction keep their order.
  created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- Newest-first keyset pages (created_at DESC, id DESC), unfiltered and filtered by action / actor.
CREATE INDEX admin_action_audit_created ON admin_action_audit (created_at DESC, id DESC);
CREATE INDEX admin_action_audit_action_created ON admin_action_audit (action, created_at DESC, id DESC);
CREATE INDEX admin_action_audit_actor_created ON admin_action_audit (actor, created_at DESC, id DESC);

CREATE TRIGGER admin_action_audit_append_only
  BEFORE UPDATE OR DELETE ON admin_action_audit
  FOR EACH STATEMENT EXECUTE FUNCTION reject_append_only_change();
CREATE TRIGGER admin_action_audit_no_truncate
  BEFORE TRUNCATE ON admin_action_audit
  FOR EACH STATEMENT EXECUTE FUNCTION reject_append_only_change();

-- ---------------------------------------------------------------------------------------------
-- release_policies

CREATE TABLE release_policies (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  platform text NOT NULL CHECK (platform IN ('ios', 'android', 'windows', 'macos', 'linux', 'web')),
  -- semver text, validated by the application (app/ops/schemas.ts) and compared with `semver`.
  min_supported_version text NOT NULL CHECK (char_length(min_supported_version) BETWEEN 1 AND 64),
  latest_version text NOT NULL CHECK (char_length(latest_version) BETWEEN 1 AND 64),
  force_update boolean NOT NULL,
  login_gate boolean NOT NULL,
  active boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  activated_at timestamptz,
  deactivated_at timestamptz,
  created_by text NOT NULL CHECK (char_length(created_by) BETWEEN 1 AND 100),
  CHECK (NOT active OR activated_at IS NOT NULL)
);
-- One active policy per platform; the activation swaps them in one transaction.
CREATE UNIQUE INDEX release_policies_one_active ON release_policies (platform) WHERE active;
CREATE INDEX release_policies_platform_created ON release_policies (platform, created_at DESC);

-- ---------------------------------------------------------------------------------------------
-- service_instances

CREATE TABLE service_instances (
  instance_id text PRIMARY KEY CHECK (char_length(instance_id) BETWEEN 1 AND 100),
  hostname text,
  pid integer,
  started_at timestamptz NOT NULL DEFAULT now(),
  last_seen_at timestamptz NOT NULL DEFAULT now(),
  -- Set by a graceful shutdown: the instance is gone without having died.
  stopped_at timestamptz
);
CREATE INDEX service_instances_last_seen ON service_instances (last_seen_at);

-- ---------------------------------------------------------------------------------------------
-- publish drains

CREATE TABLE publish_drains (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  policy_id uuid NOT NULL REFERENCES release_policies (id),
  platform text NOT NULL CHECK (platform IN ('ios', 'android', 'windows', 'macos', 'linux', 'web')),
  version text NOT NULL CHECK (char_length(version) BETWEEN 1 AND 64),
  min_supported_version text NOT NULL CHECK (char_length(min_supported_version) BETWEEN 1 AND 64),
  force_update boolean NOT NULL,
  grace_seconds integer NOT NULL CHECK (grace_seconds BETWEEN 0 AND 3600),
  status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed')),
  requested_by text NOT NULL CHECK (char_length(requested_by) BETWEEN 1 AND 100),
  requested_at timestamptz NOT NULL DEFAULT now(),
  -- The instances alive when the drain was requested: each must report completion.
  expected_instances text[] NOT NULL,
  -- A drain still running after this is finalised (failed: deadline_exceeded) by any instance.
  deadline_at timestamptz NOT NULL,
  finished_at timestamptz,
  failure_reason text,
  CHECK ((status = 'running') = (finished_at IS NULL)),
  CHECK ((status = 'failed') = (failure_reason IS NOT NULL))
);
-- The sweepers' and the runners' look-up of running drains, and the metrics' count by status.
CREATE INDEX publish_drains_running ON publish_drains (deadline_at) WHERE status = 'running';
CREATE INDEX publish_drains_status ON publish_drains (status);
CREATE INDEX publish_drains_requested ON publish_drains (requested_at DESC, id DESC);

-- Terminal states are final: a drain never leaves completed/failed, and its parameters never change.
CREATE FUNCTION publish_drains_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'publish_drains rows are never deleted' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF OLD.status <> 'running' THEN
    RAISE EXCEPTION 'publish drain % is already %', OLD.id, OLD.status USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF (NEW.id, NEW.policy_id, NEW.platform, NEW.version, NEW.min_supported_version, NEW.force_update, NEW.grace_seconds,
      NEW.requested_by, NEW.requested_at, NEW.expected_instances, NEW.deadline_at)
     IS DISTINCT FROM
     (OLD.id, OLD.policy_id, OLD.platform, OLD.version, OLD.min_supported_version, OLD.force_update, OLD.grace_seconds,
      OLD.requested_by, OLD.requested_at, OLD.expected_instances, OLD.deadline_at) THEN
    RAISE EXCEPTION 'publish drain parameters are immutable' USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER publish_drains_guard
  BEFORE UPDATE OR DELETE ON publish_drains
  FOR EACH ROW EXECUTE FUNCTION publish_drains_guard();
-- Statement level too, so that a DELETE matching no row fails as well.
CREATE TRIGGER publish_drains_no_delete
  BEFORE DELETE ON publish_drains
  FOR EACH STATEMENT EXECUTE FUNCTION reject_append_only_change();
CREATE TRIGGER publish_drains_no_truncate
  BEFORE TRUNCATE ON publish_drains
  FOR EACH STATEMENT EXECUTE FUNCTION reject_append_only_change();

CREATE TABLE publish_drain_events (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  drain_id uuid NOT NULL REFERENCES publish_drains (id),
  event text NOT NULL CHECK (event IN (
    'requested', 'started', 'instance_started', 'instance_completed', 'instance_failed', 'completed', 'failed'
  )),
  -- The instance an instance_* event is about (and the instance that wrote started/completed/failed).
  instance_id text CHECK (char_length(instance_id) <= 100),
  notified integer CHECK (notified >= 0),
  closed integer CHECK (closed >= 0),
  skipped integer CHECK (skipped >= 0),
  details jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object' AND octet_length(details::text) <= 65536),
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  CHECK ((event LIKE 'instance\_%') = (instance_id IS NOT NULL) OR event IN ('started', 'completed', 'failed'))
);
-- Each lifecycle step happens once per drain (per instance for instance_*): retries and races
-- between instances are absorbed by ON CONFLICT DO NOTHING.
CREATE UNIQUE INDEX publish_drain_events_once ON publish_drain_events (
  drain_id, event, (CASE WHEN event LIKE 'instance\_%' THEN instance_id ELSE '' END)
);
CREATE INDEX publish_drain_events_created ON publish_drain_events (created_at DESC, id DESC);

CREATE TRIGGER publish_drain_events_append_only
  BEFORE UPDATE OR DELETE ON publish_drain_events
  FOR EACH STATEMENT EXECUTE FUNCTION reject_append_only_change();
CREATE TRIGGER publish_drain_events_no_truncate
  BEFORE TRUNCATE ON publish_drain_events
  FOR EACH STATEMENT EXECUTE FUNCTION reject_append_only_change();

CREATE TABLE publish_drain_session_audit (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  drain_id uuid NOT NULL REFERENCES publish_drains (id),
  -- No foreign keys to sessions/users: the audit outlives them.
  session_id uuid NOT NULL,
  user_id uuid NOT NULL,
  -- The websocket (one session may hold several).
  connection_id uuid NOT NULL,
  instance_id text NOT NULL CHECK (char_length(instance_id) <= 100),
  platform text,
  client_version text CHECK (char_length(client_version) <= 64),
  action text NOT NULL CHECK (action IN ('notified', 'closed', 'skipped')),
  at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX publish_drain_session_audit_drain ON publish_drain_session_audit (drain_id, instance_id, action);
CREATE INDEX publish_drain_session_audit_session ON publish_drain_session_audit (session_id);

CREATE TRIGGER publish_drain_session_audit_append_only
  BEFORE UPDATE OR DELETE ON publish_drain_session_audit
  FOR EACH STATEMENT EXECUTE FUNCTION reject_append_only_change();
CREATE TRIGGER publish_drain_session_audit_no_truncate
  BEFORE TRUNCATE ON publish_drain_session_audit
  FOR EACH STATEMENT EXECUTE FUNCTION reject_append_only_change();

-- ---------------------------------------------------------------------------------------------
-- Privileges (superusers bypass these; for them the triggers above are the barrier).

REVOKE UPDATE, DELETE, TRUNCATE, TRIGGER ON admin_action_audit, publish_drain_events, publish_drain_session_audit FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE, TRIGGER ON admin_action_audit, publish_drain_events, publish_drain_session_audit FROM CURRENT_USER;
REVOKE DELETE, TRUNCATE ON publish_drains FROM PUBLIC;
REVOKE DELETE, TRUNCATE ON publish_drains FROM CURRENT_USER;
