/**
 * Audit retention (contract §8, §10): moves `security_event_audit` rows older than the hot window
 * to cold storage without ever losing one and without breaking the hash chain.
 *
 * One run, per batch of at most `batchSize` rows (oldest first):
 *
 *   1. read the archive anchor (last archived seq and hash);
 *   2. export the oldest rows — a contiguous seq prefix, stopping at the first row not older than
 *      the cut-off — to gzip'd JSON Lines, checking every row's hash and link on the way;
 *   3. write the file (local directory, or `gs://bucket/prefix` through @google-cloud/storage),
 *      never replacing an existing object;
 *   4. read it back and VERIFY it: SHA-256 of the bytes, gunzip, row count, first/last seq, and
 *      the hash chain recomputed from the anchor with the database's canonical encoding
 *      (canonicalEventText/eventHash of ./store.ts);
 *   5. write the manifest next to it;
 *   6. in ONE transaction: `archive_security_events(through_seq, count, last_hash)` — which
 *      re-checks count, last hash and the chain in the database, deletes the rows and moves the
 *      anchor — and the `admin_action_audit` row (actor `archive-job`, action
 *      `security_audit.archive`). Both commit or neither does.
 *
 * Nothing is deleted unless step 4 passed; any failure before step 6 leaves the table untouched
 * (an exported file without its admin_action_audit row is an unused copy, never the record of a
 * cut). After the last batch the whole remaining chain is verified from the new anchor.
 *
 * A session-level advisory lock makes concurrent runs exit instead of exporting the same rows
 * twice (the database routine would refuse the second delete anyway).
 *
 * File format (`karaxas.security_event_archive.v1`): one JSON object per line, in seq order:
 *   {"seq":"42","id":"…","eventType":"login_failed","userId":…,"sessionId":…,"ip":"10.0.0.1/32",
 *    "userAgent":…,"requestId":…,"details":"{\"reason\": \"bad_password\"}",
 *    "createdAt":"2025-01-01T00:00:00.123456Z","prevHash":"…","hash":"…"}
 * Every value is the text PostgreSQL hashes (seq as decimal text, ip as inet text with its mask,
 * `details` as the jsonb's own text — JSON.parse it to read it —, createdAt with microseconds),
 * so `hash = sha256(canonicalEventText(row))` can be recomputed by anyone, forever.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { gunzip as gunzipCallback, gzip as gzipCallback } from 'node:zlib';
import { sql, type CommonQueryMethods, type DatabasePool, type DatabasePoolConnection, type FragmentSqlToken } from 'slonik';
import { z } from 'zod';
import { ConfigError, parseEnvironment, type Config, type SecretAccessor } from '../config/index.js';
import { eventHash, type CanonicalEventFields, type JsonObject } from './store.js';
import { createSecurityAuditStore } from './store.js';
import type { ChainVerification } from './types.js';

const gzip = promisify(gzipCallback);
const gunzip = promisify(gunzipCallback);

/** Recorded as `admin_action_audit.actor` for archive runs. */
export const ARCHIVE_ACTOR = 'archive-job';
/** Recorded as `admin_action_audit.action` for archive runs. */
export const ARCHIVE_ACTION = 'security_audit.archive';
export const ARCHIVE_FORMAT = 'karaxas.security_event_archive.v1';
export const DEFAULT_ARCHIVE_BATCH_SIZE = 50_000;
export const MAX_ARCHIVE_BATCH_SIZE = 500_000;
/** Rows read per query while exporting. */
const EXPORT_PAGE_SIZE = 5_000;
/** Key of the session advisory lock held for a whole run (7305114201 migrations, …202 the chain). */
export const ARCHIVE_LOCK_KEY = 7_305_114_203;

