/**
 * `tsx bench/logger-parity.ts`: app/logger.ts redacts in one walk (formatters.log) instead of
 * pino's `redact` option (one walk per path), which cost more than the rest of a small request.
 * This renders a corpus of log calls — nested secrets at every depth, arrays, errors with causes
 * and secret properties, children and grandchildren with secret bindings, class instances with
 * toJSON, circular objects, undefined and falsy values — with the app's logger and with a
 * reference pino configured the way the logger used to be (`redact: { paths: redactPaths }`,
 * the error serializers), and fails on any difference. It also checks that inputs are not
 * modified.
 */
import { Writable } from 'node:stream';
import { isDeepStrictEqual } from 'node:util';
import { pino } from 'pino';
import { createLogger as createNew, redactPaths } from '../app/logger.js';

const severityByLevel: Record<string, string> = { trace: 'DEBUG', debug: 'DEBUG', info: 'INFO', warn: 'WARNING', error: 'ERROR', fatal: 'CRITICAL' };
const createOld = (destination: Writable) =>
  pino(
    {
      level: 'trace',
      messageKey: 'message',
      base: undefined,
      timestamp: () => `,"time":"${new Date().toISOString()}"`,
      formatters: { level: (label) => ({ severity: severityByLevel[label] ?? 'DEFAULT' }) },
      redact: { paths: redactPaths, censor: '[REDACTED]' },
      serializers: { err: pino.stdSerializers.err, error: pino.stdSerializers.err },
    },
    destination,
  );
class Capture extends Writable {
  lines: string[] = [];
  override _write(chunk: Buffer, _encoding: string, done: () => void) {
    this.lines.push(...chunk.toString().split('\n').filter(Boolean));
    done();
  }
}
const oldOut = new Capture();
const newOut = new Capture();
const loggers = [createOld(oldOut), createNew({ logLevel: 'trace' }, newOut)];
class WithSecret extends Error { password = 'hunter2'; config = { token: 'abc', nested: { secret: 's', ok: 1 } }; code = 'E1'; }
const cause = new Error('inner', { cause: new TypeError('deeper') });
class Thing { password = 'p'; visible = 1; toJSON() { return { thing: this.visible, password: this.password }; } }
const corpus: Array<[unknown, string?]> = [
  [{ httpRequest: { requestMethod: 'GET', requestUrl: '/x', status: 200, userAgent: undefined, remoteIp: '1.2.3.4', latency: '0.1s', responseSize: 15 } }, 'GET /x 200'],
  [{ password: 'p', token: 't', ok: 1 }, 'top'],
  [{ password: undefined, ok: 1 }, 'undef top'],
  [{ a: { password: undefined, b: 1 } }, 'undef nested'],
  [{ a: { b: { password: 'x', c: { password: 'deep' } } } }, 'depth'],
  [{ a: { b: { c: { password: 'too deep' } } } }, 'depth4'],
  [{ list: [{ refreshToken: 'r' }, { ok: 1 }], arr: ['x', 'y'] }, 'arrays'],
  [{ req: { headers: { authorization: 'Bearer x', cookie: 'c', 'x-ops-token': 'ops', accept: '*/*' } } }, 'req headers'],
  [{ res: { headers: { 'x-ops-token': 'not redacted' } } }, 'res headers'],
  [{ err: new WithSecret('boom') }, 'err with secrets'],
  [{ error: cause }, 'error with cause'],
  [{ err: 'a string err' }, 'string err'],
  [{ nested: { err: new Error('nested err') } }, 'nested err'],
  [{ thing: new Thing(), date: new Date(0) }, 'class instance'],
  [{ connectionUri: 'postgres://u:p@h/db', opsApiToken: 'o', recoveryCodes: ['a', 'b'], mfaToken: 'm', ticket: 't' }, 'more keys'],
  [{ authorization: { scheme: 'Bearer' }, meta: { cookie: null } }, 'object/null secrets'],
  [{ details: { newPassword: 'n', currentPassword: 'c', 'set-cookie': ['a'] } }, 'more nested'],
  [{ nullProto: Object.assign(Object.create(null), { token: 't', k: 1 }) }, 'null proto'],
  [{ level2: { level3: { password: { a: 1 } } } }, 'object censored at 3'],
  [{ top: [[{ password: 'x' }]] }, 'nested arrays'],
  [{ map: new Map([['password', 'x']]), set: new Set(['a']) }, 'map'],
  [{ getter: Object.defineProperty({ a: 1 }, 'token', { get: () => 'g', enumerable: true }) }, 'getter'],
  [(() => { const circ: Record<string, unknown> = { a: 1 }; circ.self = circ; circ.password = 'p'; return { circ }; })(), 'circular'],
  [{ secret: 0, ticket: false, accessToken: null }, 'falsy secrets'],
];
const snapshot = JSON.stringify(corpus.map(([object]) => (object && typeof object === 'object' && !('circ' in object) ? object : null)));
for (const logger of loggers) {
  for (const [object, message] of corpus) logger.info(object as object, message);
  logger.error(new WithSecret('direct'));
  logger.error(cause, 'msg with error first');
  const child = logger.child({ requestId: 'r-1', password: 'child-secret', nested: { token: 't' } });
  child.warn({ x: 1 }, 'child line');
  child.child({ token: 'grand' }).info('grandchild');
}
const strip = (line: string) => {
  const value = JSON.parse(line) as Record<string, unknown>;
  delete value.time;
  return value;
};
let diffs = 0;
oldOut.lines.forEach((line, index) => {
  const reference = strip(line);
  const actual = strip(newOut.lines[index] ?? '{}');
  if (!isDeepStrictEqual(reference, actual)) {
    diffs += 1;
    console.log(`line ${index} differs\n  pino redact: ${JSON.stringify(reference)}\n  app logger:  ${JSON.stringify(actual)}`);
  }
});
// Not in the shared corpus: pino's redact throws on a Buffer within its wildcard depth
// ("Method get TypedArray.prototype.buffer called on incompatible receiver"); the app's logger
// must log it (typed arrays have no keys to redact).
try {
  createNew({ logLevel: 'info' }, new Capture()).info({ query: { values: [Buffer.from('digest')] }, buf: Buffer.from('x') }, 'buffers');
} catch (error) {
  console.log(`the app logger threw on a Buffer: ${String(error)}`);
  process.exit(1);
}
const untouched = snapshot === JSON.stringify(corpus.map(([object]) => (object && typeof object === 'object' && !('circ' in object) ? object : null)));
console.log(`${oldOut.lines.length} vs ${newOut.lines.length} lines, ${diffs} differences; inputs ${untouched ? 'untouched' : 'MODIFIED'}`);
if (diffs > 0 || oldOut.lines.length !== newOut.lines.length || !untouched) process.exit(1);
