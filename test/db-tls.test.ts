/**
 * Database TLS per DB_SSLMODE, against real PostgreSQL servers started for this file:
 * one without TLS, one with a certificate for 127.0.0.1/localhost from a throwaway CA, and one
 * whose certificate (same CA) names another host. Certificates come from the `openssl` CLI.
 *
 * Independent of the suite's own server, so CI's second pass (the system PostgreSQL, which may
 * or may not have TLS) runs the same checks.
 */
import { execFile, spawn } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import { sql } from 'slonik';
import { z } from 'zod';
import { loadConfig } from '../app/config/index.js';
import { startEmbeddedDatabase, type EmbeddedDatabase } from '../app/db/embedded.js';
import { createLogger } from '../app/logger.js';
import { BootError, startService, type Service } from '../app/server.js';
import { LogCapture, testEnvironment } from './support/service.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));
const EX_CONFIG = 78;

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

let scratch: string;
let certs: string;
const servers: { plain?: EmbeddedDatabase; tls?: EmbeddedDatabase; otherName?: EmbeddedDatabase } = {};
const caFile = () => join(certs, 'ca.crt');
const otherCaFile = () => join(certs, 'other-ca.crt');

const openssl = (...args: string[]) => run('openssl', args, { cwd: certs });

/** A self-signed CA: `<name>.crt` / `<name>.key`. */
const makeCa = (name: string) =>
  openssl(
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=karaxas test ${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  );

/** A server certificate `<name>.crt` / `<name>.key` signed by `ca`, valid for `altNames`. */
const makeServerCertificate = async (name: string, ca: string, commonName: string, altNames: string) => {
  await writeFile(
    join(certs, `${name}.ext`),
    [
      `subjectAltName=${altNames}`,
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth',
    ].join('\n'),
  );
  await openssl(
    'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${commonName}`,
  );
  await openssl(
    'x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial',
    '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`,
  );
  // PostgreSQL refuses a key readable by group or others, and must own it (it runs as "postgres" when we are root).
  await chmod(join(certs, `${name}.key`), 0o600);
  if (userInfo().uid === 0) {
    const { stdout: uid } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    await chown(join(certs, `${name}.key`), Number(uid.trim()), Number(gid.trim()));
  }
};

const startServer = async (name: string, settings?: Record<string, string>) =>
  startEmbeddedDatabase({ directory: join(scratch, name), port: await freePort(), persistent: false, settings });

const tlsSettings = (name: string) => ({
  ssl: 'on',
  ssl_cert_file: join(certs, `${name}.crt`),
  ssl_key_file: join(certs, `${name}.key`),
});

test.before(async () => {
  // /tmp is world-traversable; our folders grant "execute" only, so the postgres OS user can reach its files.
  scratch = await mkdtemp(join(tmpdir(), 'karaxas-db-tls-'));
  await chmod(scratch, 0o711);
  certs = join(scratch, 'certs');
  await mkdir(certs, { mode: 0o711 });
  await chmod(certs, 0o711);
  // The plain server also makes sure the "postgres" OS user exists before keys are handed to it.
  const [plain] = await Promise.all([
    startServer('pg-plain'),
    (async () => {
      await Promise.all([makeCa('ca'), makeCa('other-ca')]);
    })(),
  ]);
  servers.plain = plain;
  await makeServerCertificate('server', 'ca', 'localhost', 'IP:127.0.0.1,DNS:localhost');
  await makeServerCertificate('elsewhere', 'ca', 'db.elsewhere.invalid', 'DNS:db.elsewhere.invalid');
  [servers.tls, servers.otherName] = await Promise.all([
    startServer('pg-tls', tlsSettings('server')),
    startServer('pg-tls-other-name', tlsSettings('elsewhere')),
  ]);
});

test.after.always(async () => {
  await Promise.all(Object.values(servers).map((server) => server?.stop().catch(() => undefined)));
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

const boot = async (databaseUrl: string, overrides: Record<string, string | undefined>): Promise<Service> => {
  const config = await loadConfig(testEnvironment(databaseUrl, { LOG_LEVEL: 'info', ...overrides }));
  return startService({ config, logger: createLogger(config, new LogCapture()), port: 0 });
};

/** Boots, checks readiness and that the pool's own connection is encrypted, and stops. */
const assertServesOverTls = async (t: ExecutionContext, databaseUrl: string, overrides: Record<string, string>) => {
  const service = await boot(databaseUrl, overrides);
  try {
    const ready = await fetch(`${service.url}/readyz`);
    t.is(ready.status, 200);
    t.deepEqual(await ready.json(), { status: 'ready' });
    const encrypted = await service.pool.oneFirst(
      sql.type(z.object({ ssl: z.boolean() }))`SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`,
    );
    t.true(encrypted, 'the pool connection uses TLS');
  } finally {
    await service.shutdown('test finished');
  }
};

const certificateRefusal = /^Invalid configuration: DB_SSLMODE verify-full: the database server certificate did not verify against DB_SSL_ROOT_CERT$/;

test('DB_SSLMODE=require against a server without TLS is refused at boot with one line', async (t) => {
  const url = servers.plain!.url();
  const error = await t.throwsAsync(boot(url, { DB_SSLMODE: 'require' }), { instanceOf: BootError });
  t.is(
    error?.message,
    'Invalid configuration: DB_SSLMODE require requires TLS, but the database server does not accept TLS connections',
  );

  // The same through the production entry point: exit 78 and exactly one stderr line, no stack.
  const env: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' };
  for (const [name, value] of Object.entries(testEnvironment(url, { DB_SSLMODE: 'require', LOG_LEVEL: 'info', PORT: String(await freePort()) }))) {
    if (value !== undefined) env[name] = value;
  }
  const outcome = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'app/main.ts'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
  t.is(outcome.code, EX_CONFIG, `stderr: ${outcome.stderr}`);
  t.regex(outcome.stderr, /^[^\n]+\n$/, `one line: ${JSON.stringify(outcome.stderr)}`);
  t.true(outcome.stderr.startsWith('Invalid configuration: DB_SSLMODE require requires TLS'));
  t.notRegex(outcome.stderr + outcome.stdout, /^\s+at /m, 'no stack trace');
  t.false((outcome.stderr + outcome.stdout).includes(env.JWT_SECRET!), 'no secret value');
});

test('verify-full with the CA connects, serves /readyz and the pool is encrypted', async (t) => {
  await assertServesOverTls(t, servers.tls!.url(), { DB_SSLMODE: 'verify-full', DB_SSL_ROOT_CERT: caFile() });
});

test('verify-full also accepts the DNS name in the certificate', async (t) => {
  const url = new URL(servers.tls!.url());
  url.hostname = 'localhost';
  // Skip quietly where "localhost" does not resolve to 127.0.0.1 first (the server listens on IPv4 only).
  const { lookup } = await import('node:dns/promises');
  const address = await lookup('localhost', { family: 4 }).catch(() => undefined);
  if (address?.address !== '127.0.0.1') {
    t.pass('localhost does not resolve to 127.0.0.1 here');
    return;
  }
  await assertServesOverTls(t, url.toString(), { DB_SSLMODE: 'verify-full', DB_SSL_ROOT_CERT: caFile() });
});

test('verify-full with a different CA is refused with the certificate message', async (t) => {
  await t.throwsAsync(boot(servers.tls!.url(), { DB_SSLMODE: 'verify-full', DB_SSL_ROOT_CERT: otherCaFile() }), {
    instanceOf: BootError,
    message: certificateRefusal,
  });
});

test('verify-full refuses a certificate for another host name; verify-ca accepts it', async (t) => {
  const url = servers.otherName!.url();
  await t.throwsAsync(boot(url, { DB_SSLMODE: 'verify-full', DB_SSL_ROOT_CERT: caFile() }), {
    instanceOf: BootError,
    message: certificateRefusal,
  });
  await assertServesOverTls(t, url, { DB_SSLMODE: 'verify-ca', DB_SSL_ROOT_CERT: caFile() });
});

test('verify-ca still checks the chain', async (t) => {
  await t.throwsAsync(boot(servers.otherName!.url(), { DB_SSLMODE: 'verify-ca', DB_SSL_ROOT_CERT: otherCaFile() }), {
    instanceOf: BootError,
    message: /^Invalid configuration: DB_SSLMODE verify-ca: the database server certificate did not verify/,
  });
});

test('require against the TLS server connects encrypted without verifying', async (t) => {
  await assertServesOverTls(t, servers.tls!.url(), { DB_SSLMODE: 'require' });
});

test('no secret or password appears in a TLS refusal', async (t) => {
  const url = servers.tls!.url();
  const password = decodeURIComponent(new URL(url).password);
  const error = await t.throwsAsync(boot(url, { DB_SSLMODE: 'verify-full', DB_SSL_ROOT_CERT: otherCaFile() }));
  t.truthy(password);
  t.false(error?.message.includes(password));
  t.false(error?.message.includes(url));
});
