/**
 * Property-based fuzzing of every HTTP route (fast-check). The routes come from the service's own
 * `/openapi.json`, so a route added later is fuzzed without touching this file. For each one,
 * requests are generated with schema-shaped, mutated and junk bodies (wrong types, huge strings,
 * deep nesting, `__proto__` / `constructor.prototype` keys, non-JSON), random content types and
 * charsets, random headers, query strings and path parameters, with and without valid
 * credentials. Every answer must be below 500, every error the exact envelope, nothing internal
 * leaked; afterwards the server logged no error and Object.prototype is untouched.
 *
 * At least 20,000 generated cases per run (numRuns is explicit per route). Seeds: FUZZ_SEED
 * reproduces a run; on failure fast-check prints the seed, path and counterexample.
 */
import { Agent, request, type IncomingHttpHeaders } from 'node:http';
import test from 'ava';
import fc from 'fast-check';
import { envelopeProblems, findLeak } from '../app/pentest/leaks.js';
import { createApi } from './support/api.js';
import { startTestService } from './support/service.js';

const TOTAL_CASES = 20_000;
const CONCURRENCY = 6;
const BODY_LIMIT = 64 * 1024;

type JsonSchema = {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  enum?: unknown[];
  format?: string;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  $ref?: string;
  nullable?: boolean;
};

type Operation = {
  method: string;
  path: string;
  security?: Array<Record<string, unknown>>;
  parameters?: Array<{ in: string; name: string; schema?: JsonSchema }>;
  requestBody?: { content?: { 'application/json'?: { schema?: JsonSchema } } };
};

type FuzzRequest = { method: string; path: string; headers: Record<string, string>; body?: Buffer; oversized: boolean; label: string };

// ---- arbitraries -------------------------------------------------------------------------------

/** Printable ASCII: what an HTTP header value can carry. */
const headerText = (maxLength = 80) => fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((code) => String.fromCharCode(code)), maxLength });

const hugeString = fc.integer({ min: 1_000, max: 80_000 }).map((length) => 'x'.repeat(length));

/** Values of the wrong kind, awkward sizes and awkward characters. */
const junkValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.constantFrom('', ' ', '\u0000', '\u202e', '\ud800', 'null', 'undefined', 'NaN', '-1', '1e309', "' OR '1'='1", '<script>', '../../etc/passwd', '%00', '{{7*7}}', '${7*7}'),
  fc.integer(),
  fc.double(),
  fc.bigInt().map((value) => Number(value)),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.oneof(fc.string(), fc.integer()), { maxLength: 5 }),
  fc.dictionary(fc.string({ maxLength: 10 }), fc.oneof(fc.string(), fc.integer(), fc.constant(null)), { maxKeys: 4 }),
  hugeString,
);

/** A value shaped like `schema` (best effort), for bodies that get past the first validation layer. */
const fromSchema = (schema: JsonSchema | undefined, depth = 0): fc.Arbitrary<unknown> => {
  if (!schema || depth > 4) return junkValue;
  const variants = schema.anyOf ?? schema.oneOf;
  if (variants) return fc.oneof(...variants.map((variant) => fromSchema(variant, depth + 1)));
  if (schema.allOf) return fromSchema(schema.allOf[0], depth + 1);
  if (schema.enum) return fc.constantFrom(...schema.enum);
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  switch (type) {
    case 'object': {
      const properties = schema.properties ?? {};
      const required = new Set(schema.required ?? []);
      const record: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [key, value] of Object.entries(properties)) record[key] = fromSchema(value, depth + 1);
      return fc.record(record, { requiredKeys: [...required].filter((key) => key in properties) });
    }
    case 'array':
      return fc.array(fromSchema(schema.items, depth + 1), { maxLength: 4 });
    case 'integer':
      return fc.integer({ min: schema.minimum ?? -1_000, max: schema.maximum ?? 1_000_000 });
    case 'number':
      return fc.double({ min: schema.minimum ?? -1e6, max: schema.maximum ?? 1e6, noNaN: true });
    case 'boolean':
      return fc.boolean();
    case 'string': {
      if (schema.format === 'uuid') return fc.uuid();
      if (schema.format === 'email') return fc.emailAddress();
      if (schema.format === 'date-time') return fc.date({ min: new Date('2000-01-01'), max: new Date('2100-01-01'), noInvalidDate: true }).map((date) => date.toISOString());
      if (schema.pattern) {
        try {
          return fc.stringMatching(new RegExp(schema.pattern));
        } catch {
          return fc.string();
        }
      }
      return fc.string({ minLength: schema.minLength ?? 0, maxLength: Math.min(schema.maxLength ?? 80, 300) });
    }
    default:
      return junkValue;
  }
};

