/**
 * All SQL of the MFA feature: TOTP enrollments, recovery codes and login challenges.
 */
import { sql, type CommonQueryMethods, type DatabasePool } from 'slonik';
import { z } from 'zod';

type Queryable = CommonQueryMethods;

const totpRow = z.object({
  user_id: z.string().uuid(),
  enrollment_id: z.string().uuid(),
  secret_sealed: z.instanceof(Buffer),
  key_id: z.instanceof(Buffer),
  activated: z.boolean(),
  /** bigint in the database; time steps stay far below 2^53 for the next few million years. */
  last_used_step: z.coerce.number().int().nullable(),
});
export type TotpRow = z.infer<typeof totpRow>;

const totpColumns = sql.fragment`
  user_id, enrollment_id, secret_sealed, key_id, activated_at IS NOT NULL AS activated, last_used_step`;

const challengeRow = z.object({ id: z.string().uuid(), user_id: z.string().uuid() });

const challengeStateRow = z.object({
  user_id: z.string().uuid(),
  consumed: z.boolean(),
  expired: z.boolean(),
  ip_matches: z.boolean(),
});

const idRow = z.object({ id: z.string().uuid() });
const userIdRow = z.object({ user_id: z.string().uuid() });
const countRow = z.object({ count: z.number().int() });
const keyCountRow = z.object({ key_id: z.instanceof(Buffer), count: z.number().int() });
const pendingRow = z.object({
  user_id: z.string().uuid(),
  enrollment_id: z.string().uuid(),
  secret_sealed: z.instanceof(Buffer),
  key_id: z.instanceof(Buffer),
});
export type PendingResealRow = z.infer<typeof pendingRow>;

