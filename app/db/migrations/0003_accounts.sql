-- Accounts, sessions, refresh tokens and per-account lockout (contract §3, §8).

CREATE TABLE users (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  email citext NOT NULL CONSTRAINT users_email_key UNIQUE,
  display_name text NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 64),
  password_hash text NOT NULL,
  role text NOT NULL DEFAULT 'player' CHECK (role IN ('player', 'admin')),
  -- Set by the ops force-password-reset action; login answers password_reset_required until cleared.
  password_reset_required boolean NOT NULL DEFAULT false,
  -- Maintained by the MFA feature through the accounts service when TOTP is activated/disabled.
  mfa_enabled boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_sessions (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  -- Authentication methods behind this session (RFC 8176 values: pwd, otp).
  amr text[] NOT NULL,
  -- The role the session was issued for: admin sessions get the shorter lifetime and no refresh grace.
  role text NOT NULL CHECK (role IN ('player', 'admin')),
  created_at timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz,
  revoked_reason text,
  ip inet,
  user_agent text CHECK (char_length(user_agent) <= 512),
  client_platform text,
  client_version text,
  CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
);
CREATE INDEX user_sessions_active_by_user ON user_sessions (user_id, created_at DESC) WHERE revoked_at IS NULL;
CREATE INDEX user_sessions_active ON user_sessions (expires_at) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  session_id uuid NOT NULL REFERENCES user_sessions (id) ON DELETE CASCADE,
  -- SHA-256 of the opaque token; the token itself is never stored.
  token_hash bytea NOT NULL CONSTRAINT refresh_tokens_token_hash_key UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  -- Set when this token was exchanged for its successor.
  rotated_at timestamptz,
  -- Deferred: the predecessor is marked rotated before its successor row is inserted, so that
  -- the one-live-token-per-session index holds at every statement.
  successor_id uuid REFERENCES refresh_tokens (id) ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED,
  -- The successor token sealed with AES-256-GCM, kept only for the reuse grace window so an
  -- idempotent retry can be answered with the same successor; cleared afterwards.
  successor_sealed bytea,
  CHECK ((rotated_at IS NULL) = (successor_id IS NULL))
);
-- At most one live (unrotated) token per session: a second one would be a forked family.
CREATE UNIQUE INDEX refresh_tokens_one_live_per_session ON refresh_tokens (session_id) WHERE rotated_at IS NULL;
CREATE INDEX refresh_tokens_sealed ON refresh_tokens (rotated_at) WHERE successor_sealed IS NOT NULL;

-- Keyed by a hash of the normalised e-mail address, for known and unknown addresses alike, so
-- that the table reveals nothing about which accounts exist.
CREATE TABLE auth_lockouts (
  account_key bytea PRIMARY KEY,
  consecutive_failures integer NOT NULL DEFAULT 0,
  lock_count integer NOT NULL DEFAULT 0,
  locked_until timestamptz,
  last_failure_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auth_lockouts_locked ON auth_lockouts (locked_until) WHERE locked_until IS NOT NULL;