/** Bodies that try to pollute prototypes, as raw JSON text (object literals would set the real prototype). */
const pollutionBody = fc.constantFrom(
  '{"__proto__":{"fuzzPolluted":true}}',
  '{"constructor":{"prototype":{"fuzzPolluted":true}}}',
  '{"email":"a@b.co","password":"password-password","__proto__":{"isAdmin":true,"fuzzPolluted":true}}',
  '{"text":"hi","__proto__":{"fuzzPolluted":true},"constructor":{"prototype":{"fuzzPolluted":true}}}',
  '[{"__proto__":{"fuzzPolluted":true}}]',
  '{"a":{"__proto__":{"__proto__":{"fuzzPolluted":true}}}}',
);

const deepNesting = fc.integer({ min: 50, max: 20_000 }).chain((depth) =>
  fc.constantFrom(`${'['.repeat(depth)}${']'.repeat(depth)}`, `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`, `${'['.repeat(depth)}`),
);

/** A body as bytes, from a route's schema (valid-shaped, mutated) or from nowhere (junk). */
const bodyFor = (schema: JsonSchema | undefined): fc.Arbitrary<Buffer | undefined> => {
  const shaped = fromSchema(schema);
  const mutated = fc
    .tuple(shaped, fc.string({ maxLength: 12 }), junkValue, fc.boolean())
    .map(([value, key, junk, replace]) => {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return junk;
      const copy: Record<string, unknown> = { ...(value as Record<string, unknown>) };
      const keys = Object.keys(copy);
      if (replace && keys.length > 0) copy[keys[key.length % keys.length]!] = junk;
      else copy[key] = junk;
      return copy;
    });
  const text = fc.oneof(
    { weight: 4, arbitrary: shaped.map((value) => JSON.stringify(value) ?? 'null') },
    { weight: 4, arbitrary: mutated.map((value) => JSON.stringify(value) ?? 'null') },
    { weight: 2, arbitrary: fc.jsonValue().map((value) => JSON.stringify(value)) },
    { weight: 2, arbitrary: pollutionBody },
    { weight: 1, arbitrary: deepNesting },
    { weight: 1, arbitrary: fc.string() },
    { weight: 1, arbitrary: fc.constantFrom('{', '{"a":', 'nul', '"unterminated', '{"a":1,}', '\ufeff{}', '{}', '[]', 'null', '0', '""') },
    { weight: 1, arbitrary: hugeString.map((value) => JSON.stringify({ text: value, email: value })) },
  );
  return fc.oneof(
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 12, arbitrary: text.map((value) => Buffer.from(value, 'utf8')) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 64 }).map((bytes) => Buffer.from(bytes)) },
  );
};

const contentType = fc.oneof(
  { weight: 10, arbitrary: fc.constant('application/json') },
  { weight: 3, arbitrary: fc.constant('application/json; charset=utf-8') },
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      'application/json; charset=latin1',
      'application/json; charset=utf-16',
      'APPLICATION/JSON',
      'application/json;;',
      'application/vnd.api+json',
      'text/plain',
      'text/json',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=fuzz',
      'application/xml',
      '*/*',
      '',
    ),
  },
  { weight: 1, arbitrary: headerText(40) },
);

const pathSegment = (schema: JsonSchema | undefined) =>
  fc.oneof(
    { weight: 6, arbitrary: fromSchema(schema).map((value) => encodeURIComponent(String(value))) },
    { weight: 3, arbitrary: fc.string({ minLength: 1, maxLength: 60 }).map((value) => encodeURIComponent(value)) },
    {
      weight: 2,
      arbitrary: fc.constantFrom('..', '%2e%2e', '%2F', '%00', '%E0%A4%A', '%', '%%', 'a%2Fb', '%C0%AE', '~', "'", '%27%20OR%201%3D1', encodeURIComponent('\u202e'), 'x'.repeat(3_000)),
    },
  );

const queryString = (parameters: Array<{ name: string; schema?: JsonSchema }>) => {
  const known = parameters.map((parameter) => parameter.name);
  const key = fc.oneof(
    ...(known.length > 0 ? [{ weight: 4, arbitrary: fc.constantFrom(...known) }] : []),
    { weight: 2, arbitrary: fc.string({ minLength: 1, maxLength: 12 }) },
    { weight: 1, arbitrary: fc.constantFrom('__proto__', '__proto__[fuzzPolluted]', 'constructor[prototype][fuzzPolluted]', 'token', 'access_token', 'limit[]', 'a.b') },
  );
  const value = fc.oneof(
    { weight: 3, arbitrary: fc.string({ maxLength: 40 }) },
    { weight: 2, arbitrary: fc.integer().map(String) },
    { weight: 1, arbitrary: fc.uuid() },
    { weight: 1, arbitrary: fc.constantFrom('', '-1', '0', '1e3', 'NaN', 'true', '[]', '{}', 'x'.repeat(5_000)) },
    ...parameters.map((parameter) => ({ weight: 1, arbitrary: fromSchema(parameter.schema).map(String) })),
  );
  return fc.array(fc.tuple(key, value), { maxLength: 6 }).map((pairs) => {
    if (pairs.length === 0) return '';
    const search = new URLSearchParams();
    for (const [name, entry] of pairs) search.append(name, entry);
    return `?${search.toString()}`;
  });
};

