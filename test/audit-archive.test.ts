/**
 * Audit retention on real PostgreSQL (contract §8, §10): `security_event_audit` rows older than
 * the cut go to gzip'd JSON Lines and leave the table through `archive_security_events`; newer
 * rows stay; the chain verifies afterwards (store and `/ops/release/security-audit/verify`); a
 * corrupted export deletes nothing; a second run chains on from the anchor; a gs:// destination
 * through the real @google-cloud/storage client against a local fake GCS endpoint; and the
 * `karaxas-ops archive-security-audit` binary end to end.
 *
 * The tests share one service and database and run serially: each one's cut depends on the
 * anchor the previous one left.
 */
import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';
import { CRC32C } from '@google-cloud/storage';
import test from 'ava';
import {
  ARCHIVE_ACTION,
  ARCHIVE_ACTOR,
  archiveManifestSchema,
  archiveSecurityEvents,
  ArchiveError,
  type ArchiveOptions,
  parseDestination,
  verifyArchiveBytes,
  verifyArchivedFile,
  type ArchivedRow,
} from '../app/audit/archive.js';
import { eventHash } from '../app/audit/store.js';
import { createOpsClient } from '../app/cli/api-client.js';
import { createDatabasePool, type DatabasePool } from '../app/db/pool.js';
import { createOpsStore } from '../app/ops/store.js';
import { testSslMode, withAdminClient } from './support/database.js';
import { useSharedService, type TestService } from './support/service.js';

const shared = useSharedService();
/** The archive as the job runs it: its cuts recorded through the ops store (app/cli wires the same). */
const archive = (options: Omit<ArchiveOptions, 'recordAdminAction'>) =>
  archiveSecurityEvents({ ...options, recordAdminAction: createOpsStore(options.pool).insertAdminAction });

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin', 'karaxas-ops.js');

let pool: DatabasePool | undefined;
const scratch: string[] = [];

test.after.always(async () => {
  await pool?.end();
  for (const directory of scratch) await rm(directory, { recursive: true, force: true });
});

const setup = async () => {
  const service = await shared();
  pool ??= await createDatabasePool({
    connectionUri: service.database.url,
    sslMode: testSslMode(),
    sslRootCert: undefined,
    poolSize: 4,
    statementTimeoutMs: 60_000,
    connectTimeoutMs: 10_000,
  });
  return { service, pool, ops: createOpsClient({ baseUrl: service.url, token: service.config.secrets.opsApiToken }) };
};

const tempDir = async () => {
  const directory = await mkdtemp(join(tmpdir(), 'karaxas-archive-'));
  scratch.push(directory);
  return directory;
};

const query = async <R extends Record<string, unknown>>(service: TestService, text: string, values: unknown[] = []) =>
  withAdminClient(async (client) => (await client.query<R>(text, values)).rows, service.database.name);

/** Appends `n` events the way the application does (the insert trigger chains them); returns their ids in order. */
const seed = async (service: TestService, n: number, label: string) => {
  const ids: string[] = [];
  for (let i = 0; i < n; i += 1) {
    const [row] = await query<{ id: string }>(
      service,
      `INSERT INTO security_event_audit (event_type, user_id, ip, user_agent, request_id, details)
       VALUES ('login_failed', $1, $2, 'archive-test/1.0 "quoted" \\ ünïcödé', $3, $4) RETURNING id`,
      [randomUUID(), i % 2 === 0 ? '203.0.113.7' : '2001:db8::1', `${label}-${i}`, JSON.stringify({ reason: 'bad_password', n: i, nested: { label, list: [1, 'two', null] } })],
    );
    ids.push(row!.id);
  }
  return ids;
};

