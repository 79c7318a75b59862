/**
 * Seeds security_event_audit with N rows whose hash chain is valid, fast enough for the bench.
 *
 * Through the insert trigger every row costs the chain lock, a head update and a counter upsert
 * (and is stamped with the current time). Instead: every column is a pure function of the row's
 * position n, written once here for JavaScript and once for SQL (generate_series); the chain is
 * computed here with the audit module's own `eventHash` (the byte-exact twin of the SQL
 * `security_event_hash`, kept for verifying exports) and only the hashes travel to the database.
 * The rows go in with triggers bypassed (session_replication_role = replica, superuser) in one
 * transaction that holds the chain lock and the head row; the head, the per-type counters and
 * the identity sequence are then moved exactly as the trigger moves them, and the per-minute
 * counters of the last 48 hours filled as the trigger (with its pruning) would have left them. `checkSeededChain`
 * recomputes hashes in the database with the migration's own function, so any drift between the
 * two column definitions or hash implementations fails the bench.
 *
 * created_at is spread evenly over the last `spreadDays` days, in seq order (as the trigger
 * guarantees); event types cycle through every known type; a fifth of the rows have no user.
 */
import type pg from 'pg';
import { eventHash } from '../../app/audit/store.js';
import { securityEventTypes } from '../../app/audit/types.js';

const BATCH = 100_000;
const USER_AGENT = 'karaxas-bench/1.0';

/** `to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')` of an epoch in µs. */
const exactTimestamp = (epochMicros: bigint) =>
  `${new Date(Number(epochMicros / 1000n)).toISOString().slice(0, 19)}.${(epochMicros % 1_000_000n).toString().padStart(6, '0')}Z`;

const hex12 = (value: bigint) => value.toString(16).padStart(12, '0');

/** The columns of row n (1-based) of a seed whose first seq is `firstSeq`; mirrored by `sqlColumns`. */
const rowFields = (n: bigint, firstSeq: bigint, lastMicros: bigint, stepMicros: bigint, total: bigint) => ({
  seq: firstSeq + n - 1n,
  id: `00000000-0000-4000-8000-${hex12(firstSeq + n - 1n)}`,
  eventType: securityEventTypes[Number((n - 1n) % BigInt(securityEventTypes.length))]!,
  userId: n % 5n === 0n ? null : `00000000-0000-4000-9000-${hex12(n % 5000n)}`,
  ip: `10.${n % 250n}.${(n / 250n) % 250n}.1/32`,
  requestId: `bench-${n}`,
  createdAtMicros: lastMicros - stepMicros * (total - n),
});

/** The same columns in SQL, for position `n` (an SQL expression); $1 first seq, $2 types, $3 last µs, $4 step µs, $5 total. */
const sqlColumns = (n: string) => `
  ($1::bigint + ${n} - 1) AS seq,
  ('00000000-0000-4000-8000-' || lpad(to_hex($1::bigint + ${n} - 1), 12, '0'))::uuid AS id,
  ($2::text[])[1 + ((${n} - 1) % cardinality($2::text[]))] AS event_type,
  CASE WHEN ${n} % 5 = 0 THEN NULL ELSE ('00000000-0000-4000-9000-' || lpad(to_hex(${n} % 5000), 12, '0'))::uuid END AS user_id,
  ('10.' || (${n} % 250) || '.' || ((${n} / 250) % 250) || '.1/32')::inet AS ip,
  'bench-' || ${n} AS request_id,
  timestamptz 'epoch' + (($3::bigint - $4::bigint * ($5::bigint - ${n}))::text || ' microseconds')::interval AS created_at`;

