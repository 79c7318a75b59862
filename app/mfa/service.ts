/**
 * TOTP multi-factor authentication (contract §3 `POST /auth/mfa/verify`, §4): enrollment,
 * activation with recovery codes, disable, recovery-code regeneration, and the login challenge
 * between a correct password and the second factor.
 *
 * Rules:
 * - RFC 6238 with SHA-1, 6 digits, 30 s steps and ±1 step of clock drift.
 * - A code is accepted at most once per user, ever: the accepted time step is consumed with an
 *   atomic compare-and-set on `mfa_totp.last_used_step` (a later step only), committed before
 *   anything the code unlocks is handed out. A replay — same step, another challenge, or a
 *   concurrent verify that lost the race — is refused and recorded as `mfa_replay_rejected`.
 * - Every code check (login, activate, disable, regenerate) honours and feeds the account
 *   lockout of the accounts feature: a wrong or replayed code is a failed sign-in step.
 * - Secrets are sealed with AES-256-GCM under TOTP_ENCRYPTION_KEY with the user id as associated
 *   data; TOTP_ENCRYPTION_KEY_PREVIOUS still opens older rows, which are re-sealed under the
 *   current key the next time one of their codes is accepted. If no configured key opens a
 *   secret, the code is refused (401), never a 500.
 * - Key rotation (docs/runbook.md "Rotation policy"): {@link sealingState} counts the secrets per
 *   key id and {@link resealPending} re-seals, in bounded batches, every secret not under the
 *   current key — so the previous key can be dropped without locking anyone out. Key ids are the
 *   8-byte fingerprints of app/crypto/seal.ts (the first 64 bits of SHA-256 over a 32-byte random
 *   key): one-way, they name a key without revealing anything about it.
 * - Recovery codes: 10 per generation, 80 random bits each, stored as SHA-256 over the user id
 *   and the normalised code; single use (atomic consume); a new generation voids the previous.
 * - The mfaToken (`kxm_` + 256 random bits) is stored hashed, lives at most 300 s, is bound to
 *   the user and the client IP, and is consumed by the first verify attempt from that IP,
 *   whatever the code's outcome (a wrong code means signing in again). An attempt from another
 *   IP does not consume it — a stolen token cannot be burnt from elsewhere — and is answered
 *   exactly like an unknown token.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { generateSecret, generateURI, verify as verifyTotp } from 'otplib';
import type { DatabasePool } from 'slonik';
import type { Queryable, RequestMeta, SecurityAuditService, SecurityEventInput } from '../audit/types.js';
import type { AuthContext, AuthService, ClientInfo, TokenPair } from '../auth/service.js';
import type { UserRow } from '../auth/store.js';
import type { Config } from '../config/index.js';
import { seal, sealingKey, unseal, UnsealError, type SealingKey } from '../crypto/seal.js';
import { AppError } from '../http/errors.js';
import type { Logger } from '../logger.js';
import { DEFAULT_RESEAL_BATCH_SIZE, MAX_RESEAL_BATCH_SIZE, RECOVERY_CODE_COUNT } from './schemas.js';
import { createMfaStore, type MfaStore, type TotpRow } from './store.js';

/** One reseal call stops starting batches after this long, well within the request deadline. */
export const DEFAULT_RESEAL_TIME_BUDGET_MS = 5_000;

/** Where the TOTP secrets are sealed (key ids in hex). */
export type SealingState = {
  currentKeyId: string;
  total: number;
  underCurrentKey: number;
  /** Secrets not under the current key: re-sealable ones and those no configured key opens. */
  pendingReseal: number;
  byKey: Array<{ keyId: string; count: number; current: boolean }>;
};

/** What one {@link MfaService.resealPending} call did. */
export type ResealOutcome = {
  currentKeyId: string;
  resealed: number;
  /** Secrets not under the current key when the call ended (unreadable and skipped-while-locked rows included). */
  pendingReseal: number;
  /** Secrets this call met that no configured key opens (left untouched). */
  unreadable: number;
  batches: number;
  /** Re-sealed secrets by the key id they were under. */
  fromKeyIds: Record<string, number>;
};

