/**
 * `npm start` (app/local.ts) on a disk that is full or read-only: one clear line on stderr, a
 * non-zero exit, no stack trace, nothing left running (no crash loop: the process ends once,
 * promptly, and starting again fails the same way).
 *
 * Real filesystems: small tmpfs mounts (this suite runs as root; `mount` needs CAP_SYS_ADMIN).
 * Where mounting is not permitted the full-disk cases cannot be simulated without a privileged
 * helper; they are reported as such (t.log) and the read-only case runs with file permissions
 * instead, as an unprivileged user.
 */
import { execFile, spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';

const root = fileURLToPath(new URL('..', import.meta.url));
const run = promisify(execFile);
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

const portAnswers = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

type Run = { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number };

/** Runs `npm start`'s entry to completion (or kills it after `timeoutMs`) with only PATH, HOME and `env`. */
const startLocal = (env: Record<string, string>, options: { uid?: number; gid?: number; timeoutMs?: number; untilListening?: boolean } = {}) =>
  new Promise<Run & { stop?: () => Promise<Run> }>((resolve) => {
    const started = performance.now();
    const child = spawn(process.execPath, ['--import', 'tsx', 'app/local.ts'], {
      cwd: root,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.gid }),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const exited = new Promise<Run>((done) =>
      child.on('close', (code, signal) => done({ code, signal, stdout, stderr, ms: performance.now() - started })),
    );
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    void exited.then((result) => {
      clearTimeout(timer);
      resolve(result);
    });
    if (options.untilListening) {
      const poll = setInterval(() => {
        if (!/Karaxas API listening on/.test(stdout)) return;
        clearInterval(poll);
        resolve({
          code: null,
          signal: null,
          stdout,
          stderr,
          ms: performance.now() - started,
          stop: async () => {
            child.kill('SIGTERM');
            return exited;
          },
        });
      }, 50);
      void exited.then(() => clearInterval(poll));
    }
  });

/** The contract for a refusal: a non-zero exit of its own (no signal), one line on stderr, no stack, no URL. */
const assertOneLineFailure = (t: ExecutionContext, result: Run, pattern: RegExp, code?: number) => {
  t.is(result.signal, null, 'it exits by itself, promptly');
  t.not(result.code, 0);
  if (code !== undefined) t.is(result.code, code, result.stderr);
  t.regex(result.stderr, /^[^\n]+\n$/, `exactly one line: ${JSON.stringify(result.stderr)}`);
  t.regex(result.stderr, pattern);
  t.notRegex(result.stderr + result.stdout, /^\s+at /m, 'no stack trace');
  t.notRegex(result.stdout, /listening/);
  t.true(result.ms < 45_000, `exited after ${Math.round(result.ms)} ms`);
};

let scratch: string;
const mounts: string[] = [];

test.before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'karaxas-fault-disk-'));
  // World-traversable only: the embedded server's OS user must reach its data when we are root.
  await chmod(scratch, 0o711);
});

