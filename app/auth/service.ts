/**
 * Accounts and sessions: registration, login with lockout, access tokens, refresh-token rotation
 * with reuse detection, and session revocation. Every security state change runs in one
 * transaction together with the security event that describes it.
 */
import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto';
import type { CommonQueryMethods as Queryable, DatabasePool } from 'slonik';
import type { RequestMeta, SecurityAuditService, SecurityEventInput } from '../audit/types.js';
import type { Config } from '../config/index.js';
import { deriveKey, seal, sealingKey, unseal, UnsealError } from '../crypto/seal.js';
import { AppError } from '../http/errors.js';
import type { Logger } from '../logger.js';
import type { PasswordHasher } from './passwords.js';
import type { RevocationCache } from './revocation-cache.js';
import type { AuthStore, Role, SessionRow, UserRow } from './store.js';
import { InvalidAccessTokenError, type AccessTokenIssuer } from './tokens.js';

export type ClientInfo = { platform: string | null; version: string | null };

/** The authenticated caller, as established by {@link AuthService.authenticate}. */
export type AuthContext = { userId: string; sessionId: string; role: Role; amr: readonly string[] };

export type PublicUser = {
  id: string;
  email: string;
  displayName: string;
  role: Role;
  mfaEnabled: boolean;
  createdAt: string;
};

export type TokenPair = {
  accessToken: string;
  refreshToken: string;
  tokenType: 'Bearer';
  expiresIn: number;
  refreshExpiresIn: number;
  sessionId: string;
};

export type SessionView = {
  id: string;
  createdAt: string;
  lastUsedAt: string;
  expiresAt: string;
  ip: string | null;
  userAgent: string | null;
  current: boolean;
};

/** Why a session ended; stored in `user_sessions.revoked_reason`. */
export type RevocationReason =
  | 'logout'
  | 'user_revoked'
  | 'user_revoked_all'
  | 'refresh_token_reuse'
  | 'ops_revoked'
  | 'ops_revoked_all'
  | 'password_reset_forced'
  | 'role_changed'
  | 'password_changed'
  | 'mfa_disabled';

export type AuthDeps = {
  pool: DatabasePool;
  store: AuthStore;
  audit: SecurityAuditService;
  passwords: PasswordHasher;
  tokens: AccessTokenIssuer;
  config: Pick<Config, 'tokens' | 'authThrottle' | 'secrets'>;
  logger: Logger;
  /** Sessions known active (./revocation-cache.ts): authenticate skips the session lookup while it is trusted. */
  revocations?: RevocationCache;
};

const REFRESH_TOKEN_PREFIX = 'kxr_';

const sha256 = (value: string) => createHash('sha256').update(value).digest();


export const toPublicUser = (user: UserRow): PublicUser => ({
  id: user.id,
  email: user.email,
  displayName: user.display_name,
  role: user.role,
  mfaEnabled: user.mfa_enabled,
  createdAt: user.created_at,
});

const secondsUntil = (iso: string) => Math.max(0, Math.floor((Date.parse(iso) - Date.now()) / 1000));