export const TOTP_ISSUER = 'Karaxas';
const TOTP_PERIOD_SECONDS = 30;
const TOTP_DIGITS = 6;
/** Accepted drift in steps either side of the current one. */
const TOTP_WINDOW_STEPS = 1;
const TOTP_SECRET_BYTES = 20;

const MFA_TOKEN_PREFIX = 'kxm_';
const MFA_TOKEN_PATTERN = /^kxm_[A-Za-z0-9_-]{43}$/;
/** The contract's ceiling for the challenge lifetime (≤ 5 minutes). */
export const MAX_CHALLENGE_TTL_SECONDS = 300;

/** Crockford base32: no I, L, O or U, so codes read aloud or typed from paper survive. */
const RECOVERY_ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
/** 16 symbols × 5 bits = 80 random bits per code. */
const RECOVERY_CODE_SYMBOLS = 16;
const RECOVERY_CODE_PATTERN = /^[0-9A-HJKMNP-TV-Z]{16}$/;

export type MfaChallenge = { mfaRequired: true; mfaToken: string; expiresIn: number };

export type MfaDeps = {
  pool: DatabasePool;
  audit: SecurityAuditService;
  auth: AuthService;
  config: Pick<Config, 'secrets'>;
  logger: Logger;
  store?: MfaStore;
  /** Lifetime of the login challenge; capped at {@link MAX_CHALLENGE_TTL_SECONDS}. */
  challengeTtlSeconds?: number;
  /** Clock for TOTP steps, in milliseconds (tests). */
  now?: () => number;
};

type Purpose = 'login' | 'activate' | 'disable' | 'recovery_codes' | 'password_reset';

type Work<T> = (tx: Queryable, totp: TotpRow) => Promise<{ result: T; events?: SecurityEventInput[] }>;

const sha256 = (value: string | Buffer) => createHash('sha256').update(value).digest();

/** Codes as typed: spaces and dashes are ignored, case does not matter, O/I/L read as 0/1/1. */
const compactCode = (code: string) => code.replace(/[\s-]/g, '').toUpperCase();
const normaliseRecoveryCode = (compact: string) => compact.replace(/O/g, '0').replace(/[IL]/g, '1');

export const recoveryCodeHash = (userId: string, code: string) =>
  sha256(`karaxas:recovery-code:v1:${userId}:${normaliseRecoveryCode(compactCode(code))}`);

const newRecoveryCode = () => {
  const bytes = randomBytes((RECOVERY_CODE_SYMBOLS * 5) / 8);
  let bits = 0n;
  for (const byte of bytes) bits = (bits << 8n) | BigInt(byte);
  let symbols = '';
  for (let index = RECOVERY_CODE_SYMBOLS - 1; index >= 0; index -= 1) {
    symbols += RECOVERY_ALPHABET[Number((bits >> BigInt(index * 5)) & 31n)];
  }
  return symbols.match(/.{4}/g)!.join('-');
};

type TotpCheck = { kind: 'match'; step: number; delta: number } | { kind: 'replay' } | { kind: 'wrong' };

/** The RFC 6238 time step a successful TOTP verification matched (otplib's union type also covers HOTP). */
const matchedStep = (result: Awaited<ReturnType<typeof verifyTotp>>): { step: number; delta: number } | undefined =>
  result.valid && 'timeStep' in result && Number.isSafeInteger(result.timeStep) ? { step: result.timeStep, delta: result.delta } : undefined;