export const createMfaStore = (pool: DatabasePool) => ({
  pool,

  findTotp: (db: Queryable, userId: string) =>
    db.maybeOne(sql.type(totpRow)`SELECT ${totpColumns} FROM mfa_totp WHERE user_id = ${userId}`),

  /**
   * Stores a new pending secret, replacing a pending one; never touches an active enrollment.
   * Returns null when the user's TOTP is already active.
   */
  upsertPending: (db: Queryable, enrollment: { userId: string; secretSealed: Buffer; keyId: Buffer }) =>
    db.maybeOne(sql.type(totpRow)`
      INSERT INTO mfa_totp AS t (user_id, secret_sealed, key_id)
      VALUES (${enrollment.userId}, ${sql.binary(enrollment.secretSealed)}, ${sql.binary(enrollment.keyId)})
      ON CONFLICT (user_id) DO UPDATE SET
        enrollment_id = gen_random_uuid(),
        secret_sealed = excluded.secret_sealed,
        key_id = excluded.key_id,
        last_used_step = NULL,
        created_at = now(),
        updated_at = now()
      WHERE t.activated_at IS NULL
      RETURNING ${totpColumns}`),

  /**
   * Replay protection: the compare-and-set that accepts a code's time step at most once. The
   * row lock taken by the UPDATE makes concurrent callers wait and then re-evaluate the
   * predicate against the committed step, so of two verifies of one code exactly one wins.
   * Optionally re-seals the secret under the current key (lazy rotation).
   * Returns false when the step was not later than the last accepted one (or the enrollment
   * changed meanwhile).
   */
  consumeStep: async (
    db: Queryable,
    input: { userId: string; enrollmentId: string; step: number; resealed?: { secretSealed: Buffer; keyId: Buffer } },
  ) =>
    (await db.maybeOne(sql.type(userIdRow)`
      UPDATE mfa_totp SET
        last_used_step = ${input.step},
        secret_sealed = coalesce(${input.resealed ? sql.binary(input.resealed.secretSealed) : null}::bytea, secret_sealed),
        key_id = coalesce(${input.resealed ? sql.binary(input.resealed.keyId) : null}::bytea, key_id),
        updated_at = now()
      WHERE user_id = ${input.userId}
        AND enrollment_id = ${input.enrollmentId}
        AND (last_used_step IS NULL OR last_used_step < ${input.step})
      RETURNING user_id`)) !== null,

  /** Activates a pending enrollment with its first recovery-code batch. False when not pending any more. */
  activate: async (db: Queryable, input: { userId: string; enrollmentId: string; batchId: string }) =>
    (await db.maybeOne(sql.type(userIdRow)`
      UPDATE mfa_totp SET activated_at = now(), recovery_batch_id = ${input.batchId}, updated_at = now()
      WHERE user_id = ${input.userId} AND enrollment_id = ${input.enrollmentId} AND activated_at IS NULL
      RETURNING user_id`)) !== null,

  /** Removes the enrollment (its recovery codes go with it). False when there was none. */
  deleteTotp: async (db: Queryable, input: { userId: string; enrollmentId: string }) =>
    (await db.maybeOne(sql.type(userIdRow)`
      DELETE FROM mfa_totp WHERE user_id = ${input.userId} AND enrollment_id = ${input.enrollmentId}
      RETURNING user_id`)) !== null,

  /**
   * Starts a new recovery-code generation: every code of an earlier batch stops working at once
   * (the batch check in {@link consumeRecoveryCode}) and is deleted. False when not active.
   */
  replaceRecoveryCodes: async (db: Queryable, input: { userId: string; enrollmentId: string; batchId: string; codeHashes: Buffer[] }) => {
    const switched = await db.maybeOne(sql.type(userIdRow)`
      UPDATE mfa_totp SET recovery_batch_id = ${input.batchId}, updated_at = now()
      WHERE user_id = ${input.userId} AND enrollment_id = ${input.enrollmentId} AND activated_at IS NOT NULL
      RETURNING user_id`);
    if (!switched) return false;
    await db.query(sql.unsafe`
      DELETE FROM mfa_recovery_codes WHERE user_id = ${input.userId} AND batch_id <> ${input.batchId}`);
    await db.query(sql.unsafe`
      INSERT INTO mfa_recovery_codes (user_id, batch_id, code_hash)
      SELECT ${input.userId}::uuid, ${input.batchId}::uuid, decode(h.hex, 'hex')
      FROM unnest(${sql.array(input.codeHashes.map((hash) => hash.toString('hex')), 'text')}) AS h(hex)`);
    return true;
  },

  /**
   * Consumes a recovery code atomically: only an unused code of the current batch of an active
   * enrollment matches, and only one caller can set its used_at. Returns the code id and how
   * many unused codes remain, or null.
   */
  consumeRecoveryCode: async (db: Queryable, input: { userId: string; codeHash: Buffer }) => {
    const used = await db.maybeOne(sql.type(idRow)`
      UPDATE mfa_recovery_codes AS c SET used_at = now()
      FROM mfa_totp AS t
      WHERE c.user_id = ${input.userId}
        AND c.code_hash = ${sql.binary(input.codeHash)}
        AND c.used_at IS NULL
        AND t.user_id = c.user_id
        AND t.activated_at IS NOT NULL
        AND t.recovery_batch_id = c.batch_id
      RETURNING c.id`);
    if (!used) return null;
    const remaining = await db.one(sql.type(countRow)`
      SELECT count(*)::int AS count
      FROM mfa_recovery_codes AS c JOIN mfa_totp AS t ON t.user_id = c.user_id AND t.recovery_batch_id = c.batch_id
      WHERE c.user_id = ${input.userId} AND c.used_at IS NULL`);
    return { id: used.id, remaining: remaining.count };
  },

  insertChallenge: (db: Queryable, challenge: { tokenHash: Buffer; userId: string; ip: string | null; ttlSeconds: number }) =>
    db.one(sql.type(idRow)`
      INSERT INTO mfa_challenges (token_hash, user_id, ip, expires_at)
      VALUES (${sql.binary(challenge.tokenHash)}, ${challenge.userId}, ${challenge.ip}::inet,
              now() + make_interval(secs => ${challenge.ttlSeconds}))
      RETURNING id`),

  /**
   * Consumes a challenge: unused, unexpired (by the database clock) and presented from the IP it
   * was issued to. One atomic UPDATE, so a token is redeemed at most once even concurrently.
   */
  consumeChallenge: (db: Queryable, input: { tokenHash: Buffer; ip: string | null }) =>
    db.maybeOne(sql.type(challengeRow)`
      UPDATE mfa_challenges SET consumed_at = now()
      WHERE token_hash = ${sql.binary(input.tokenHash)}
        AND consumed_at IS NULL
        AND expires_at > now()
        AND ip IS NOT DISTINCT FROM ${input.ip}::inet
      RETURNING id, user_id`),

  /** Why a challenge was not consumed (for the security event only; the client learns nothing). */
  describeChallenge: (db: Queryable, input: { tokenHash: Buffer; ip: string | null }) =>
    db.maybeOne(sql.type(challengeStateRow)`
      SELECT user_id, consumed_at IS NOT NULL AS consumed, expires_at <= now() AS expired,
             ip IS NOT DISTINCT FROM ${input.ip}::inet AS ip_matches
      FROM mfa_challenges WHERE token_hash = ${sql.binary(input.tokenHash)}`),

  /** TOTP secrets per sealing key id (one index-only pass over mfa_totp_key_id). */
  countByKey: (db: Queryable) =>
    db.any(sql.type(keyCountRow)`
      SELECT key_id, count(*)::int AS count FROM mfa_totp GROUP BY key_id ORDER BY key_id`),

  /**
   * The next rows (by user id, after `after`) whose secret is not sealed under `currentKeyId`,
   * locked for the reseal. SKIP LOCKED: a row a verify is consuming right now is passed over (it
   * is re-sealed by that verify, or by a later call) rather than waited for, so neither side
   * blocks the other for longer than one batch. Call inside a transaction.
   */
  lockPendingReseal: (db: Queryable, input: { currentKeyId: Buffer; after: string | null; limit: number }) =>
    db.any(sql.type(pendingRow)`
      SELECT user_id, enrollment_id, secret_sealed, key_id
        FROM mfa_totp
       WHERE key_id <> ${sql.binary(input.currentKeyId)}
         AND (${input.after}::uuid IS NULL OR user_id > ${input.after}::uuid)
       ORDER BY user_id
       LIMIT ${input.limit}
         FOR UPDATE SKIP LOCKED`),

  /**
   * Writes re-sealed secrets, each with a compare-and-set on the key id (and enrollment) it was
   * read with: a row a verify re-sealed or an enrollment replaced meanwhile is left alone.
   * last_used_step is never touched. Returns the user ids written.
   */
  writeResealed: async (db: Queryable, input: { keyId: Buffer; rows: Array<{ userId: string; enrollmentId: string; oldKeyId: Buffer; secretSealed: Buffer }> }) => {
    if (input.rows.length === 0) return [];
    const written = await db.any(sql.type(userIdRow)`
      UPDATE mfa_totp AS t SET
        secret_sealed = decode(v.sealed, 'hex'),
        key_id = ${sql.binary(input.keyId)},
        updated_at = now()
      FROM unnest(
        ${sql.array(input.rows.map((row) => row.userId), 'uuid')},
        ${sql.array(input.rows.map((row) => row.enrollmentId), 'uuid')},
        ${sql.array(input.rows.map((row) => row.oldKeyId.toString('hex')), 'text')},
        ${sql.array(input.rows.map((row) => row.secretSealed.toString('hex')), 'text')}
      ) AS v(user_id, enrollment_id, old_key_id, sealed)
      WHERE t.user_id = v.user_id
        AND t.enrollment_id = v.enrollment_id
        AND t.key_id = decode(v.old_key_id, 'hex')
      RETURNING t.user_id`);
    return written.map((row) => row.user_id);
  },

  /** Housekeeping: forgets challenges that ended more than an hour ago (of one user, or all). */
  deleteStaleChallenges: (db: Queryable, userId?: string) =>
    db.query(sql.unsafe`
      DELETE FROM mfa_challenges
      WHERE expires_at < now() - interval '1 hour'
        AND (${userId ?? null}::uuid IS NULL OR user_id = ${userId ?? null}::uuid)`),
});

export type MfaStore = ReturnType<typeof createMfaStore>;