/** The database clock, as a cut between two seeding rounds. */
const dbNow = async (service: TestService) => {
  const [row] = await query<{ now: string }>(service, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS now");
  return new Date(row!.now);
};

const tableIds = async (service: TestService) =>
  (await query<{ id: string }>(service, 'SELECT id FROM security_event_audit ORDER BY seq')).map((row) => row.id);

const anchorOf = async (service: TestService) =>
  (await query<{ last_seq: string; last_hash: string; archived_rows: string }>(service, 'SELECT last_seq::text, last_hash, archived_rows::text FROM security_event_audit_anchor'))[0]!;

const archiveAdminRows = async (service: TestService) =>
  query<{ actor: string; action: string; target: string; details: Record<string, unknown>; request_id: string }>(
    service,
    'SELECT actor, action, target, details, request_id FROM admin_action_audit WHERE action = $1 ORDER BY created_at',
    [ARCHIVE_ACTION],
  );

const rowsOfFile = async (path: string): Promise<ArchivedRow[]> =>
  gunzipSync(await readFile(path))
    .toString('utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as ArchivedRow);

/** Gets the cut strictly between two rounds: everything seeded before it is older. */
const seedAroundCut = async (service: TestService, oldCount: number, newCount: number, label: string) => {
  const oldIds = await seed(service, oldCount, `${label}-old`);
  await new Promise((resolve) => setTimeout(resolve, 5));
  const cutoff = await dbNow(service);
  await new Promise((resolve) => setTimeout(resolve, 5));
  const newIds = await seed(service, newCount, `${label}-new`);
  return { oldIds, newIds, cutoff };
};

test.serial('rows older than the cut go to verified files and leave the table; newer rows stay; the chain still verifies', async (t) => {
  const { service, pool, ops } = await setup();
  const before = await tableIds(service);
  const { oldIds, newIds, cutoff } = await seedAroundCut(service, 5, 3, 'first');
  const directory = await tempDir();
  const anchorBefore = await anchorOf(service);

  const result = await archive({ pool, destination: directory, cutoff, batchSize: 2 });

  const expectedArchived = [...before, ...oldIds];
  t.is(result.archived, expectedArchived.length);
  t.is(result.batches.length, Math.ceil(expectedArchived.length / 2), 'one file per batch of 2');
  t.false(result.more);
  t.deepEqual(result.chainAfter, { ok: true, checked: newIds.length, firstBrokenId: null });

  // The table holds exactly the newer rows.
  t.deepEqual(await tableIds(service), newIds);

  // The files hold exactly the older rows, in seq order, chained from the anchor.
  const exported: ArchivedRow[] = [];
  for (const batch of result.batches) {
    const rows = await rowsOfFile(batch.uri);
    t.is(rows.length, batch.manifest.rowCount);
    t.is(batch.deleted, rows.length);
    exported.push(...rows);
    const manifest = archiveManifestSchema.parse(JSON.parse(await readFile(batch.manifestUri, 'utf8')));
    t.deepEqual(manifest, batch.manifest);
    t.is(manifest.sha256, createHash('sha256').update(await readFile(batch.uri)).digest('hex'));
    t.is((await verifyArchivedFile(batch.uri)).rows, rows.length);
  }
  t.deepEqual(
    exported.map((row) => row.id),
    expectedArchived,
  );
  t.is(exported[0]!.prevHash, anchorBefore.last_hash);
  for (const row of exported) t.is(eventHash({ ...row, detailsText: row.details, createdAtExact: row.createdAt }), row.hash);
  // Values are the text PostgreSQL hashes: inet with its mask, jsonb text, microseconds.
  t.regex(exported.at(-1)!.ip ?? '', /\/(32|128)$/);
  t.regex(exported.at(-1)!.createdAt, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/);
  t.deepEqual(JSON.parse(exported.at(-1)!.details), { reason: 'bad_password', n: 4, nested: { label: 'first-old', list: [1, 'two', null] } });

  // The anchor moved to the last archived row.
  const anchor = await anchorOf(service);
  t.is(anchor.last_hash, exported.at(-1)!.hash);
  t.is(anchor.last_seq, exported.at(-1)!.seq);

  // One admin_action_audit row per cut, with the file, count, seqs and checksum.
  const adminRows = await archiveAdminRows(service);
  t.is(adminRows.length, result.batches.length);
  for (const [index, row] of adminRows.entries()) {
    const batch = result.batches[index]!;
    t.is(row.actor, ARCHIVE_ACTOR);
    t.is(row.target, batch.uri);
    t.like(row.details, {
      file: batch.uri,
      rowCount: batch.manifest.rowCount,
      firstSeq: batch.manifest.firstSeq,
      lastSeq: batch.manifest.lastSeq,
      lastHash: batch.manifest.lastHash,
      sha256: batch.manifest.sha256,
    });
    t.is(row.request_id, batch.manifest.runId);
  }

  // The ops API's verifier agrees, and its pages still answer.
  t.deepEqual(await ops.verifySecurityAudit(), { ok: true, checked: newIds.length, firstBrokenId: null });
  const audit = await ops.adminAudit({ action: ARCHIVE_ACTION });
  t.is(audit.items.length, result.batches.length);
  t.true(audit.items.every((item) => item.actor === ARCHIVE_ACTOR));
});

test.serial('a corrupted export deletes nothing and records nothing', async (t) => {
  const { service, pool, ops } = await setup();
  const { cutoff } = await seedAroundCut(service, 4, 1, 'corrupt');
  const idsBefore = await tableIds(service);
  const anchorBefore = await anchorOf(service);
  const adminBefore = (await archiveAdminRows(service)).length;
  const directory = await tempDir();

  let written: string | undefined;
  const error = await t.throwsAsync(
    archive({
      pool,
      destination: directory,
      cutoff,
      beforeVerify: async ({ localPath }) => {
        written = localPath!;
        const bytes = await readFile(localPath!);
        bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
        await writeFile(localPath!, bytes);
      },
    }),
    { instanceOf: ArchiveError },
  );
  t.is(error?.code, 'verification_failed');
  t.regex(error?.message ?? '', /SHA-256.*nothing deleted/);
  t.truthy(written);

  t.deepEqual(await tableIds(service), idsBefore, 'every row is still there');
  t.deepEqual(await anchorOf(service), anchorBefore, 'the anchor did not move');
  t.is((await archiveAdminRows(service)).length, adminBefore, 'no archive was recorded');
  t.false((await readdir(directory)).some((name) => name.endsWith('.manifest.json')), 'no manifest for an unverified file');
  t.true((await ops.verifySecurityAudit()).ok);
});

test.serial('the chain check catches a rewritten export even when its checksum is recomputed', async (t) => {
  const { service, pool } = await setup();
  const { cutoff } = await seedAroundCut(service, 3, 1, 'rewrite');
  const directory = await tempDir();
  const idsBefore = await tableIds(service);
  let caught: unknown;
  await archive({ pool, destination: directory, cutoff, dryRun: true }).then(async (result) => {
    // A dry run exports and verifies but deletes nothing.
    t.is(result.archived, 0);
    t.is(result.batches.length, 1);
    t.deepEqual(await tableIds(service), idsBefore);
    const batch = result.batches[0]!;
    const rows = await rowsOfFile(batch.uri);
    rows[1] = { ...rows[1]!, details: '{"reason": "edited"}' };
    const forged = gzipSync(Buffer.from(rows.map((row) => `${JSON.stringify(row)}\n`).join(''), 'utf8'));
    try {
      await verifyArchiveBytes(forged, {
        sha256: createHash('sha256').update(forged).digest('hex'),
        rowCount: batch.manifest.rowCount,
        firstSeq: batch.manifest.firstSeq,
        lastSeq: batch.manifest.lastSeq,
        lastHash: batch.manifest.lastHash,
        anchorHash: batch.manifest.anchorBefore.hash,
      });
    } catch (error) {
      caught = error;
    }
  });
  t.true(caught instanceof ArchiveError);
  t.regex((caught as Error).message, /recomputed hash differs/);
});

test.serial('a second run continues from the anchor the first one left', async (t) => {
  const { service, pool, ops } = await setup();
  const directory = await tempDir();
  // Everything older than now (the rows the previous tests left, and a new round).
  const { oldIds, newIds, cutoff } = await seedAroundCut(service, 2, 2, 'second');
  const anchor = await anchorOf(service);
  const first = await archive({ pool, destination: directory, cutoff });
  t.true(first.archived >= oldIds.length);
  t.is(first.batches[0]!.manifest.anchorBefore.hash, anchor.last_hash);
  t.deepEqual(await tableIds(service), newIds);

  const later = await seed(service, 2, 'third');
  const cut2 = await dbNow(service);
  const second = await archive({ pool, destination: directory, cutoff: cut2 });
  t.is(second.archived, newIds.length + later.length);
  const manifest = second.batches[0]!.manifest;
  t.is(manifest.anchorBefore.hash, first.batches.at(-1)!.manifest.lastHash, 'chains to the previous cut');
  t.is(manifest.anchorBefore.seq, first.batches.at(-1)!.manifest.lastSeq);
  const rows = await rowsOfFile(second.batches[0]!.uri);
  t.is(rows[0]!.prevHash, first.batches.at(-1)!.manifest.lastHash);
  t.deepEqual(await tableIds(service), []);
  // An empty table after the cut verifies (the anchor equals the head).
  t.deepEqual(await ops.verifySecurityAudit(), { ok: true, checked: 0, firstBrokenId: null });

  // Nothing left: a run finds nothing to do.
  const none = await archive({ pool, destination: directory, cutoff: await dbNow(service) });
  t.is(none.batches.length, 0);
  t.is(none.archived, 0);

  // New events chain on the anchor and verify.
  await seed(service, 1, 'after-empty');
  t.true((await ops.verifySecurityAudit()).ok);
});

test.serial('a second archiver waits for nobody: it refuses while another run holds the lock', async (t) => {
  const { service, pool } = await setup();
  const { cutoff } = await seedAroundCut(service, 1, 0, 'busy');
  await withAdminClient(async (client) => {
    await client.query('SELECT pg_advisory_lock(7305114203)');
    try {
      const error = await t.throwsAsync(archive({ pool, destination: await tempDir(), cutoff }), { instanceOf: ArchiveError });
      t.is(error?.code, 'busy');
    } finally {
      await client.query('SELECT pg_advisory_unlock(7305114203)');
    }
  }, service.database.name);
});

test('destinations: local directories and gs:// URIs; anything else is refused', (t) => {
  t.deepEqual(parseDestination('gs://karaxas-prod-audit-archive-1a2b/security-audit'), {
    kind: 'gcs',
    bucket: 'karaxas-prod-audit-archive-1a2b',
    prefix: 'security-audit/',
  });
  t.deepEqual(parseDestination('gs://bucket-x'), { kind: 'gcs', bucket: 'bucket-x', prefix: '' });
  t.is(parseDestination('./archives').kind, 'local');
  t.throws(() => parseDestination('s3://bucket/x'), { instanceOf: ArchiveError });
  t.throws(() => parseDestination('gs://'), { instanceOf: ArchiveError });
});

// ---------------------------------------------------------------------------------------------
// gs:// through the real client against a local fake of the JSON API (simple/multipart upload,
// media download, metadata), with MD5 and CRC32C as GCS reports them.

type FakeObject = { data: Buffer; contentType: string; generation: number };

const readBody = (request: IncomingMessage) =>
  new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks)));
    request.on('error', reject);
  });