export const createAuthService = (deps: AuthDeps) => {
  const { pool, store, audit, passwords, tokens, config, logger } = deps;
  const { refreshTtlSeconds, adminRefreshTtlSeconds, refreshReuseGraceSeconds } = config.tokens;

  // Successor tokens kept for the grace window are sealed with a key derived from the JWT
  // secret; the previous secret's key still opens them during a rotation.
  const successorKeys = [config.secrets.jwtSecret, config.secrets.jwtSecretPrevious]
    .filter((secret): secret is string => secret !== undefined)
    .map((secret) => sealingKey(deriveKey(secret, 'refresh-successor')));

  // Lockout key: a keyed hash of the normalised address, identical for known and unknown
  // accounts, so the table reveals neither which accounts exist nor (without the key) which
  // addresses were tried. A JWT secret rotation starts lockouts afresh, which is harmless.
  const lockoutKey = deriveKey(config.secrets.jwtSecret, 'lockout-account-key');
  const accountKey = (email: string) => createHmac('sha256', lockoutKey).update(email.trim().toLowerCase()).digest();

  const sessionTtl = (role: Role) => (role === 'admin' ? adminRefreshTtlSeconds : refreshTtlSeconds);

  const newRefreshToken = () => `${REFRESH_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;

  const lockedError = (retryAfterSeconds: number) =>
    new AppError('account_locked', { headers: { 'Retry-After': String(Math.max(1, retryAfterSeconds)) } });

  /** Mints the access token and the first refresh token of a new session, inside `tx`. */
  const openSession = async (
    tx: Parameters<Parameters<DatabasePool['transaction']>[0]>[0],
    meta: RequestMeta,
    client: ClientInfo,
    user: UserRow,
    amr: readonly string[],
  ): Promise<TokenPair> => {
    const session = await store.insertSession(tx, {
      userId: user.id,
      amr,
      role: user.role,
      ttlSeconds: sessionTtl(user.role),
      ip: meta.ip,
      userAgent: meta.userAgent?.slice(0, 512) ?? null,
      clientPlatform: client.platform,
      clientVersion: client.version,
    });
    const refreshToken = newRefreshToken();
    await store.insertRefreshToken(tx, { sessionId: session.id, tokenHash: sha256(refreshToken), expiresAt: session.expires_at });
    const accessToken = await tokens.sign({ userId: user.id, sessionId: session.id, role: user.role, amr });
    return pairFor(session, accessToken, refreshToken);
  };

  const pairFor = (session: Pick<SessionRow, 'id' | 'expires_at'>, accessToken: string, refreshToken: string): TokenPair => ({
    accessToken,
    refreshToken,
    tokenType: 'Bearer',
    expiresIn: tokens.ttlSeconds,
    refreshExpiresIn: secondsUntil(session.expires_at),
    sessionId: session.id,
  });

  type RefreshOutcome =
    | { kind: 'rotated' | 'grace'; pair: TokenPair }
    | { kind: 'invalid' }
    | { kind: 'reused' }
    | { kind: 'revoked_for_reuse' };

  // Every revocation goes through these two (and revokeAllSessionsIn), so that this instance's
  // revocation cache stops serving the sessions before the client hears they are revoked.
  const revokeSession = async (tx: Queryable, revocation: { sessionId: string; userId: string; reason: RevocationReason }) => {
    const revoked = await store.revokeSession(tx, revocation);
    if (revoked) deps.revocations?.revoking({ sessionIds: [revoked.id] });
    return revoked;
  };
  const revokeUserSessions = async (tx: Queryable, userId: string, reason: RevocationReason) => {
    const revoked = await store.revokeUserSessions(tx, { userId, reason });
    deps.revocations?.revoking({ sessionIds: revoked });
    return revoked;
  };

  const record = (tx: Parameters<SecurityAuditService['record']>[0], meta: RequestMeta, event: SecurityEventInput) =>
    audit.record(tx, meta, event);

  const service = {
    /**
     * @throws {AppError} email_taken (via the users_email_key constraint).
     */
    register: async (meta: RequestMeta, input: { email: string; password: string; displayName: string }): Promise<PublicUser> => {
      const passwordHash = await passwords.hash(input.password);
      return pool.transaction(async (tx) => {
        const user = await store.insertUser(tx, { email: input.email.trim(), displayName: input.displayName, passwordHash });
        await record(tx, meta, { type: 'user_registered', userId: user.id });
        return toPublicUser(user);
      });
    },

    /**
     * Checks the lockout, then the password (spending the same hashing work for unknown
     * addresses), then opens a session — or hands over to `afterPassword` (MFA).
     * @throws {AppError} account_locked, invalid_credentials, password_reset_required.
     */
    login: async (
      meta: RequestMeta,
      client: ClientInfo,
      input: { email: string; password: string },
      afterPassword?: (user: UserRow, meta: RequestMeta) => Promise<{ challenge: unknown } | undefined>,
    ): Promise<{ pair: TokenPair } | { challenge: unknown }> => {
      const key = accountKey(input.email);
      const lock = await store.getLockout(pool, key);
      if (lock) throw lockedError(lock.retry_after_seconds);

      const user = await store.findUserByEmail(pool, input.email.trim());
      const valid = await passwords.verify(user?.password_hash, input.password);
      if (!user || !valid) {
        const state = await service.recordLoginFailure(meta, input.email, user?.id ?? null, user ? 'wrong_password' : 'unknown_account');
        if (state.locked) throw lockedError(state.retryAfterSeconds);
        throw new AppError('invalid_credentials');
      }
      if (user.password_reset_required) throw new AppError('password_reset_required');
      if (passwords.needsRehash(user.password_hash)) {
        await store.updatePasswordHash(pool, user.id, await passwords.hash(input.password));
      }
      const handover = await afterPassword?.(user, meta);
      if (handover) return handover;

      const pair = await pool.transaction(async (tx) => {
        await store.resetLockout(tx, key);
        const opened = await openSession(tx, meta, client, user, ['pwd']);
        await record(tx, meta, { type: 'login_succeeded', userId: user.id, sessionId: opened.sessionId, details: { amr: ['pwd'] } });
        return opened;
      });
      return { pair };
    },

    /**
     * Counts a failed sign-in step (password or MFA code) toward the account lockout, recording
     * `login_failed` (or `mfa_failed`) and, when it locks, `account_locked`.
     */
    recordLoginFailure: async (
      meta: RequestMeta,
      email: string,
      userId: string | null,
      reason: string,
      eventType: 'login_failed' | 'mfa_failed' = 'login_failed',
    ): Promise<{ locked: boolean; retryAfterSeconds: number }> =>
      pool.transaction(async (tx) => {
        const state = await store.recordFailure(tx, {
          accountKey: accountKey(email),
          threshold: config.authThrottle.lockoutThreshold,
          baseSeconds: config.authThrottle.lockoutBaseSeconds,
          maxSeconds: config.authThrottle.lockoutMaxSeconds,
        });
        await record(tx, meta, { type: eventType, userId, details: { reason } });
        if (state.just_locked) {
          await record(tx, meta, {
            type: 'account_locked',
            userId,
            details: { lockCount: state.lock_count, lockedForSeconds: state.retry_after_seconds },
          });
        }
        return { locked: state.locked, retryAfterSeconds: state.retry_after_seconds };
      }),

    /** Lockout check for other sign-in steps (MFA verification). @throws {AppError} account_locked */
    assertNotLocked: async (email: string) => {
      const lock = await store.getLockout(pool, accountKey(email));
      if (lock) throw lockedError(lock.retry_after_seconds);
    },

    /**
     * Opens a session after every factor was verified (MFA), resetting the lockout, inside the
     * caller's transaction — the one that consumed the second factor, so that both commit or
     * neither does.
     */
    completeLoginIn: async (
      tx: Parameters<SecurityAuditService['record']>[0],
      meta: RequestMeta,
      client: ClientInfo,
      user: UserRow,
      amr: readonly string[],
    ): Promise<TokenPair> => {
      await store.resetLockout(tx, accountKey(user.email));
      const pair = await openSession(tx, meta, client, user, amr);
      await record(tx, meta, { type: 'login_succeeded', userId: user.id, sessionId: pair.sessionId, details: { amr } });
      return pair;
    },

    /**
     * Rotates a refresh token. The session row is locked for the whole exchange, so concurrent
     * presentations of one token are decided one at a time: the first rotates; later ones
     * either get the same successor (the grace rule) or trigger reuse revocation.
     * @throws {AppError} invalid_refresh_token, refresh_token_reused
     */
    refresh: async (meta: RequestMeta, client: ClientInfo, refreshToken: string): Promise<TokenPair> => {
      if (!refreshToken.startsWith(REFRESH_TOKEN_PREFIX)) throw new AppError('invalid_refresh_token');
      const tokenHash = sha256(refreshToken);
      const outcome = await pool.transaction(async (tx): Promise<RefreshOutcome> => {
        const found = await store.findRefreshTokenByHash(tx, tokenHash);
        if (!found) return { kind: 'invalid' };
        const session = await store.lockSession(tx, found.session_id);
        if (!session) return { kind: 'invalid' };
        if (session.revoked_at !== null) {
          return session.revoked_reason === 'refresh_token_reuse' ? { kind: 'revoked_for_reuse' } : { kind: 'invalid' };
        }
        // Re-read under the lock: a concurrent rotation may have committed since the first read.
        const token = await store.findRefreshTokenByHash(tx, tokenHash);
        if (!token || token.expired || session.expired) return { kind: 'invalid' };

        if (token.rotated_at === null) {
          const successor = newRefreshToken();
          const extendBy = session.role === 'admin' ? null : refreshTtlSeconds;
          const expiresAt =
            extendBy === null ? session.expires_at : new Date(Date.now() + extendBy * 1000).toISOString();
          const successorId = randomUUID();
          const graceApplies = refreshReuseGraceSeconds > 0 && session.role !== 'admin';
          // Predecessor first: the unique index allows one live token per session at any moment.
          await store.markRotated(tx, {
            tokenId: token.id,
            successorId,
            successorSealed: graceApplies ? seal(successorKeys[0]!, Buffer.from(successor), Buffer.from(token.id)) : null,
          });
          await store.insertRefreshToken(tx, { id: successorId, sessionId: session.id, tokenHash: sha256(successor), expiresAt });
          await store.clearSealedSuccessors(tx, { sessionId: session.id, olderThanSeconds: refreshReuseGraceSeconds });
          await store.touchSession(tx, session.id, extendBy);
          const accessToken = await tokens.sign({ userId: session.user_id, sessionId: session.id, role: session.role, amr: session.amr });
          await record(tx, meta, { type: 'refresh_rotated', userId: session.user_id, sessionId: session.id });
          return { kind: 'rotated', pair: pairFor({ id: session.id, expires_at: expiresAt }, accessToken, successor) };
        }

        // An already-rotated token. The grace rule: only the immediate predecessor of the live
        // token, only within the window, only for non-admin sessions — the same successor again.
        const withinGrace =
          refreshReuseGraceSeconds > 0 &&
          session.role !== 'admin' &&
          token.successor_sealed !== null &&
          token.seconds_since_rotation !== null &&
          token.seconds_since_rotation <= refreshReuseGraceSeconds;
        if (withinGrace) {
          const live = await store.findLiveRefreshToken(tx, session.id);
          if (live && live.id === token.successor_id) {
            try {
              const successor = unseal(successorKeys, token.successor_sealed!, Buffer.from(token.id)).toString();
              const accessToken = await tokens.sign({ userId: session.user_id, sessionId: session.id, role: session.role, amr: session.amr });
              await record(tx, meta, {
                type: 'refresh_token_grace_reuse',
                userId: session.user_id,
                sessionId: session.id,
                details: { secondsSinceRotation: Math.round(token.seconds_since_rotation! * 1000) / 1000 },
              });
              return { kind: 'grace', pair: pairFor({ id: session.id, expires_at: live.expires_at }, accessToken, successor) };
            } catch (error) {
              if (!(error instanceof UnsealError)) throw error;
              logger.warn({ sessionId: session.id }, 'sealed refresh successor could not be opened; treating as reuse');
            }
          }
        }

        const revoked = await revokeUserSessions(tx, session.user_id, 'refresh_token_reuse');
        await record(tx, meta, {
          type: 'refresh_token_reuse_detected',
          userId: session.user_id,
          sessionId: session.id,
          details: { tokenId: token.id, secondsSinceRotation: token.seconds_since_rotation },
        });
        await record(tx, meta, {
          type: 'session_bulk_revocation',
          userId: session.user_id,
          details: { reason: 'refresh_token_reuse', revoked: revoked.length, sessionIds: revoked.slice(0, 50) },
        });
        return { kind: 'reused' };
      });

      switch (outcome.kind) {
        case 'rotated':
        case 'grace':
          return outcome.pair;
        case 'reused':
        case 'revoked_for_reuse':
          throw new AppError('refresh_token_reused');
        case 'invalid':
          throw new AppError('invalid_refresh_token');
      }
    },

    /**
     * Verifies a bearer access token and that its session is still active (revocation takes
     * effect on the next request).
     * @throws {AppError} unauthorized
     */
    authenticate: async (accessToken: string): Promise<AuthContext> => {
      let claims;
      try {
        claims = await tokens.verify(accessToken);
      } catch (error) {
        if (error instanceof InvalidAccessTokenError) throw unauthorized();
        throw error;
      }
      const known = deps.revocations?.get(claims.sid);
      if (known !== undefined && known.userId === claims.sub) return { userId: claims.sub, sessionId: claims.sid, role: known.role, amr: known.amr };
      const mark = deps.revocations?.mark();
      const session = await store.findSession(pool, claims.sid);
      if (!session || session.revoked_at !== null || session.expired || session.user_id !== claims.sub) throw unauthorized();
      if (mark !== undefined) deps.revocations?.remember(mark, session);
      return { userId: claims.sub, sessionId: claims.sid, role: session.role, amr: session.amr };
    },

    me: async (auth: AuthContext): Promise<PublicUser> => {
      const user = await store.findUserById(pool, auth.userId);
      if (!user) throw unauthorized();
      return toPublicUser(user);
    },

    findUser: (userId: string) => store.findUserById(pool, userId),

    /** Kept in step with the MFA feature's enrollment state, inside its transaction. */
    setMfaEnabled: (tx: Queryable, userId: string, enabled: boolean) =>
      store.setMfaEnabled(tx, userId, enabled),

    /** Revokes every active session of a user (MFA disabled, ops actions), inside the caller's transaction. */
    revokeUserSessionsIn: (tx: Queryable, userId: string, reason: RevocationReason) => revokeUserSessions(tx, userId, reason),

    // Account changes other features make inside their own transaction (the ops API); the
    // caller records the audit rows that go with them.
    findUserIn: (tx: Queryable, userId: string) => store.findUserById(tx, userId),
    /** Revokes every active session of every user (token-leak response); returns how many. */
    revokeAllSessionsIn: async (tx: Queryable, reason: RevocationReason) => {
      const revoked = await store.revokeAllSessions(tx, reason);
      deps.revocations?.revoking('all');
      return revoked;
    },
    setRoleIn: (tx: Queryable, userId: string, role: Role) => store.setRole(tx, userId, role),
    requirePasswordResetIn: (tx: Queryable, userId: string) => store.setPasswordResetRequired(tx, userId, true),

    logout: (meta: RequestMeta, auth: AuthContext) =>
      pool.transaction(async (tx) => {
        const revoked = await revokeSession(tx, { sessionId: auth.sessionId, userId: auth.userId, reason: 'logout' });
        if (revoked) await record(tx, meta, { type: 'logout', userId: auth.userId, sessionId: auth.sessionId });
      }),

    listSessions: async (auth: AuthContext): Promise<SessionView[]> =>
      (await store.listActiveSessions(pool, auth.userId)).map((session) => ({
        id: session.id,
        createdAt: session.created_at,
        lastUsedAt: session.last_used_at,
        expiresAt: session.expires_at,
        ip: session.ip,
        userAgent: session.user_agent,
        current: session.id === auth.sessionId,
      })),

    /** Revokes one of the caller's own sessions. @throws {AppError} not_found */
    revokeOwnSession: (meta: RequestMeta, auth: AuthContext, sessionId: string) =>
      pool.transaction(async (tx) => {
        const revoked = await revokeSession(tx, { sessionId, userId: auth.userId, reason: 'user_revoked' });
        if (!revoked) throw new AppError('not_found');
        await record(tx, meta, { type: 'session_revoked', userId: auth.userId, sessionId, details: { by: 'user' } });
      }),

    /** Revokes every session of the caller, the current one included. */
    revokeAllOwnSessions: (meta: RequestMeta, auth: AuthContext) =>
      pool.transaction(async (tx) => {
        const revoked = await revokeUserSessions(tx, auth.userId, 'user_revoked_all');
        await record(tx, meta, {
          type: 'session_bulk_revocation',
          userId: auth.userId,
          sessionId: auth.sessionId,
          details: { reason: 'user_revoked_all', revoked: revoked.length },
        });
        return revoked.length;
      }),

    /** Forgets sealed successors past the grace window (housekeeping; also done per rotation). */
    sweepSealedSuccessors: () => store.clearSealedSuccessors(pool, { olderThanSeconds: refreshReuseGraceSeconds }),
  };
  return service;
};

const unauthorized = () => new AppError('unauthorized', { headers: { 'WWW-Authenticate': 'Bearer' } });

export type AuthService = ReturnType<typeof createAuthService>;