export const createMfaService = (deps: MfaDeps) => {
  const { pool, audit, auth, config, logger } = deps;
  const store = deps.store ?? createMfaStore(pool);
  const now = deps.now ?? Date.now;
  const challengeTtlSeconds = Math.min(deps.challengeTtlSeconds ?? MAX_CHALLENGE_TTL_SECONDS, MAX_CHALLENGE_TTL_SECONDS);

  const currentKey = sealingKey(config.secrets.totpEncryptionKey);
  const keys: SealingKey[] = [currentKey];
  if (config.secrets.totpEncryptionKeyPrevious) keys.push(sealingKey(config.secrets.totpEncryptionKeyPrevious));

  const sealSecret = (userId: string, secret: string) => seal(currentKey, Buffer.from(secret, 'utf8'), Buffer.from(userId, 'utf8'));
  const currentKeyId = currentKey.id.toString('hex');

  const describeSealing = (rows: ReadonlyArray<{ key_id: Buffer; count: number }>): SealingState => {
    const byKey = rows.map((row) => ({ keyId: row.key_id.toString('hex'), count: row.count, current: row.key_id.equals(currentKey.id) }));
    if (!byKey.some((entry) => entry.current)) byKey.push({ keyId: currentKeyId, count: 0, current: true });
    byKey.sort((a, b) => Number(b.current) - Number(a.current) || b.count - a.count || a.keyId.localeCompare(b.keyId));
    const total = byKey.reduce((sum, entry) => sum + entry.count, 0);
    const underCurrentKey = byKey.find((entry) => entry.current)!.count;
    return { currentKeyId, total, underCurrentKey, pendingReseal: total - underCurrentKey, byKey };
  };

  /**
   * Which step of the ±1 window a code matches, considering only steps after the last accepted
   * one. A code that matches only consumed steps is a replay.
   */
  const checkTotp = async (secret: string, code: string, lastUsedStep: number | null): Promise<TotpCheck> => {
    const epoch = Math.floor(now() / 1000);
    const currentStep = Math.floor(epoch / TOTP_PERIOD_SECONDS);
    const options = {
      strategy: 'totp' as const,
      secret,
      token: code,
      epoch,
      algorithm: 'sha1' as const,
      digits: TOTP_DIGITS as 6,
      period: TOTP_PERIOD_SECONDS,
      epochTolerance: TOTP_WINDOW_STEPS * TOTP_PERIOD_SECONDS,
    };
    let anyStep;
    try {
      anyStep = await verifyTotp(options);
    } catch {
      // Malformed codes (wrong length, non-digits) are simply wrong.
      return { kind: 'wrong' };
    }
    const matched = matchedStep(anyStep);
    if (!matched) return { kind: 'wrong' };
    if (lastUsedStep === null) return { kind: 'match', ...matched };
    // otplib refuses an afterTimeStep beyond the window; every step of the window is used then.
    if (lastUsedStep >= currentStep + TOTP_WINDOW_STEPS) return { kind: 'replay' };
    const fresh = await verifyTotp({ ...options, afterTimeStep: lastUsedStep });
    const freshMatch = matchedStep(fresh);
    return freshMatch ? { kind: 'match', ...freshMatch } : { kind: 'replay' };
  };

  const recordAlone = (meta: RequestMeta, event: SecurityEventInput) =>
    pool.transaction(async (tx) => {
      await audit.record(tx, meta, event);
    });

  /** A failed code: counts toward the account lockout; answers 429 once the account locks. */
  const failedCode = async (meta: RequestMeta, user: UserRow, purpose: Purpose, reason: string): Promise<never> => {
    const state = await auth.recordLoginFailure(meta, user.email, user.id, purpose === 'login' ? reason : `${purpose}:${reason}`, 'mfa_failed');
    if (state.locked) {
      throw new AppError('account_locked', { headers: { 'Retry-After': String(Math.max(1, state.retryAfterSeconds)) } });
    }
    throw new AppError('invalid_mfa_code');
  };

  type Expectation = { state: 'pending' | 'active'; allowRecovery: boolean; onMissing: () => AppError; onOtherState: () => AppError };

  /**
   * Checks `code` for `user` and, when it is accepted, consumes it and runs `work` in the same
   * transaction (events returned by `work` are recorded last). Failed checks are counted toward
   * the lockout and throw.
   * @throws {AppError} invalid_mfa_code, account_locked, or what the expectation names.
   */
  const withAcceptedCode = async <T>(
    meta: RequestMeta,
    user: UserRow,
    rawCode: string,
    purpose: Purpose,
    expect: Expectation,
    work: Work<T>,
  ): Promise<{ result: T; via: 'totp' | 'recovery_code' }> => {
    await auth.assertNotLocked(user.email);
    const totp = await store.findTotp(pool, user.id);
    if (!totp) throw expect.onMissing();
    if (totp.activated !== (expect.state === 'active')) throw expect.onOtherState();

    const code = compactCode(rawCode);
    if (/^\d{6}$/.test(code)) {
      let secret: string;
      try {
        secret = unseal(keys, totp.secret_sealed, Buffer.from(user.id, 'utf8')).toString('utf8');
      } catch (error) {
        if (!(error instanceof UnsealError)) throw error;
        // No configured key opens this secret (a key rotated away too early) or the row was
        // tampered with: refuse the code without blaming the user (no lockout count).
        logger.error({ userId: user.id, keyId: totp.key_id.toString('hex') }, 'TOTP secret could not be unsealed with the configured keys');
        await recordAlone(meta, { type: 'mfa_failed', userId: user.id, details: { reason: 'secret_unavailable', purpose } });
        throw new AppError('invalid_mfa_code');
      }
      const check = await checkTotp(secret, code, totp.last_used_step);
      if (check.kind === 'wrong') return failedCode(meta, user, purpose, 'wrong_code');

      const outcome =
        check.kind === 'replay'
          ? ({ accepted: false } as const)
          : await pool.transaction(async (tx) => {
              const resealed = totp.key_id.equals(currentKey.id)
                ? undefined
                : { secretSealed: sealSecret(user.id, secret), keyId: currentKey.id };
              const consumed = await store.consumeStep(tx, { userId: user.id, enrollmentId: totp.enrollment_id, step: check.step, resealed });
              if (!consumed) return { accepted: false } as const;
              const done = await work(tx, totp);
              for (const event of done.events ?? []) await audit.record(tx, meta, event);
              return { accepted: true, result: done.result } as const;
            });
      if (outcome.accepted) return { result: outcome.result, via: 'totp' };

      await recordAlone(meta, { type: 'mfa_replay_rejected', userId: user.id, details: { purpose } });
      return failedCode(meta, user, purpose, 'replayed_code');
    }

    const recovery = normaliseRecoveryCode(code);
    if (!expect.allowRecovery || !RECOVERY_CODE_PATTERN.test(recovery)) return failedCode(meta, user, purpose, 'wrong_code');
    const outcome = await pool.transaction(async (tx) => {
      const used = await store.consumeRecoveryCode(tx, { userId: user.id, codeHash: recoveryCodeHash(user.id, recovery) });
      if (!used) return { accepted: false } as const;
      const done = await work(tx, totp);
      await audit.record(tx, meta, {
        type: 'recovery_code_used',
        userId: user.id,
        details: { purpose, recoveryCodeId: used.id, remaining: used.remaining },
      });
      for (const event of done.events ?? []) await audit.record(tx, meta, event);
      return { accepted: true, result: done.result } as const;
    });
    if (outcome.accepted) return { result: outcome.result, via: 'recovery_code' };
    return failedCode(meta, user, purpose, 'wrong_recovery_code');
  };

  const signedInUser = async (caller: AuthContext) => {
    const user = await auth.findUser(caller.userId);
    if (!user) throw new AppError('unauthorized', { headers: { 'WWW-Authenticate': 'Bearer' } });
    return user;
  };

  /** A fresh generation of recovery codes: the plaintext for the user, the hashes for storage. */
  const newRecoveryCodes = (userId: string) => {
    const codes = Array.from({ length: RECOVERY_CODE_COUNT }, newRecoveryCode);
    if (new Set(codes).size !== codes.length) throw new Error('recovery code collision');
    return { codes, hashes: codes.map((code) => recoveryCodeHash(userId, code)), batchId: randomUUID() };
  };

  const notEnabled = () => new AppError('mfa_not_enabled');

  const service = {
    /**
     * The login handover (`afterPassword` of {@link AuthService.login}): with TOTP on, answers a
     * challenge instead of tokens.
     */
    afterPassword: async (user: UserRow, meta: RequestMeta): Promise<{ challenge: MfaChallenge } | undefined> => {
      if (!user.mfa_enabled) return undefined;
      const mfaToken = `${MFA_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
      await store.deleteStaleChallenges(pool, user.id);
      await store.insertChallenge(pool, { tokenHash: sha256(mfaToken), userId: user.id, ip: meta.ip, ttlSeconds: challengeTtlSeconds });
      return { challenge: { mfaRequired: true, mfaToken, expiresIn: challengeTtlSeconds } };
    },

    /**
     * Exchanges a login challenge and a TOTP or recovery code for a token pair (amr pwd+otp).
     * @throws {AppError} invalid_mfa_token, invalid_mfa_code, account_locked, password_reset_required
     */
    verifyLogin: async (meta: RequestMeta, client: ClientInfo, input: { mfaToken: string; code: string }): Promise<TokenPair> => {
      if (!MFA_TOKEN_PATTERN.test(input.mfaToken)) throw new AppError('invalid_mfa_token');
      const tokenHash = sha256(input.mfaToken);
      const challenge = await store.consumeChallenge(pool, { tokenHash, ip: meta.ip });
      if (!challenge) {
        const state = await store.describeChallenge(pool, { tokenHash, ip: meta.ip });
        if (state && !state.expired && (state.consumed || !state.ip_matches)) {
          await recordAlone(meta, {
            type: 'mfa_failed',
            userId: state.user_id,
            details: { reason: state.consumed ? 'challenge_reused' : 'challenge_ip_mismatch' },
          });
        }
        throw new AppError('invalid_mfa_token');
      }
      const user = await auth.findUser(challenge.user_id);
      if (!user || !user.mfa_enabled) throw new AppError('invalid_mfa_token');
      if (user.password_reset_required) throw new AppError('password_reset_required');
      const stale = () => new AppError('invalid_mfa_token');
      // The code is consumed in the transaction that opens the session: both commit or neither.
      const { result } = await withAcceptedCode(
        meta,
        user,
        input.code,
        'login',
        { state: 'active', allowRecovery: true, onMissing: stale, onOtherState: stale },
        async (tx) => ({ result: await auth.completeLoginIn(tx, meta, client, user, ['pwd', 'otp']) }),
      );
      return result;
    },

    /**
     * Starts (or restarts, while pending) an enrollment.
     * @throws {AppError} mfa_already_enabled
     */
    enroll: async (meta: RequestMeta, caller: AuthContext): Promise<{ secret: string; otpauthUri: string }> => {
      const user = await signedInUser(caller);
      const existing = await store.findTotp(pool, user.id);
      if (existing?.activated) throw new AppError('mfa_already_enabled');
      const secret = generateSecret({ length: TOTP_SECRET_BYTES });
      const sealed = sealSecret(user.id, secret);
      await pool.transaction(async (tx) => {
        const row = await store.upsertPending(tx, { userId: user.id, secretSealed: sealed, keyId: currentKey.id });
        if (!row) throw new AppError('mfa_already_enabled');
        await audit.record(tx, meta, {
          type: 'mfa_enrolled',
          userId: user.id,
          sessionId: caller.sessionId,
          details: { replacedPending: existing !== null },
        });
      });
      const otpauthUri = generateURI({
        strategy: 'totp',
        issuer: TOTP_ISSUER,
        label: user.email,
        secret,
        algorithm: 'sha1',
        digits: TOTP_DIGITS,
        period: TOTP_PERIOD_SECONDS,
      });
      return { secret, otpauthUri };
    },

    /**
     * Activates the pending enrollment with a first code; returns the first recovery codes.
     * @throws {AppError} mfa_not_enabled (nothing enrolled), mfa_already_enabled, invalid_mfa_code, account_locked
     */
    activate: async (meta: RequestMeta, caller: AuthContext, code: string): Promise<{ recoveryCodes: string[] }> => {
      const user = await signedInUser(caller);
      const fresh = newRecoveryCodes(user.id);
      const { result } = await withAcceptedCode(
        meta,
        user,
        code,
        'activate',
        { state: 'pending', allowRecovery: false, onMissing: notEnabled, onOtherState: () => new AppError('mfa_already_enabled') },
        async (tx, totp) => {
          if (!(await store.activate(tx, { userId: user.id, enrollmentId: totp.enrollment_id, batchId: fresh.batchId }))) {
            throw new AppError('mfa_already_enabled');
          }
          await store.replaceRecoveryCodes(tx, { userId: user.id, enrollmentId: totp.enrollment_id, batchId: fresh.batchId, codeHashes: fresh.hashes });
          await auth.setMfaEnabled(tx, user.id, true);
          return { result: fresh.codes, events: [{ type: 'mfa_enabled', userId: user.id, sessionId: caller.sessionId }] };
        },
      );
      return { recoveryCodes: result };
    },

    /**
     * Turns TOTP off with a current code or a recovery code (the way out for a lost device:
     * disable, then enroll the new one). Every session of the user ends — sessions that were
     * established with the factor being removed included — so the caller signs in again.
     * @throws {AppError} mfa_not_enabled, invalid_mfa_code, account_locked
     */
    disable: async (meta: RequestMeta, caller: AuthContext, code: string): Promise<void> => {
      const user = await signedInUser(caller);
      await withAcceptedCode(
        meta,
        user,
        code,
        'disable',
        { state: 'active', allowRecovery: true, onMissing: notEnabled, onOtherState: notEnabled },
        async (tx, totp) => {
          if (!(await store.deleteTotp(tx, { userId: user.id, enrollmentId: totp.enrollment_id }))) throw notEnabled();
          await auth.setMfaEnabled(tx, user.id, false);
          const revoked = await auth.revokeUserSessionsIn(tx, user.id, 'mfa_disabled');
          return {
            result: undefined,
            events: [
              { type: 'mfa_disabled', userId: user.id, sessionId: caller.sessionId, details: { revokedSessions: revoked.length } },
              {
                type: 'session_bulk_revocation',
                userId: user.id,
                sessionId: caller.sessionId,
                details: { reason: 'mfa_disabled', revoked: revoked.length },
              },
            ],
          };
        },
      );
    },

    /**
     * Replaces the recovery codes (a current TOTP code required — a recovery code cannot mint
     * more recovery codes); every earlier code stops working.
     * @throws {AppError} mfa_not_enabled, invalid_mfa_code, account_locked
     */
    regenerateRecoveryCodes: async (meta: RequestMeta, caller: AuthContext, code: string): Promise<{ recoveryCodes: string[] }> => {
      const user = await signedInUser(caller);
      const fresh = newRecoveryCodes(user.id);
      const { result } = await withAcceptedCode(
        meta,
        user,
        code,
        'recovery_codes',
        { state: 'active', allowRecovery: false, onMissing: notEnabled, onOtherState: notEnabled },
        async (tx, totp) => {
          const replaced = await store.replaceRecoveryCodes(tx, {
            userId: user.id,
            enrollmentId: totp.enrollment_id,
            batchId: fresh.batchId,
            codeHashes: fresh.hashes,
          });
          if (!replaced) throw notEnabled();
          return {
            result: fresh.codes,
            events: [{ type: 'recovery_codes_regenerated', userId: user.id, sessionId: caller.sessionId, details: { count: fresh.codes.length } }],
          };
        },
      );
      return { recoveryCodes: result };
    },

    /** How many TOTP secrets each key id seals, and how many still need the current key. */
    sealingState: async (): Promise<SealingState> => describeSealing(await store.countByKey(pool)),

    /**
     * Re-seals every TOTP secret not under the current key, `batchSize` rows per transaction,
     * until none is left or `timeBudgetMs` is used up (call again for the rest). Each row is
     * opened with the configured keys (current + previous), sealed under the current key and
     * written with a compare-and-set on the key id it was read with; rows locked by a verify are
     * skipped, last_used_step is never touched. Secrets no configured key opens are counted as
     * unreadable and left as they are (their user ids are logged, nothing else).
     * `onFinished` runs in the transaction of the last batch (the caller's audit row).
     */
    resealPending: async (
      options: { batchSize?: number; timeBudgetMs?: number; onFinished?: (tx: Queryable, outcome: ResealOutcome) => Promise<unknown> } = {},
    ): Promise<ResealOutcome> => {
      const batchSize = Math.min(Math.max(Math.trunc(options.batchSize ?? DEFAULT_RESEAL_BATCH_SIZE), 1), MAX_RESEAL_BATCH_SIZE);
      const deadline = Date.now() + (options.timeBudgetMs ?? DEFAULT_RESEAL_TIME_BUDGET_MS);
      // The counts of the batches committed so far.
      let totals = { resealed: 0, unreadable: 0, batches: 0, fromKeyIds: {} as Record<string, number> };
      let after: string | null = null;
      for (;;) {
        // Everything a batch computes stays local until its transaction committed.
        const batch = await pool.transaction(async (tx) => {
          const rows = await store.lockPendingReseal(tx, { currentKeyId: currentKey.id, after, limit: batchSize });
          const unreadable: Array<{ userId: string; keyId: string }> = [];
          const writes = [];
          for (const row of rows) {
            const associatedData = Buffer.from(row.user_id, 'utf8');
            let plaintext: Buffer;
            try {
              plaintext = unseal(keys, row.secret_sealed, associatedData);
            } catch (error) {
              if (!(error instanceof UnsealError)) throw error;
              unreadable.push({ userId: row.user_id, keyId: row.key_id.toString('hex') });
              continue;
            }
            writes.push({ userId: row.user_id, enrollmentId: row.enrollment_id, oldKeyId: row.key_id, secretSealed: seal(currentKey, plaintext, associatedData) });
            plaintext.fill(0);
          }
          const written = new Set(await store.writeResealed(tx, { keyId: currentKey.id, rows: writes }));
          const fromKeyIds = { ...totals.fromKeyIds };
          for (const write of writes) {
            if (!written.has(write.userId)) continue;
            const keyId = write.oldKeyId.toString('hex');
            fromKeyIds[keyId] = (fromKeyIds[keyId] ?? 0) + 1;
          }
          const withBatch = {
            resealed: totals.resealed + written.size,
            unreadable: totals.unreadable + unreadable.length,
            batches: totals.batches + 1,
            fromKeyIds,
          };
          let outcome: ResealOutcome | undefined;
          if (rows.length < batchSize || Date.now() >= deadline) {
            outcome = { currentKeyId, ...withBatch, pendingReseal: describeSealing(await store.countByKey(tx)).pendingReseal };
            await options.onFinished?.(tx, outcome);
          }
          return { lastUserId: rows.at(-1)?.user_id ?? null, withBatch, unreadable, outcome };
        });
        totals = batch.withBatch;
        if (batch.unreadable.length > 0) {
          logger.warn(
            { users: batch.unreadable.map((row) => ({ userId: row.userId, keyId: row.keyId })), count: batch.unreadable.length },
            'TOTP secrets that no configured key opens were left as they are (their users cannot complete MFA)',
          );
        }
        if (batch.outcome) {
          logger.info({ ...batch.outcome }, 'TOTP secrets re-sealed under the current key');
          return batch.outcome;
        }
        after = batch.lastUserId;
      }
    },

    /** Housekeeping: forgets challenges that ended over an hour ago. */
    sweepChallenges: () => store.deleteStaleChallenges(pool),

    /**
     * For other features' sensitive actions (the password reset): checks a TOTP or recovery code
     * of a user with MFA on and runs `work` in the transaction that consumes it.
     * @throws {AppError} invalid_mfa_code, account_locked, mfa_not_enabled
     */
    withSecondFactor: async <T>(meta: RequestMeta, user: UserRow, code: string, purpose: 'password_reset', work: (tx: Queryable) => Promise<T>) =>
      (
        await withAcceptedCode(
          meta,
          user,
          code,
          purpose,
          { state: 'active', allowRecovery: true, onMissing: notEnabled, onOtherState: notEnabled },
          async (tx) => ({ result: await work(tx) }),
        )
      ).result,
  };
  return service;
};

export type MfaService = ReturnType<typeof createMfaService>;