const startFakeGcs = async () => {
  const objects = new Map<string, FakeObject>();
  const requests: string[] = [];
  let generation = 1;
  const hashesOf = (data: Buffer) => ({
    md5Hash: createHash('md5').update(data).digest('base64'),
    crc32c: (() => {
      const crc = new CRC32C();
      crc.update(data);
      return crc.toString();
    })(),
  });
  const metadataOf = (bucket: string, name: string, object: FakeObject) => ({
    kind: 'storage#object',
    bucket,
    name,
    id: `${bucket}/${name}/${object.generation}`,
    generation: String(object.generation),
    size: String(object.data.length),
    contentType: object.contentType,
    ...hashesOf(object.data),
  });
  const server: Server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      console.error('fake GCS failed:', error);
      response.writeHead(500, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ error: { code: 500, message: String(error) } }));
    });
  });
  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? '/', 'http://fake');
    requests.push(`${request.method} ${url.pathname}`);
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      response.writeHead(status, { 'content-type': 'application/json', ...headers });
      response.end(JSON.stringify(body));
    };
    const upload = /^\/upload\/storage\/v1\/b\/([^/]+)\/o$/.exec(url.pathname);
    if (request.method === 'POST' && upload) {
      const bucket = decodeURIComponent(upload[1]!);
      const body = await readBody(request);
      const boundary = /boundary="?([^";]+)"?/.exec(request.headers['content-type'] ?? '')?.[1];
      if (url.searchParams.get('uploadType') !== 'multipart' || !boundary) return send(400, { error: { code: 400, message: 'multipart only' } });
      const parts = body
        .toString('latin1')
        .split(`--${boundary}`)
        .slice(1, -1)
        .map((part) => {
          const split = part.indexOf('\r\n\r\n');
          return { headers: part.slice(0, split), body: Buffer.from(part.slice(split + 4, part.length - 2), 'latin1') };
        });
      const metadata = JSON.parse(parts[0]!.body.toString('utf8')) as { name?: string; contentType?: string };
      const name = url.searchParams.get('name') ?? metadata.name ?? '';
      const key = `${bucket}/${name}`;
      if (url.searchParams.get('ifGenerationMatch') === '0' && objects.has(key)) {
        return send(412, { error: { code: 412, message: 'At least one of the pre-conditions you specified did not hold.' } });
      }
      const object = { data: parts[1]!.body, contentType: metadata.contentType ?? 'application/octet-stream', generation: generation++ };
      objects.set(key, object);
      return send(200, metadataOf(bucket, name, object));
    }
    const get = /^\/storage\/v1\/b\/([^/]+)\/o\/(.+)$/.exec(url.pathname);
    if (request.method === 'GET' && get) {
      const bucket = decodeURIComponent(get[1]!);
      const name = decodeURIComponent(get[2]!);
      const object = objects.get(`${bucket}/${name}`);
      if (!object) return send(404, { error: { code: 404, message: 'No such object' } });
      if (url.searchParams.get('alt') === 'media') {
        const hashes = hashesOf(object.data);
        response.writeHead(200, {
          'content-type': object.contentType,
          'content-length': String(object.data.length),
          'x-goog-hash': `crc32c=${hashes.crc32c},md5=${hashes.md5Hash}`,
          'x-goog-stored-content-encoding': 'identity',
          'x-goog-generation': String(object.generation),
        });
        response.end(object.data);
        return;
      }
      return send(200, metadataOf(bucket, name, object));
    }
    send(404, { error: { code: 404, message: `unsupported ${request.method} ${url.pathname}` } });
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    objects,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
};

