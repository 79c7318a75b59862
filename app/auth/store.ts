/**
 * All SQL of accounts, sessions, refresh tokens and lockouts.
 */
import { sql, type CommonQueryMethods, type DatabasePool } from 'slonik';
import { z } from 'zod';

type Queryable = CommonQueryMethods;

export const roleSchema = z.enum(['player', 'admin']);
export type Role = z.infer<typeof roleSchema>;

const userRow = z.object({
  id: z.string().uuid(),
  email: z.string(),
  display_name: z.string(),
  password_hash: z.string(),
  role: roleSchema,
  password_reset_required: z.boolean(),
  mfa_enabled: z.boolean(),
  created_at: z.string(),
});
export type UserRow = z.infer<typeof userRow>;

const sessionRow = z.object({
  id: z.string().uuid(),
  user_id: z.string().uuid(),
  amr: z.array(z.string()),
  role: roleSchema,
  created_at: z.string(),
  last_used_at: z.string(),
  expires_at: z.string(),
  revoked_at: z.string().nullable(),
  revoked_reason: z.string().nullable(),
  ip: z.string().nullable(),
  user_agent: z.string().nullable(),
  /** Computed by the query: expires_at in the past. */
  expired: z.boolean(),
});
export type SessionRow = z.infer<typeof sessionRow>;

const refreshTokenRow = z.object({
  id: z.string().uuid(),
  session_id: z.string().uuid(),
  expires_at: z.string(),
  rotated_at: z.string().nullable(),
  successor_id: z.string().uuid().nullable(),
  successor_sealed: z.instanceof(Buffer).nullable(),
  expired: z.boolean(),
  /** Seconds since rotation, computed by the database clock (null when live). */
  seconds_since_rotation: z.number().nullable(),
});
export type RefreshTokenRow = z.infer<typeof refreshTokenRow>;

const sessionColumns = sql.fragment`
  id, user_id, amr, role, created_at, last_used_at, expires_at, revoked_at, revoked_reason,
  host(ip) AS ip, user_agent, expires_at <= now() AS expired`;

const userColumns = sql.fragment`
  id, email::text AS email, display_name, password_hash, role, password_reset_required, mfa_enabled, created_at`;

const lockoutRow = z.object({
  locked: z.boolean(),
  retry_after_seconds: z.number(),
  lock_count: z.number(),
  just_locked: z.boolean(),
});

