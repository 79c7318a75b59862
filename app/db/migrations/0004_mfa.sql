-- TOTP multi-factor authentication: enrollments, recovery codes and login challenges
-- (contract §3 POST /auth/mfa/verify, §4, §8).

-- One TOTP enrollment per user: pending while activated_at IS NULL, active afterwards.
CREATE TABLE mfa_totp (
  user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
  -- A fresh id per (re-)enrollment: a code checked against one secret can never be accepted
  -- for a secret that replaced it in between.
  enrollment_id uuid NOT NULL DEFAULT gen_random_uuid(),
  -- AES-256-GCM (app/crypto/seal.ts) with the user id as associated data, so a ciphertext
  -- cannot be moved to another account. The plaintext secret is never stored.
  secret_sealed bytea NOT NULL,
  -- Fingerprint of the TOTP_ENCRYPTION_KEY that sealed the secret (also inside secret_sealed):
  -- during a key rotation, rows still on the previous key are found with it.
  key_id bytea NOT NULL CHECK (octet_length(key_id) = 8),
  activated_at timestamptz,
  -- Replay protection: the RFC 6238 time step of the last accepted code. A code is accepted only
  -- for a later step, with an atomic compare-and-set.
  last_used_step bigint CHECK (last_used_step >= 0),
  -- The current generation of recovery codes; codes of any other batch are void.
  recovery_batch_id uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK (activated_at IS NOT NULL OR recovery_batch_id IS NULL)
);
CREATE INDEX mfa_totp_key_id ON mfa_totp (key_id);

-- Single-use recovery codes, stored only as SHA-256 over the user id and the normalised code
-- (80 random bits each). Removed with the enrollment.
CREATE TABLE mfa_recovery_codes (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL REFERENCES mfa_totp (user_id) ON DELETE CASCADE,
  batch_id uuid NOT NULL,
  code_hash bytea NOT NULL CHECK (octet_length(code_hash) = 32),
  used_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT mfa_recovery_codes_user_hash_key UNIQUE (user_id, code_hash)
);
CREATE INDEX mfa_recovery_codes_batch ON mfa_recovery_codes (user_id, batch_id);

-- The step between a correct password and the second factor. The opaque mfaToken (kxm_…) is
-- stored only as its SHA-256; it is single use, short-lived and bound to the user and client IP.
CREATE TABLE mfa_challenges (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  token_hash bytea NOT NULL CONSTRAINT mfa_challenges_token_hash_key UNIQUE CHECK (octet_length(token_hash) = 32),
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  ip inet,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  consumed_at timestamptz,
  CHECK (expires_at <= created_at + interval '300 seconds')
);
CREATE INDEX mfa_challenges_user ON mfa_challenges (user_id);
CREATE INDEX mfa_challenges_expires ON mfa_challenges (expires_at);