export const seedSecurityEvents = async (client: pg.Client, options: { rows: number; spreadDays: number }) => {
  const total = BigInt(options.rows);
  const lastMicros = BigInt(Date.now() - 1_000) * 1000n;
  const stepMicros = BigInt(Math.floor((options.spreadDays * 86_400 * 1e6) / options.rows));
  const types = [...securityEventTypes];
  await client.query('BEGIN');
  try {
    await client.query('SET LOCAL session_replication_role = replica');
    await client.query('SELECT pg_advisory_xact_lock(7305114202)');
    const head = (await client.query<{ last_seq: string; last_hash: string }>('SELECT last_seq::text, last_hash FROM security_event_audit_head FOR UPDATE')).rows[0]!;
    const { rows: present } = await client.query('SELECT 1 FROM security_event_audit LIMIT 1');
    if (present.length > 0) throw new Error('seedSecurityEvents expects an empty audit trail (seeded rows are dated in the past)');
    const firstSeq = BigInt(head.last_seq) + 1n;

    let previous = head.last_hash;
    let last = rowFields(1n, firstSeq, lastMicros, stepMicros, total);
    const perType = new Map<string, number>();
    const insert = (from: number, hashes: string[], prevOfBatch: string) =>
      client.query(
        `INSERT INTO security_event_audit (id, seq, event_type, user_id, session_id, ip, user_agent, request_id, details, created_at, prev_hash, hash)
         OVERRIDING SYSTEM VALUE
         SELECT c.id, c.seq, c.event_type, c.user_id, NULL, c.ip, $8, c.request_id, '{}'::jsonb, c.created_at, h.prev_hash, h.hash
           FROM (SELECT $6::bigint + i - 1 AS n, hash, coalesce(lag(hash) OVER (ORDER BY i), $9) AS prev_hash
                   FROM unnest($7::text[]) WITH ORDINALITY AS u(hash, i)) AS h,
                LATERAL (SELECT ${sqlColumns('h.n')}) AS c`,
        [firstSeq.toString(), types, lastMicros.toString(), stepMicros.toString(), total.toString(), from, hashes, USER_AGENT, prevOfBatch],
      );
    let pending: Promise<unknown> = Promise.resolve();
    for (let from = 1; from <= options.rows; from += BATCH) {
      const to = Math.min(options.rows, from + BATCH - 1);
      const hashes: string[] = [];
      const prevOfBatch = previous;
      for (let index = from; index <= to; index += 1) {
        const row = rowFields(BigInt(index), firstSeq, lastMicros, stepMicros, total);
        previous = eventHash({
          seq: row.seq.toString(),
          id: row.id,
          eventType: row.eventType,
          userId: row.userId,
          sessionId: null,
          ip: row.ip,
          userAgent: USER_AGENT,
          requestId: row.requestId,
          detailsText: '{}',
          createdAtExact: exactTimestamp(row.createdAtMicros),
          prevHash: previous,
        });
        hashes.push(previous);
        perType.set(row.eventType, (perType.get(row.eventType) ?? 0) + 1);
        last = row;
      }
      // The database inserts one batch while the next one is hashed here.
      await pending;
      pending = insert(from, hashes, prevOfBatch);
    }
    await pending;
    await client.query('UPDATE security_event_audit_head SET last_seq = $1, last_id = $2, last_hash = $3', [last.seq.toString(), last.id, previous]);
    await client.query(
      `INSERT INTO security_event_counts AS c (event_type, total)
       SELECT * FROM unnest($1::text[], $2::bigint[])
       ON CONFLICT (event_type) DO UPDATE SET total = c.total + excluded.total`,
      [[...perType.keys()], [...perType.values()]],
    );
    // The per-minute counters (migration 0008) as the trigger leaves them: the last 48 hours.
    await client.query(
      `INSERT INTO security_event_counts_by_minute (event_type, minute, count)
       SELECT event_type, date_trunc('minute', created_at, 'UTC'), count(*)
         FROM security_event_audit
        WHERE created_at >= date_trunc('minute', $1::timestamptz - interval '48 hours', 'UTC')
        GROUP BY 1, 2`,
      [new Date(Number(lastMicros / 1000n)).toISOString()],
    );
    await client.query(`SELECT setval(pg_get_serial_sequence('public.security_event_audit', 'seq'), $1::bigint)`, [last.seq.toString()]);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
  // As autovacuum would leave it after a load: statistics and the visibility map (index-only scans).
  await client.query('VACUUM (ANALYZE) security_event_audit');
};

/**
 * Recomputes, in the database with the migration's `security_event_hash`, the hash of `sample`
 * rows spread over the chain plus the first and the last, checks each one's prev_hash against
 * its predecessor's hash (the anchor's for the first) and that the head points at the last row.
 * @returns the number of rows checked. @throws when anything does not chain.
 */
export const checkSeededChain = async (client: pg.Client, sample = 2_000): Promise<number> => {
  const { rows } = await client.query<{ checked: string; broken: string }>(
    `WITH bounds AS (SELECT min(seq) AS lo, max(seq) AS hi FROM security_event_audit),
     picked AS (
       SELECT DISTINCT b.lo + ((b.hi - b.lo) * g) / $1 AS seq FROM bounds b, generate_series(0, $1::bigint) AS g
     )
     SELECT count(*)::text AS checked,
            count(*) FILTER (WHERE a.hash <> security_event_hash(a.seq, a.id, a.event_type, a.user_id, a.session_id, a.ip, a.user_agent,
                                                                   a.request_id, a.details, a.created_at, a.prev_hash)
                                OR a.prev_hash <> coalesce((SELECT p.hash FROM security_event_audit p WHERE p.seq < a.seq ORDER BY p.seq DESC LIMIT 1),
                                                           (SELECT last_hash FROM security_event_audit_anchor)))::text AS broken
       FROM picked JOIN security_event_audit a USING (seq)`,
    [sample],
  );
  const head = (
    await client.query<{ ok: boolean }>(
      `SELECT h.last_hash = a.hash AND h.last_id = a.id AS ok
         FROM security_event_audit_head h JOIN security_event_audit a ON a.seq = h.last_seq`,
    )
  ).rows[0];
  if (Number(rows[0]!.broken) > 0 || !head?.ok) throw new Error(`seeded audit chain does not verify (${rows[0]!.broken} broken rows, head ok: ${String(head?.ok)})`);
  return Number(rows[0]!.checked);
};