export const createAuthStore = (pool: DatabasePool) => ({
  pool,

  /** @throws UniqueIntegrityConstraintViolationError `users_email_key` when the address is taken. */
  insertUser: (db: Queryable, user: { email: string; displayName: string; passwordHash: string }) =>
    db.one(sql.type(userRow)`
      INSERT INTO users (email, display_name, password_hash)
      VALUES (${user.email}, ${user.displayName}, ${user.passwordHash})
      RETURNING ${userColumns}`),

  findUserByEmail: (db: Queryable, email: string) =>
    db.maybeOne(sql.type(userRow)`SELECT ${userColumns} FROM users WHERE email = ${email}`),

  findUserById: (db: Queryable, id: string) =>
    db.maybeOne(sql.type(userRow)`SELECT ${userColumns} FROM users WHERE id = ${id}`),

  setMfaEnabled: (db: Queryable, userId: string, enabled: boolean) =>
    db.query(sql.unsafe`UPDATE users SET mfa_enabled = ${enabled}, updated_at = now() WHERE id = ${userId}`),

  updatePasswordHash: (db: Queryable, userId: string, passwordHash: string) =>
    db.query(sql.unsafe`UPDATE users SET password_hash = ${passwordHash}, updated_at = now() WHERE id = ${userId}`),

  insertSession: (
    db: Queryable,
    session: {
      userId: string;
      amr: readonly string[];
      role: Role;
      ttlSeconds: number;
      ip: string | null;
      userAgent: string | null;
      clientPlatform: string | null;
      clientVersion: string | null;
    },
  ) =>
    db.one(sql.type(sessionRow)`
      INSERT INTO user_sessions (user_id, amr, role, expires_at, ip, user_agent, client_platform, client_version)
      VALUES (
        ${session.userId}, ${sql.array([...session.amr], 'text')}, ${session.role},
        now() + make_interval(secs => ${session.ttlSeconds}),
        ${session.ip}::inet, ${session.userAgent}, ${session.clientPlatform}, ${session.clientVersion})
      RETURNING ${sessionColumns}`),

  /** Locks the session row: every rotation of one session's refresh tokens happens under this lock. */
  lockSession: (db: Queryable, sessionId: string) =>
    db.maybeOne(sql.type(sessionRow)`SELECT ${sessionColumns} FROM user_sessions WHERE id = ${sessionId} FOR UPDATE`),

  findSession: (db: Queryable, sessionId: string) =>
    db.maybeOne(sql.type(sessionRow)`SELECT ${sessionColumns} FROM user_sessions WHERE id = ${sessionId}`),

  /** Sliding expiry for player sessions; admin sessions keep their absolute expiry. */
  touchSession: (db: Queryable, sessionId: string, extendBySeconds: number | null) =>
    db.query(sql.unsafe`
      UPDATE user_sessions
      SET last_used_at = now(),
          expires_at = CASE WHEN ${extendBySeconds}::integer IS NULL THEN expires_at
                            ELSE now() + make_interval(secs => ${extendBySeconds}::integer) END
      WHERE id = ${sessionId}`),

  insertRefreshToken: (db: Queryable, token: { id?: string; sessionId: string; tokenHash: Buffer; expiresAt: string }) =>
    db.oneFirst(sql.type(z.object({ id: z.string().uuid() }))`
      INSERT INTO refresh_tokens (id, session_id, token_hash, expires_at)
      VALUES (coalesce(${token.id ?? null}::uuid, gen_random_uuid()), ${token.sessionId}, ${sql.binary(token.tokenHash)},
              ${token.expiresAt}::timestamptz)
      RETURNING id`),

  findRefreshTokenByHash: (db: Queryable, tokenHash: Buffer) =>
    db.maybeOne(sql.type(refreshTokenRow)`
      SELECT id, session_id, expires_at, rotated_at, successor_id, successor_sealed, expires_at <= now() AS expired,
             extract(epoch FROM now() - rotated_at)::float8 AS seconds_since_rotation
      FROM refresh_tokens WHERE token_hash = ${sql.binary(tokenHash)}`),

  /** The session's live token, if any (there is at most one). */
  findLiveRefreshToken: (db: Queryable, sessionId: string) =>
    db.maybeOne(sql.type(refreshTokenRow)`
      SELECT id, session_id, expires_at, rotated_at, successor_id, successor_sealed, expires_at <= now() AS expired,
             NULL::float8 AS seconds_since_rotation
      FROM refresh_tokens WHERE session_id = ${sessionId} AND rotated_at IS NULL`),

  /**
   * Marks a live token rotated. Returns false when it was not live any more (the row lock on the
   * session makes that impossible in practice; the predicate keeps the update single-use anyway).
   */
  markRotated: async (db: Queryable, rotation: { tokenId: string; successorId: string; successorSealed: Buffer | null }) =>
    (await db.maybeOneFirst(sql.type(z.object({ id: z.string() }))`
      UPDATE refresh_tokens
      SET rotated_at = now(), successor_id = ${rotation.successorId},
          successor_sealed = ${rotation.successorSealed === null ? null : sql.binary(rotation.successorSealed)}
      WHERE id = ${rotation.tokenId} AND rotated_at IS NULL
      RETURNING id`)) !== null,

  /** Forgets sealed successors once they can no longer be needed. */
  clearSealedSuccessors: (db: Queryable, options: { sessionId?: string; olderThanSeconds: number }) =>
    db.query(sql.unsafe`
      UPDATE refresh_tokens SET successor_sealed = NULL
      WHERE successor_sealed IS NOT NULL
        AND (${options.sessionId ?? null}::uuid IS NULL OR session_id = ${options.sessionId ?? null}::uuid)
        AND rotated_at <= now() - make_interval(secs => ${options.olderThanSeconds})`),

  /** Revokes one session; returns it when it was active (and, with `userId`, owned by that user). */
  revokeSession: (db: Queryable, revocation: { sessionId: string; userId?: string; reason: string }) =>
    db.maybeOne(sql.type(z.object({ id: z.string().uuid(), user_id: z.string().uuid() }))`
      UPDATE user_sessions SET revoked_at = now(), revoked_reason = ${revocation.reason}
      WHERE id = ${revocation.sessionId}
        AND revoked_at IS NULL
        AND (${revocation.userId ?? null}::uuid IS NULL OR user_id = ${revocation.userId ?? null}::uuid)
      RETURNING id, user_id`),

  /** Revokes every active session of a user; returns their ids. */
  revokeUserSessions: (db: Queryable, revocation: { userId: string; reason: string }) =>
    db.anyFirst(sql.type(z.object({ id: z.string().uuid() }))`
      UPDATE user_sessions SET revoked_at = now(), revoked_reason = ${revocation.reason}
      WHERE user_id = ${revocation.userId} AND revoked_at IS NULL
      RETURNING id`),

  /** Revokes every active session of every user (ops token-leak response); returns how many. */
  revokeAllSessions: (db: Queryable, reason: string) =>
    db.oneFirst(sql.type(z.object({ revoked: z.number() }))`
      WITH revoked AS (
        UPDATE user_sessions SET revoked_at = now(), revoked_reason = ${reason}
        WHERE revoked_at IS NULL
        RETURNING 1
      )
      SELECT count(*)::int AS revoked FROM revoked`),

  /** Sets a user's role (ops); returns the updated user. */
  setRole: (db: Queryable, userId: string, role: Role) =>
    db.maybeOne(sql.type(userRow)`
      UPDATE users SET role = ${role}, updated_at = now() WHERE id = ${userId} RETURNING ${userColumns}`),

  /** Sets or clears the forced-reset flag (ops); returns the updated user. */
  setPasswordResetRequired: (db: Queryable, userId: string, required: boolean) =>
    db.maybeOne(sql.type(userRow)`
      UPDATE users SET password_reset_required = ${required}, updated_at = now() WHERE id = ${userId} RETURNING ${userColumns}`),

  /** Stores a new password hash and clears the forced-reset flag (the password reset flow). */
  completePasswordReset: (db: Queryable, userId: string, passwordHash: string) =>
    db.maybeOne(sql.type(userRow)`
      UPDATE users SET password_hash = ${passwordHash}, password_reset_required = false, updated_at = now()
      WHERE id = ${userId} RETURNING ${userColumns}`),

  listActiveSessions: (db: Queryable, userId: string) =>
    db.any(sql.type(sessionRow)`
      SELECT ${sessionColumns} FROM user_sessions
      WHERE user_id = ${userId} AND revoked_at IS NULL AND expires_at > now()
      ORDER BY created_at DESC
      LIMIT 200`),

  /** The lockout state of an account key, without changing it. */
  getLockout: (db: Queryable, accountKey: Buffer) =>
    db.maybeOne(sql.type(z.object({ retry_after_seconds: z.number() }))`
      SELECT ceil(extract(epoch FROM locked_until - now()))::int AS retry_after_seconds
      FROM auth_lockouts WHERE account_key = ${sql.binary(accountKey)} AND locked_until > now()`),

  /**
   * Counts one failure atomically; the threshold-th consecutive failure locks the account for
   * base·2^(previous locks) seconds, capped at max.
   */
  recordFailure: (db: Queryable, failure: { accountKey: Buffer; threshold: number; baseSeconds: number; maxSeconds: number }) =>
    db.one(sql.type(lockoutRow)`
      INSERT INTO auth_lockouts AS l (account_key, consecutive_failures, lock_count, locked_until, last_failure_at)
      VALUES (
        ${sql.binary(failure.accountKey)},
        CASE WHEN 1 >= ${failure.threshold} THEN 0 ELSE 1 END,
        CASE WHEN 1 >= ${failure.threshold} THEN 1 ELSE 0 END,
        CASE WHEN 1 >= ${failure.threshold} THEN now() + make_interval(secs => least(${failure.baseSeconds}::float8, ${failure.maxSeconds}::float8)) END,
        now())
      ON CONFLICT (account_key) DO UPDATE SET
        consecutive_failures = CASE WHEN l.consecutive_failures + 1 >= ${failure.threshold} THEN 0 ELSE l.consecutive_failures + 1 END,
        lock_count = CASE WHEN l.consecutive_failures + 1 >= ${failure.threshold} THEN l.lock_count + 1 ELSE l.lock_count END,
        locked_until = CASE WHEN l.consecutive_failures + 1 >= ${failure.threshold}
          THEN now() + make_interval(secs => least(${failure.baseSeconds}::float8 * power(2, least(l.lock_count, 30)), ${failure.maxSeconds}))
          ELSE l.locked_until END,
        last_failure_at = now(),
        updated_at = now()
      RETURNING
        coalesce(locked_until > now(), false) AS locked,
        greatest(ceil(extract(epoch FROM coalesce(locked_until, now()) - now())), 0)::int AS retry_after_seconds,
        lock_count,
        (consecutive_failures = 0) AS just_locked`),

  resetLockout: (db: Queryable, accountKey: Buffer) =>
    db.query(sql.unsafe`DELETE FROM auth_lockouts WHERE account_key = ${sql.binary(accountKey)}`),
});

export type AuthStore = ReturnType<typeof createAuthStore>;