// ---- the test ----------------------------------------------------------------------------------

test('the leak detector ignores the request id the client chose (echoed per contract), and only that', (t) => {
  const body = (requestId: string, message = 'Request is invalid.') => JSON.stringify({ error: { code: 'validation_failed', message, requestId } });
  t.is(findLeak(body('V8'), { 'x-request-id': 'V8' }), undefined, 'a client id that looks like a runtime name');
  t.is(findLeak(body('koa'), { 'x-request-id': 'koa' }), undefined);
  t.truthy(findLeak(body('V8')), 'without headers the echoed id is scanned too');
  t.truthy(findLeak(body('V8'), { 'x-request-id': 'other' }), 'an id the client did not send is scanned');
  t.truthy(findLeak(body('V8', 'slonik failed'), { 'x-request-id': 'V8' }), 'the rest of the body still is');
});

test('every route of /openapi.json under fuzzed requests: never a 5xx, always the envelope, never an internal', async (t) => {
  t.timeout(240_000);
  const service = await startTestService(t, { LOG_LEVEL: 'error', CHAT_RATE_LIMIT_MAX: '1000', CHAT_RATE_LIMIT_WINDOW_SECONDS: '1' });
  const api = createApi(service.url);
  const document = (await api.get<{ paths: Record<string, Record<string, Operation>> }>('/openapi.json')).body;
  const operations: Operation[] = [];
  for (const [path, methods] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(methods)) operations.push({ ...operation, method: method.toUpperCase(), path });
  }
  t.true(operations.length >= 25, `the document lists the routes (${operations.length})`);

  // Valid credentials, so that generated requests also get past authentication.
  const account = await api.register();
  let session = await api.login(account);
  let relogins = 0;
  const opsToken = service.config.secrets.opsApiToken;

  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY * 2 });
  t.teardown(() => agent.destroy());
  const send = (fuzz: FuzzRequest) =>
    new Promise<{ status: number; headers: IncomingHttpHeaders; text: string } | { error: string }>((resolve) => {
      const req = request(`${service.url}${fuzz.path}`, { method: fuzz.method, headers: fuzz.headers, agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (error) => resolve({ error: error.message }));
      });
      req.setTimeout(15_000, () => req.destroy(new Error('no answer within 15 s')));
      req.on('error', (error: NodeJS.ErrnoException) => resolve({ error: error.code ?? error.message }));
      req.end(fuzz.body);
    });

  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
  t.log(`FUZZ_SEED=${seed} (${operations.length} routes)`);
  const perRoute = Math.ceil(TOTAL_CASES / operations.length);
  let cases = 0;
  const statusCounts = new Map<number, number>();

  const fuzzRoute = async (operation: Operation, index: number) => {
    const pathParameters = (operation.parameters ?? []).filter((parameter) => parameter.in === 'path');
    const queryParameters = (operation.parameters ?? []).filter((parameter) => parameter.in === 'query');
    const bodySchema = operation.requestBody?.content?.['application/json']?.schema;
    const security = Object.keys(operation.security?.[0] ?? {})[0];
    // Routes that end the session they are called with: valid credentials only now and then.
    const revoking = /logout|revoke|disable|force-password-reset|role/.test(operation.path);

    const credential = fc.oneof(
      { weight: 2, arbitrary: fc.constant('none') },
      { weight: revoking ? 1 : security ? 8 : 2, arbitrary: fc.constant('valid') },
      { weight: 2, arbitrary: fc.constant('junk') },
    );
    const arbitrary = fc
      .record({
        method: fc.oneof({ weight: 12, arbitrary: fc.constant(operation.method) }, { weight: 1, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD') }),
        segments: fc.tuple(...pathParameters.map((parameter) => pathSegment(parameter.schema))),
        query: queryString(queryParameters),
        body: fc.oneof({ weight: bodySchema ? 10 : 2, arbitrary: bodyFor(bodySchema) }, { weight: bodySchema ? 1 : 6, arbitrary: fc.constant(undefined) }),
        contentType: fc.option(contentType, { freq: 8 }),
        credential,
        junkAuthorization: fc.oneof(
          headerText(60).map((value) => `Bearer ${value}`),
          fc.constantFrom('Bearer', 'Bearer ', 'bearer x.y.z', 'Basic YWRtaW46YWRtaW4=', 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.', 'Token abc'),
          headerText(40),
        ),
        extraHeaders: fc.dictionary(
          fc.constantFrom('x-request-id', 'x-client-platform', 'x-client-version', 'accept', 'origin', 'x-forwarded-for', 'x-forwarded-proto', 'accept-charset', 'content-encoding', 'expect', 'if-none-match'),
          headerText(60),
          { maxKeys: 4 },
        ),
      })
      .map((generated): FuzzRequest => {
        let path = operation.path;
        pathParameters.forEach((parameter, position) => {
          path = path.replace(`{${parameter.name}}`, generated.segments[position] as string);
        });
        path += generated.query;
        const headers: Record<string, string> = { ...generated.extraHeaders };
        // Compressed bodies are not supported; a bogus Content-Encoding must still be refused cleanly.
        if (generated.contentType !== null) headers['content-type'] = generated.contentType;
        if (generated.credential === 'valid') {
          headers.authorization = `Bearer ${security === 'ops' ? opsToken : session.accessToken}`;
        } else if (generated.credential === 'junk') {
          headers.authorization = generated.junkAuthorization;
        }
        const body = generated.body;
        if (body !== undefined) headers['content-length'] = String(body.length);
        return { method: generated.method, path, headers, body, oversized: (body?.length ?? 0) > BODY_LIMIT, label: `${operation.method} ${operation.path}` };
      });

    const failures: string[] = [];
    const property = fc.asyncProperty(arbitrary, async (fuzz) => {
      try {
        await check(fuzz);
      } catch (error) {
        failures.push((error as Error).message);
        throw error;
      }
    });
    const check = async (fuzz: FuzzRequest) => {
        cases += 1;
        const answer = await send(fuzz);
        if ('error' in answer) {
          // Refusing an oversized body may reset the connection before its 413 can be read.
          if (fuzz.oversized && /ECONNRESET|EPIPE|socket hang up/.test(answer.error)) return;
          throw new Error(`${fuzz.method} ${fuzz.path.slice(0, 120)}: no answer (${answer.error})`);
        }
        statusCounts.set(answer.status, (statusCounts.get(answer.status) ?? 0) + 1);
        const where = `${fuzz.method} ${fuzz.path.slice(0, 120)} → ${answer.status}`;
        if (answer.status >= 500) throw new Error(`${where}: ${answer.text.slice(0, 300)}`);
        if (answer.headers['x-request-id'] === undefined) throw new Error(`${where}: no X-Request-ID`);
        if (answer.status >= 400 && fuzz.method !== 'HEAD') {
          const problems = envelopeProblems(answer.status, answer.headers, answer.text);
          if (problems.length > 0) throw new Error(`${where}: ${problems.join('; ')}`);
          const leak = findLeak(answer.text, answer.headers);
          if (leak) throw new Error(`${where}: shows ${leak.what}: ${leak.excerpt}`);
        }
        if (answer.status === 401 && fuzz.headers.authorization?.endsWith(session.accessToken)) {
          // A fuzzed logout / revocation ended the session: sign in again for the next cases.
          relogins += 1;
          session = await api.login(account);
        }
    };
    try {
      await fc.assert(property, { numRuns: perRoute, seed: seed + index, endOnFailure: true });
    } catch (error) {
      // fast-check's report has the seed, path and counterexample; this adds what was wrong.
      throw new Error(`${(error as Error).message}\nFailure: ${failures.at(-1) ?? 'unknown'}`);
    }
  };

  const started = performance.now();
  const queue = operations.map((operation, index) => ({ operation, index }));
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let next = queue.shift(); next; next = queue.shift()) await fuzzRoute(next.operation, next.index);
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  t.log(
    `${cases} cases over ${operations.length} routes in ${seconds.toFixed(1)} s (${Math.round(cases / seconds)}/s); ${relogins} re-logins; statuses ${JSON.stringify(Object.fromEntries([...statusCounts].sort(([a], [b]) => a - b)))}`,
  );
  t.true(cases >= TOTAL_CASES, `${cases} cases`);

  const prototypeKeys = Object.getOwnPropertyNames(Object.prototype).filter((key) => /polluted|isAdmin/i.test(key));
  t.deepEqual(prototypeKeys, [], 'Object.prototype was not polluted');
  t.is(({} as Record<string, unknown>).fuzzPolluted, undefined);
  const errors = service.logs.entries().filter((entry) => ['ERROR', 'CRITICAL', 'ALERT', 'EMERGENCY'].includes(String(entry.severity)));
  t.deepEqual(errors.map((entry) => `${String(entry.message)} ${JSON.stringify(entry.err ?? '').slice(0, 300)}`), [], 'the server logged no error');
});