test.serial('gs:// destinations upload through @google-cloud/storage, are read back and verified, and never replaced', async (t) => {
  const { service, pool, ops } = await setup();
  const gcs = await startFakeGcs();
  t.teardown(gcs.close);
  const { oldIds, newIds, cutoff } = await seedAroundCut(service, 3, 1, 'gcs');
  const before = (await tableIds(service)).filter((id) => !newIds.includes(id));
  const storage = { apiEndpoint: gcs.url, projectId: 'karaxas-test' };

  const result = await archive({ pool, destination: 'gs://karaxas-test-archive/security-audit/', cutoff, storage });
  t.is(result.archived, before.length);
  t.true(oldIds.every((id) => before.includes(id)));
  const batch = result.batches[0]!;
  t.regex(batch.uri, /^gs:\/\/karaxas-test-archive\/security-audit\/security-events-\d{19}-\d{19}-\d{8}T\d{9}Z-[0-9a-f]{8}\.jsonl\.gz$/);
  t.is(batch.manifestUri, `${batch.uri}.manifest.json`);
  const objectName = batch.uri.replace('gs://karaxas-test-archive/', '');
  const stored = gcs.objects.get(`karaxas-test-archive/${objectName}`);
  t.truthy(stored);
  t.is(stored!.contentType, 'application/gzip');
  t.is(createHash('sha256').update(stored!.data).digest('hex'), batch.manifest.sha256);
  t.true(gcs.requests.some((line) => line.startsWith('POST /upload/storage/v1/b/karaxas-test-archive/o')));
  t.true(gcs.requests.some((line) => line.startsWith('GET /storage/v1/b/karaxas-test-archive/o/')), 'read back before the cut');
  t.deepEqual(await tableIds(service), newIds);
  t.is((await verifyArchivedFile(batch.uri, { storage })).rows, batch.manifest.rowCount);
  t.true((await ops.verifySecurityAudit()).ok);

  // An object is never replaced (ifGenerationMatch=0): a second write of the same name fails.
  const { Storage } = await import('@google-cloud/storage');
  const file = new Storage(storage).bucket('karaxas-test-archive').file(objectName);
  await t.throwsAsync(file.save(Buffer.from('x'), { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } }));
});