/** A problem with the export that stops the run before anything is deleted. */
export class ArchiveError extends Error {
  override name = 'ArchiveError';
  constructor(
    /** `export_chain_broken`, `verification_failed`, `busy`, `write_failed`, `invalid_destination`, `delete_refused`. */
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

// ---------------------------------------------------------------------------------------------
// Destinations

export type ArchiveDestination =
  | { kind: 'local'; directory: string }
  | { kind: 'gcs'; bucket: string; prefix: string };

/** `gs://bucket/prefix/` or a local directory (created when missing). */
export const parseDestination = (destination: string): ArchiveDestination => {
  if (destination.startsWith('gs://')) {
    const match = /^gs:\/\/([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])(?:\/(.*))?$/.exec(destination);
    if (!match) throw new ArchiveError('invalid_destination', 'the destination must look like gs://bucket/prefix/');
    let prefix = match[2] ?? '';
    if (prefix !== '' && !prefix.endsWith('/')) prefix += '/';
    return { kind: 'gcs', bucket: match[1]!, prefix };
  }
  if (destination.trim() === '' || /^[a-z][a-z0-9+.-]*:\/\//i.test(destination)) {
    throw new ArchiveError('invalid_destination', 'the destination must be a local directory or a gs://bucket/prefix/ URI');
  }
  return { kind: 'local', directory: resolve(destination) };
};

/** Options for the Cloud Storage client (`apiEndpoint` for an emulator or a test fake). */
export type ArchiveStorageOptions = { apiEndpoint?: string; projectId?: string };

type Sink = {
  /** The URI an object name gets. */
  uriOf: (name: string) => string;
  /** Writes a new object; fails when it already exists. */
  write: (name: string, data: Buffer, contentType: string) => Promise<void>;
  read: (name: string) => Promise<Buffer>;
};

const localSink = (directory: string): Sink => ({
  uriOf: (name) => join(directory, name),
  write: async (name, data) => {
    await mkdir(directory, { recursive: true, mode: 0o700 });
    const target = join(directory, name);
    const partial = `${target}.${randomUUID()}.partial`;
    await writeFile(partial, data, { flag: 'wx', mode: 0o600 });
    try {
      // link() refuses an existing target: an archive is never replaced.
      await link(partial, target);
    } finally {
      await unlink(partial).catch(() => undefined);
    }
  },
  read: (name) => readFile(join(directory, name)),
});

const gcsSink = async (bucketName: string, prefix: string, options: ArchiveStorageOptions): Promise<Sink> => {
  const { Storage } = await import('@google-cloud/storage');
  const storage = new Storage({
    ...(options.apiEndpoint === undefined ? {} : { apiEndpoint: options.apiEndpoint }),
    ...(options.projectId === undefined ? {} : { projectId: options.projectId }),
  });
  const bucket = storage.bucket(bucketName);
  return {
    uriOf: (name) => `gs://${bucketName}/${prefix}${name}`,
    write: async (name, data, contentType) => {
      // ifGenerationMatch: 0 — create only; the bucket's retention policy forbids replacing too.
      await bucket.file(`${prefix}${name}`).save(data, {
        resumable: false,
        contentType,
        metadata: { contentType },
        preconditionOpts: { ifGenerationMatch: 0 },
        validation: 'md5',
      });
    },
    read: async (name) => {
      const [contents] = await bucket.file(`${prefix}${name}`).download();
      return contents;
    },
  };
};

const sinkFor = (destination: ArchiveDestination, storage: ArchiveStorageOptions) =>
  destination.kind === 'local' ? Promise.resolve(localSink(destination.directory)) : gcsSink(destination.bucket, destination.prefix, storage);

// ---------------------------------------------------------------------------------------------
// Rows and manifests

/** One exported row: exactly the fields of the canonical hash text, plus the stored hash. */
export const archivedRowSchema = z
  .object({
    seq: z.string().regex(/^\d{1,19}$/),
    id: z.string(),
    eventType: z.string(),
    userId: z.string().nullable(),
    sessionId: z.string().nullable(),
    ip: z.string().nullable(),
    userAgent: z.string().nullable(),
    requestId: z.string().nullable(),
    /** The jsonb's own text (PostgreSQL's key order and spacing). */
    details: z.string(),
    /** UTC with microseconds, `YYYY-MM-DDTHH:MM:SS.ffffffZ`. */
    createdAt: z.string(),
    prevHash: z.string().regex(/^[0-9a-f]{64}$/),
    hash: z.string().regex(/^[0-9a-f]{64}$/),
  })
  .strict();
export type ArchivedRow = z.infer<typeof archivedRowSchema>;

const hashSchema = z.string().regex(/^[0-9a-f]{64}$/);

/** Written next to each archive as `<file>.manifest.json`. */
export const archiveManifestSchema = z.object({
  format: z.literal(ARCHIVE_FORMAT),
  /** The archive's URI (local path or gs://…) and its object name. */
  file: z.string(),
  fileName: z.string(),
  rowCount: z.number().int().positive(),
  firstSeq: z.string(),
  lastSeq: z.string(),
  firstCreatedAt: z.string(),
  lastCreatedAt: z.string(),
  /** The hash of the last row: the chain anchor after the cut. */
  lastHash: hashSchema,
  /** The anchor the first row chains to. */
  anchorBefore: z.object({ seq: z.string(), hash: hashSchema }),
  /** SHA-256 (hex) and size of the gzip'd file as written. */
  sha256: hashSchema,
  bytes: z.number().int().positive(),
  /** Rows strictly older than this were eligible. */
  cutoff: z.string(),
  exportedAt: z.string(),
  /** Ties the file to its admin_action_audit row (request_id). */
  runId: z.string(),
});
export type ArchiveManifest = z.infer<typeof archiveManifestSchema>;

const exportRow = z.object({
  seq: z.string(),
  id: z.string(),
  event_type: z.string(),
  user_id: z.string().nullable(),
  session_id: z.string().nullable(),
  ip: z.string().nullable(),
  user_agent: z.string().nullable(),
  request_id: z.string().nullable(),
  details_text: z.string(),
  created_at_exact: z.string(),
  prev_hash: z.string(),
  hash: z.string(),
  old: z.boolean(),
});
type ExportRow = z.infer<typeof exportRow>;

const anchorRow = z.object({ last_seq: z.string(), last_hash: z.string() });

const canonicalFieldsOf = (row: ArchivedRow): CanonicalEventFields => ({
  seq: row.seq,
  id: row.id,
  eventType: row.eventType,
  userId: row.userId,
  sessionId: row.sessionId,
  ip: row.ip,
  userAgent: row.userAgent,
  requestId: row.requestId,
  detailsText: row.details,
  createdAtExact: row.createdAt,
  prevHash: row.prevHash,
});

const sha256Hex = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

/** What a verified archive must hold. */
export type ArchiveExpectation = {
  sha256: string;
  rowCount: number;
  firstSeq: string;
  lastSeq: string;
  lastHash: string;
  anchorHash: string;
};

/**
 * Verifies archive bytes against what was exported: checksum, gzip, row count, first/last seq,
 * and the hash chain recomputed from the anchor (every row's hash and its link to the previous
 * row). Returns the parsed rows.
 * @throws {ArchiveError} `verification_failed`, naming the first problem.
 */
export const verifyArchiveBytes = async (bytes: Buffer, expected: ArchiveExpectation): Promise<ArchivedRow[]> => {
  const fail = (message: string): never => {
    throw new ArchiveError('verification_failed', `archive verification failed: ${message}`);
  };
  const actualSha = sha256Hex(bytes);
  if (actualSha !== expected.sha256) fail(`SHA-256 is ${actualSha}, expected ${expected.sha256}`);
  let text: string;
  try {
    text = (await gunzip(bytes)).toString('utf8');
  } catch {
    return fail('the file is not valid gzip');
  }
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  if (lines.length !== expected.rowCount) fail(`${lines.length} rows, expected ${expected.rowCount}`);
  const rows: ArchivedRow[] = [];
  let previousHash = expected.anchorHash;
  let previousSeq = -1n;
  for (const [index, line] of lines.entries()) {
    let parsed: ArchivedRow;
    try {
      parsed = archivedRowSchema.parse(JSON.parse(line));
    } catch {
      return fail(`line ${index + 1} is not a valid row`);
    }
    const seq = BigInt(parsed.seq);
    if (seq <= previousSeq) fail(`line ${index + 1}: seq ${parsed.seq} is not increasing`);
    if (parsed.prevHash !== previousHash) fail(`row seq ${parsed.seq} does not chain to the previous row (or the anchor)`);
    const recomputed = eventHash(canonicalFieldsOf(parsed));
    if (recomputed !== parsed.hash) fail(`row seq ${parsed.seq}: the recomputed hash differs from the stored one`);
    previousHash = parsed.hash;
    previousSeq = seq;
    rows.push(parsed);
  }
  if (rows[0]?.seq !== expected.firstSeq) fail(`first seq is ${rows[0]?.seq}, expected ${expected.firstSeq}`);
  if (rows.at(-1)?.seq !== expected.lastSeq) fail(`last seq is ${rows.at(-1)?.seq}, expected ${expected.lastSeq}`);
  if (previousHash !== expected.lastHash) fail('the last hash differs from the exported one');
  return rows;
};

/**
 * Re-verifies an archive written earlier, from its manifest (`<file>.manifest.json` beside it):
 * checksum, count, seqs and the chain from the recorded anchor.
 */
export const verifyArchivedFile = async (
  fileUri: string,
  options: { storage?: ArchiveStorageOptions } = {},
): Promise<{ manifest: ArchiveManifest; rows: number }> => {
  const slash = fileUri.lastIndexOf('/');
  const name = fileUri.slice(slash + 1);
  let sink: Sink;
  if (fileUri.startsWith('gs://')) {
    const match = /^gs:\/\/([^/]+)\/(.*\/)?[^/]+$/.exec(fileUri);
    if (!match) throw new ArchiveError('invalid_destination', 'expected gs://bucket/path/file.jsonl.gz');
    sink = await gcsSink(match[1]!, match[2] ?? '', options.storage ?? {});
  } else {
    sink = localSink(resolve(fileUri, '..'));
  }
  const manifest = archiveManifestSchema.parse(JSON.parse((await sink.read(`${name}.manifest.json`)).toString('utf8')));
  const rows = await verifyArchiveBytes(await sink.read(name), {
    sha256: manifest.sha256,
    rowCount: manifest.rowCount,
    firstSeq: manifest.firstSeq,
    lastSeq: manifest.lastSeq,
    lastHash: manifest.lastHash,
    anchorHash: manifest.anchorBefore.hash,
  });
  return { manifest, rows: rows.length };
};

// ---------------------------------------------------------------------------------------------
// The run

export type ArchiveWritten = {
  /** The archive's URI (local path or gs://…). */
  uri: string;
  /** The local path, for a local destination. */
  localPath: string | undefined;
  manifest: ArchiveManifest;
};

/** The admin_action_audit row of one cut (see {@link ArchiveOptions.recordAdminAction}). */
export type ArchiveAdminAction = {
  actor: string;
  action: string;
  target: string;
  details: JsonObject;
  requestId: string;
  ip: null;
};

export type ArchiveOptions = {
  pool: DatabasePool;
  /**
   * Writes the admin_action_audit row of a cut inside the cut's own transaction, so a cut is
   * recorded if and only if it happened. That table belongs to the ops feature: the job's entry
   * point (app/cli) hands in the ops store's insert rather than this module reaching into it.
   */
  recordAdminAction: (tx: CommonQueryMethods, action: ArchiveAdminAction) => Promise<unknown>;
  /** A local directory or `gs://bucket/prefix/`. */
  destination: string;
  /** Rows with created_at strictly before this instant are archived. */
  cutoff: Date;
  /** Rows per file and per delete transaction (default 50 000). */
  batchSize?: number;
  /** Stop after this many batches (default: until no eligible row is left). */
  maxBatches?: number;
  /** Export and verify, but delete nothing and record nothing. */
  dryRun?: boolean;
  storage?: ArchiveStorageOptions;
  /** Called after a file was written and before it is read back and verified (tests corrupt it here). */
  beforeVerify?: (written: ArchiveWritten) => Promise<void> | void;
  /** Progress lines for a terminal. */
  log?: (line: string) => void;
  now?: () => Date;
};

export type ArchiveBatchResult = {
  uri: string;
  manifestUri: string;
  manifest: ArchiveManifest;
  /** Rows deleted from the table (0 on a dry run). */
  deleted: number;
};

export type ArchiveResult = {
  cutoff: string;
  dryRun: boolean;
  batches: ArchiveBatchResult[];
  archived: number;
  /** True when rows older than the cut-off remain (maxBatches reached). */
  more: boolean;
  /** The chain verification after the last cut (null on a dry run or when nothing was cut). */
  chainAfter: ChainVerification | null;
};

const seqName = (seq: string) => seq.padStart(19, '0');
/** `20250131T020000123Z`: sortable, no characters that need escaping in a URI. */
const stamp = (date: Date) => date.toISOString().replace(/[-:.]/g, '');

/** Exports the next batch on `db`; returns null when no row is older than the cut-off. */
const exportBatch = async (db: CommonQueryMethods, cutoff: Date, batchSize: number) => {
  const anchor = await db.one(sql.type(anchorRow)`
    SELECT last_seq::text AS last_seq, last_hash FROM security_event_audit_anchor`);
  const rows: ArchivedRow[] = [];
  const chunks: Buffer[] = [];
  let afterSeq: string | null = null;
  let previousHash = anchor.last_hash;
  let reachedCutoff = false;
  while (rows.length < batchSize && !reachedCutoff) {
    const pageSize = Math.min(EXPORT_PAGE_SIZE, batchSize - rows.length);
    const after: FragmentSqlToken = afterSeq === null ? sql.fragment`TRUE` : sql.fragment`security_event_audit.seq > ${afterSeq}::bigint`;
    const page: readonly ExportRow[] = await db.any(sql.type(exportRow)`
      SELECT seq::text AS seq, id::text AS id, event_type, user_id::text AS user_id, session_id::text AS session_id,
             ip::text AS ip, user_agent, request_id, details::text AS details_text,
             to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at_exact,
             prev_hash, hash, created_at < ${cutoff.toISOString()}::timestamptz AS old
        FROM security_event_audit
       WHERE ${after}
       -- Qualified: a bare "seq" would name the text output column and sort "10" before "2".
       ORDER BY security_event_audit.seq
       LIMIT ${pageSize}`);
    const lines: string[] = [];
    for (const row of page) {
      // A contiguous prefix only: the first row not older than the cut-off ends the batch.
      if (!row.old) {
        reachedCutoff = true;
        break;
      }
      const archived: ArchivedRow = {
        seq: row.seq,
        id: row.id,
        eventType: row.event_type,
        userId: row.user_id,
        sessionId: row.session_id,
        ip: row.ip,
        userAgent: row.user_agent,
        requestId: row.request_id,
        details: row.details_text,
        createdAt: row.created_at_exact,
        prevHash: row.prev_hash,
        hash: row.hash,
      };
      // Refuse to carry a broken chain into cold storage: the database routine would refuse the
      // delete anyway, and the operator must look at it (karaxas-ops verify-chain) first.
      const problem =
        archived.prevHash !== previousHash
          ? 'its prev_hash is not the previous row\'s hash (or the anchor)'
          : eventHash(canonicalFieldsOf(archived)) !== archived.hash
            ? 'its stored hash differs from the recomputed one'
            : undefined;
      if (problem !== undefined) {
        throw new ArchiveError(
          'export_chain_broken',
          `the security-event chain is broken at row ${archived.id} (seq ${archived.seq}): ${problem}; nothing exported or deleted — run verify-chain`,
        );
      }
      previousHash = archived.hash;
      rows.push(archived);
      lines.push(`${JSON.stringify(archived)}\n`);
    }
    if (lines.length > 0) chunks.push(Buffer.from(lines.join(''), 'utf8'));
    if (page.length < pageSize) break;
    afterSeq = page.at(-1)!.seq;
  }
  if (rows.length === 0) return null;
  const more = !reachedCutoff && rows.length >= batchSize;
  return { anchor, rows, body: Buffer.concat(chunks), more };
};

/**
 * Archives every row older than `cutoff` (batch by batch; see the module comment).
 * @throws {ArchiveError} when the export cannot be written or verified (nothing deleted), when
 *   another run holds the lock (`busy`), or when the database refused the delete (`delete_refused`).
 */
export const archiveSecurityEvents = async (options: ArchiveOptions): Promise<ArchiveResult> => {
  const batchSize = options.batchSize ?? DEFAULT_ARCHIVE_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > MAX_ARCHIVE_BATCH_SIZE) {
    throw new ArchiveError('invalid_options', `the batch size must be an integer from 1 to ${MAX_ARCHIVE_BATCH_SIZE}`);
  }
  const maxBatches = options.maxBatches ?? Infinity;
  const now = options.now ?? (() => new Date());
  const log = options.log ?? (() => undefined);
  const destination = parseDestination(options.destination);
  const sink = await sinkFor(destination, options.storage ?? {});
  const cutoff = options.cutoff;
  if (Number.isNaN(cutoff.getTime())) throw new ArchiveError('invalid_options', 'the cut-off is not a valid instant');
  const dryRun = options.dryRun ?? false;

  return options.pool.connect(async (connection: DatabasePoolConnection) => {
    const locked = await connection.oneFirst(sql.type(z.object({ locked: z.boolean() }))`
      SELECT pg_try_advisory_lock(${ARCHIVE_LOCK_KEY}::bigint) AS locked`);
    if (!locked) throw new ArchiveError('busy', 'another archive run holds the archive lock; nothing done');
    const batches: ArchiveBatchResult[] = [];
    let more = false;
    try {
      for (;;) {
        if (batches.length >= maxBatches) {
          more = true;
          break;
        }
        const exported = await exportBatch(connection, cutoff, batchSize);
        if (exported === null) break;
        const first = exported.rows[0]!;
        const last = exported.rows.at(-1)!;
        const runId = `archive-${randomUUID()}`;
        const exportedAt = now();
        // Unique per run (a dry run and the real run of the same rows never collide): objects are never replaced.
        const fileName = `security-events-${seqName(first.seq)}-${seqName(last.seq)}-${stamp(exportedAt)}-${runId.slice(-8)}.jsonl.gz`;
        const data = await gzip(exported.body, { level: 9 });
        const manifest: ArchiveManifest = {
          format: ARCHIVE_FORMAT,
          file: sink.uriOf(fileName),
          fileName,
          rowCount: exported.rows.length,
          firstSeq: first.seq,
          lastSeq: last.seq,
          firstCreatedAt: first.createdAt,
          lastCreatedAt: last.createdAt,
          lastHash: last.hash,
          anchorBefore: { seq: exported.anchor.last_seq, hash: exported.anchor.last_hash },
          sha256: sha256Hex(data),
          bytes: data.length,
          cutoff: cutoff.toISOString(),
          exportedAt: exportedAt.toISOString(),
          runId,
        };
        const uri = sink.uriOf(fileName);
        try {
          await sink.write(fileName, data, 'application/gzip');
        } catch (cause) {
          throw new ArchiveError('write_failed', `could not write ${uri}: ${messageOf(cause)}; nothing deleted`, { cause });
        }
        log(`wrote ${uri} (${manifest.rowCount} rows, seq ${manifest.firstSeq}..${manifest.lastSeq}, ${manifest.bytes} bytes)`);
        await options.beforeVerify?.({ uri, localPath: destination.kind === 'local' ? uri : undefined, manifest });

        let readBack: Buffer;
        try {
          readBack = await sink.read(fileName);
        } catch (cause) {
          throw new ArchiveError('verification_failed', `could not read ${uri} back: ${messageOf(cause)}; nothing deleted`, { cause });
        }
        try {
          await verifyArchiveBytes(readBack, {
            sha256: manifest.sha256,
            rowCount: manifest.rowCount,
            firstSeq: manifest.firstSeq,
            lastSeq: manifest.lastSeq,
            lastHash: manifest.lastHash,
            anchorHash: manifest.anchorBefore.hash,
          });
        } catch (error) {
          if (error instanceof ArchiveError) {
            throw new ArchiveError(error.code, `${error.message} (${uri}); nothing deleted`, { cause: error });
          }
          throw error;
        }
        log(`verified ${uri}: checksum, ${manifest.rowCount} rows, chain from the anchor`);

        const manifestName = `${fileName}.manifest.json`;
        try {
          await sink.write(manifestName, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`, 'utf8'), 'application/json');
        } catch (cause) {
          throw new ArchiveError('write_failed', `could not write the manifest ${sink.uriOf(manifestName)}: ${messageOf(cause)}; nothing deleted`, {
            cause,
          });
        }

        let deleted = 0;
        if (!dryRun) {
          try {
            deleted = await connection.transaction(async (tx) => {
              const count = await tx.oneFirst(sql.type(z.object({ deleted: z.string() }))`
                SELECT archive_security_events(${manifest.lastSeq}::bigint, ${String(manifest.rowCount)}::bigint, ${manifest.lastHash})::text AS deleted`);
              await options.recordAdminAction(tx, {
                actor: ARCHIVE_ACTOR,
                action: ARCHIVE_ACTION,
                target: uri.slice(0, 200),
                details: {
                  file: uri,
                  manifest: sink.uriOf(manifestName),
                  rowCount: manifest.rowCount,
                  deleted: Number(count),
                  firstSeq: manifest.firstSeq,
                  lastSeq: manifest.lastSeq,
                  lastHash: manifest.lastHash,
                  anchorBefore: manifest.anchorBefore,
                  sha256: manifest.sha256,
                  bytes: manifest.bytes,
                  cutoff: manifest.cutoff,
                },
                requestId: runId,
                ip: null,
              });
              return Number(count);
            });
          } catch (cause) {
            throw new ArchiveError(
              'delete_refused',
              `the database refused the cut through seq ${manifest.lastSeq} (${messageOf(cause)}); nothing deleted — ${uri} is an unused copy`,
              { cause },
            );
          }
          log(`deleted ${deleted} rows through seq ${manifest.lastSeq}; the anchor is now ${manifest.lastHash}`);
        }
        batches.push({ uri, manifestUri: sink.uriOf(manifestName), manifest, deleted });
        // A dry run deletes nothing, so a next batch would be the same rows again.
        if (dryRun) {
          more = exported.more;
          break;
        }
        if (!exported.more) break;
      }
    } finally {
      await connection.query(sql.unsafe`SELECT pg_advisory_unlock(${ARCHIVE_LOCK_KEY}::bigint)`).catch(() => undefined);
    }
    const archived = batches.reduce((sum, batch) => sum + batch.deleted, 0);
    const chainAfter = !dryRun && archived > 0 ? await createSecurityAuditStore(options.pool).verifyChain() : null;
    return { cutoff: cutoff.toISOString(), dryRun, batches, archived, more, chainAfter };
  });
};

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error)).split('\n')[0]!.slice(0, 300);

// ---------------------------------------------------------------------------------------------
// The database settings of the archive job

/**
 * The database settings for the archive job from an environment (contract §9: DATABASE_URL or
 * DB_HOST/DB_PORT/DB_NAME/DB_USER + DB_PASSWORD(_SECRET_REF), DB_SSLMODE, DB_SSL_ROOT_CERT),
 * parsed with the application's own schema. Unlike the service it needs no JWT/ops/TOTP secret.
 * The pool is small and statements may run longer (the routine verifies and deletes a batch).
 * @throws {ConfigError} naming the variable.
 */
export const archiveDatabaseConfig = async (
  environment: Record<string, string | undefined>,
  options: { accessSecret?: SecretAccessor } = {},
): Promise<{ database: Config['database']; hotDays: number }> => {
  const env = parseEnvironment(environment);
  let password: string | undefined;
  if (env.DB_PASSWORD_SECRET_REF !== undefined) {
    if (env.DB_PASSWORD !== undefined) throw new ConfigError('DB_PASSWORD', 'conflicts with DB_PASSWORD_SECRET_REF; set one of them');
    let accessor = options.accessSecret;
    let close: (() => Promise<void>) | undefined;
    if (accessor === undefined) {
      const { createSecretManagerAccessor } = await import('../config/secret-manager.js');
      const created = await createSecretManagerAccessor({ emulatorHost: env.SECRET_MANAGER_EMULATOR_HOST });
      accessor = created;
      close = created.close;
    }
    try {
      password = (await accessor(env.DB_PASSWORD_SECRET_REF)).replace(/\r?\n$/, '');
    } catch {
      throw new ConfigError('DB_PASSWORD_SECRET_REF', 'could not be read from Secret Manager');
    } finally {
      await close?.().catch(() => undefined);
    }
  } else if (env.DB_PASSWORD !== undefined) {
    if (!env.ALLOW_PLAIN_ENV_SECRETS) {
      throw new ConfigError('DB_PASSWORD', 'is a plain-env secret, refused unless ALLOW_PLAIN_ENV_SECRETS=true; use DB_PASSWORD_SECRET_REF');
    }
    password = env.DB_PASSWORD;
  }

  let connectionUri: string;
  if (env.DB_HOST !== undefined) {
    if (password === undefined) throw new ConfigError('DB_PASSWORD_SECRET_REF', 'is required when DB_HOST is set');
    const url = new URL('postgres://placeholder');
    url.hostname = env.DB_HOST;
    url.port = String(env.DB_PORT);
    url.username = env.DB_USER ?? '';
    url.password = password;
    url.pathname = `/${env.DB_NAME ?? ''}`;
    connectionUri = url.toString();
  } else {
    if (env.DATABASE_URL === undefined) throw new ConfigError('DATABASE_URL', 'is required (or DB_HOST, DB_NAME, DB_USER and a DB password)');
    const url = new URL(env.DATABASE_URL);
    const urlSslMode = url.searchParams.get('sslmode');
    if (urlSslMode !== null && urlSslMode !== env.DB_SSLMODE) {
      throw new ConfigError('DATABASE_URL', `has an sslmode parameter that conflicts with DB_SSLMODE=${env.DB_SSLMODE}`);
    }
    url.searchParams.delete('sslmode');
    if (password !== undefined) url.password = password;
    connectionUri = url.toString();
  }

  let sslRootCert: string | undefined;
  if (env.DB_SSL_ROOT_CERT !== undefined) {
    try {
      sslRootCert = readFileSync(env.DB_SSL_ROOT_CERT, 'utf8');
    } catch {
      throw new ConfigError('DB_SSL_ROOT_CERT', 'names a file that cannot be read');
    }
  }
  return {
    database: {
      connectionUri,
      sslMode: env.DB_SSLMODE,
      sslRootCert,
      poolSize: 2,
      statementTimeoutMs: Math.max(env.DB_STATEMENT_TIMEOUT_MS, 300_000),
      connectTimeoutMs: env.DB_CONNECT_TIMEOUT_MS,
    },
    hotDays: env.SECURITY_AUDIT_HOT_DAYS,
  };
};