test.after.always(async () => {
  for (const mount of mounts.reverse()) await run('umount', ['-l', mount]).catch(() => undefined);
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** Mounts a tmpfs of `size` at a fresh folder; undefined (with the reason) when not permitted. */
const tmpfs = async (name: string, size: string): Promise<{ path: string } | { reason: string }> => {
  const path = join(scratch, name);
  await mkdir(path, { mode: 0o711 });
  if (userInfo().uid !== 0) return { reason: 'not running as root, so no tmpfs can be mounted' };
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0711`, 'tmpfs', path]);
  } catch (error) {
    return { reason: `mount -t tmpfs is not permitted here (${String((error as { stderr?: string }).stderr ?? error).trim()})` };
  }
  mounts.push(path);
  return { path };
};

/** Fills the filesystem holding `directory` until writes fail with ENOSPC. */
const fill = async (directory: string) => {
  const handle = await open(join(directory, 'filler'), 'w');
  const block = Buffer.alloc(256 * 1024, 1);
  try {
    for (;;) await handle.write(block);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
  } finally {
    await handle.close().catch(() => undefined);
  }
  // Whatever smaller pieces still fit, too.
  const small = await open(join(directory, 'filler-small'), 'w');
  try {
    for (;;) await small.write(Buffer.alloc(4096, 1));
  } catch {
    // full
  } finally {
    await small.close().catch(() => undefined);
  }
};

/**
 * Full-disk cases need a tmpfs, which only root can mount: they exist where the suite runs as
 * root (these machines and CI) and are not registered elsewhere (said once in the output).
 */
const rootOnly: typeof test = (userInfo().uid === 0 ? test : Object.assign(() => undefined, test)) as typeof test;
if (userInfo().uid !== 0) console.log('fault-disk: not root, so the tmpfs full-disk cases are not registered');

const localEnv = async (dataDirectory: string) => {
  const pgPort = await freePort();
  return { pgPort, env: { KARAXAS_DATA_DIR: dataDirectory, KARAXAS_LOCAL_PG_PORT: String(pgPort), PORT: String(await freePort()), HOST: '127.0.0.1', LOG_LEVEL: 'warn' } };
};

rootOnly('a completely full disk: one line naming KARAXAS_DATA_DIR and ENOSPC, exit 78, the same on a second start, and a normal start once space is freed', async (t) => {
  t.timeout(90_000);
  const mount = await tmpfs('full', '128m');
  if ('reason' in mount) return t.fail(`full disk not simulated: ${mount.reason}`);
  await fill(mount.path);
  const { env } = await localEnv(join(mount.path, '.data'));
  for (const attempt of ['first', 'second']) {
    const result = await startLocal(env);
    assertOneLineFailure(t, result, /^Invalid configuration: KARAXAS_DATA_DIR \(.+\) is not writable or is full \(ENOSPC\)\n$/, EX_CONFIG);
    t.log(`${attempt} start: ${result.stderr.trim()}`);
  }
  // A failed first start must leave nothing behind that breaks the next one (it once left an empty secrets file).
  await rm(join(mount.path, 'filler'), { force: true });
  await rm(join(mount.path, 'filler-small'), { force: true });
  const freed = await startLocal(env, { untilListening: true });
  t.truthy(freed.stop, `npm start did not come up once space was freed: ${freed.stderr}`);
  if (freed.stop) {
    const url = /Karaxas API listening on (\S+)/.exec(freed.stdout)?.[1];
    t.is((await fetch(`${url}/readyz`)).status, 200);
    t.is((await freed.stop()).code, 0);
  }
});

rootOnly('a disk too small for the database: initdb fails with one line saying so, exit 1, nothing left running', async (t) => {
  const mount = await tmpfs('small', '16m');
  if ('reason' in mount) return t.fail(`small disk not simulated: ${mount.reason}`);
  const { env, pgPort } = await localEnv(join(mount.path, '.data'));
  for (const attempt of ['first', 'second']) {
    const result = await startLocal(env);
    assertOneLineFailure(t, result, /No space left on device/);
    t.false(await portAnswers(pgPort), 'no database left running');
    t.log(`${attempt} start (exit ${result.code}): ${result.stderr.trim().slice(0, 200)}`);
  }
});

test('a working .data whose disk then fills up, then turns read-only: each start fails with one line, then works again once fixed', async (t) => {
  t.timeout(120_000);
  const mount = await tmpfs('data', '256m');
  if ('reason' in mount) {
    // Without a mount: a read-only data folder by permissions, as an unprivileged user.
    t.log(`full and read-only filesystems not simulated: ${mount.reason}; checking a read-only folder by permissions instead`);
    const readOnly = join(scratch, 'read-only');
    await mkdir(join(readOnly, '.data'), { recursive: true, mode: 0o555 });
    await chmod(join(readOnly, '.data'), 0o555);
    const identity = userInfo().uid === 0 ? { uid: Number((await run('id', ['-u', 'nobody'])).stdout.trim()), gid: Number((await run('id', ['-g', 'nobody'])).stdout.trim()) } : {};
    const { env } = await localEnv(join(readOnly, '.data'));
    assertOneLineFailure(t, await startLocal({ ...env, HOME: readOnly }, identity), /^Invalid configuration: KARAXAS_DATA_DIR \(.+\) is not writable/, EX_CONFIG);
    return;
  }
  const dataDirectory = join(mount.path, '.data');
  const { env, pgPort } = await localEnv(dataDirectory);

  // Baseline: it starts, serves and stops.
  const working = await startLocal(env, { untilListening: true });
  t.truthy(working.stop, `npm start did not come up: ${working.stderr}`);
  const url = /Karaxas API listening on (\S+)/.exec(working.stdout)?.[1];
  t.is((await fetch(`${url}/readyz`)).status, 200);
  const stopped = await working.stop!();
  t.is(stopped.code, 0, stopped.stderr);

  // The disk fills up.
  await fill(mount.path);
  const full = await startLocal(env);
  assertOneLineFailure(t, full, /(disk|space|full)/i);
  t.false(await portAnswers(pgPort), 'no database left running');
  t.log(`full disk (exit ${full.code}): ${full.stderr.trim().slice(0, 200)}`);
  await rm(join(mount.path, 'filler'), { force: true });
  await rm(join(mount.path, 'filler-small'), { force: true });

  // The filesystem turns read-only.
  await run('mount', ['-o', 'remount,ro', mount.path]);
  const readOnly = await startLocal(env);
  assertOneLineFailure(t, readOnly, /^Invalid configuration: KARAXAS_DATA_DIR \(.+\) is not writable or is full \(EROFS\)\n$/, EX_CONFIG);
  t.false(await portAnswers(pgPort), 'no database left running');
  t.log(`read-only filesystem: ${readOnly.stderr.trim()}`);

  // Fixed: writable again, and the same data starts.
  await run('mount', ['-o', 'remount,rw', mount.path]);
  const again = await startLocal(env, { untilListening: true });
  t.truthy(again.stop, `npm start did not come up again: ${again.stderr}`);
  const againUrl = /Karaxas API listening on (\S+)/.exec(again.stdout)?.[1];
  t.is((await fetch(`${againUrl}/readyz`)).status, 200);
  t.is((await again.stop!()).code, 0);
});