// ---------------------------------------------------------------------------------------------
// The CLI binary

const runCli = (args: string[], env: Record<string, string | undefined>) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [bin, ...args],
      { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env } as NodeJS.ProcessEnv, timeout: 60_000 },
      (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });

test.serial('karaxas-ops archive-security-audit: dry run, then the cut, with the database settings of the app', async (t) => {
  const { service, ops } = await setup();
  const { newIds, cutoff } = await seedAroundCut(service, 3, 2, 'cli');
  const directory = await tempDir();
  const env = { DATABASE_URL: service.database.url, DB_SSLMODE: testSslMode() };
  const idsBefore = await tableIds(service);

  const dry = await runCli(['archive-security-audit', '--destination', directory, '--before', cutoff.toISOString(), '--dry-run', '--json'], env);
  t.is(dry.code, 0, dry.stderr);
  const dryResult = JSON.parse(dry.stdout) as { dryRun: boolean; archived: number; batches: unknown[] };
  t.true(dryResult.dryRun);
  t.is(dryResult.archived, 0);
  t.is(dryResult.batches.length, 1);
  t.deepEqual(await tableIds(service), idsBefore);

  const run = await runCli(['archive-security-audit', '--destination', directory, '--before', cutoff.toISOString()], env);
  t.is(run.code, 0, run.stderr);
  t.regex(run.stdout, /archived \d+ row\(s\) in 1 file\(s\)/);
  t.regex(run.stdout, /chain after the cut: ok/i);
  t.deepEqual(await tableIds(service), newIds);
  t.true((await ops.verifySecurityAudit()).ok);

  // The hot window comes from SECURITY_AUDIT_HOT_DAYS (or --hot-days): nothing is 180 days old.
  const hot = await runCli(['archive-security-audit', '--destination', directory, '--json'], env);
  t.is(hot.code, 0, hot.stderr);
  t.is((JSON.parse(hot.stdout) as { archived: number }).archived, 0);
  t.deepEqual(await tableIds(service), newIds);

  // verify-archive re-checks a file from its manifest.
  const file = (await readdir(directory)).find((name) => name.endsWith('.jsonl.gz'))!;
  const verified = await runCli(['verify-archive', join(directory, file)], env);
  t.is(verified.code, 0, verified.stderr);
  t.regex(verified.stdout, /ok/);

  // Without database settings: a usage error naming the variable (exit 2), nothing touched.
  const missing = await runCli(['archive-security-audit', '--destination', directory, '--hot-days', '0'], {});
  t.is(missing.code, 2);
  t.regex(missing.stderr, /DATABASE_URL/);
  t.deepEqual(await tableIds(service), newIds);
});
