/**
 * The HTTP platform through the real server (issue 2, contract §1–§2): request ids, the error
 * envelope, secure headers, HSTS and client IP behind the trusted proxy, the CORS allowlist, the
 * body size guard, the OpenAPI document and the access log.
 *
 * `node:http` and raw sockets are used where fetch would normalise the thing under test away
 * (raw header values, duplicate headers, CRLF, chunked bodies, Content-Length without a body).
 */
import http from 'node:http';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import test, { type ExecutionContext } from 'ava';
import { z } from 'zod';
import { errorRegistry, type ErrorCode } from '../app/http/errors.js';
import { defineRoute } from '../app/http/route.js';
import { startTestService, type TestService } from './support/service.js';

// ---------------------------------------------------------------------------------------------
// Services under test
// ---------------------------------------------------------------------------------------------

const LIMIT = 2048;
const LISTED_ORIGIN = 'https://game.example.com';
const OTHER_LISTED_ORIGIN = 'https://admin.example.com:8443';
const INTERNAL_MESSAGE = 'secret internal detail /etc/passwd SELECT * FROM users';
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** How many times each test handler ran, by slot: proves rejected requests never reach a handler. */
const calls = new Map<string, number>();
const bump = (slot: string) => calls.set(slot, (calls.get(slot) ?? 0) + 1);
const callsOf = (slot: string) => calls.get(slot) ?? 0;

const slotParams = z.object({ slot: z.string().regex(/^[a-z0-9-]{1,40}$/) });
const bodyErrors = ['validation_failed', 'invalid_json', 'unsupported_media_type', 'payload_too_large'] as const;

const extraRoutes = [
  defineRoute({
    method: 'get',
    path: '/test/boom',
    summary: 'Always throws an error whose message must never reach the client',
    tags: ['test'],
    responses: { 200: { description: 'Never' } },
    errors: [],
    handler: () => {
      bump('boom');
      throw new Error(INTERNAL_MESSAGE);
    },
  }),
  defineRoute({
    method: 'post',
    path: '/test/echo/:slot',
    summary: 'Validates a JSON body',
    tags: ['test'],
    request: {
      params: slotParams,
      body: z
        .object({
          name: z.string().max(8),
          count: z.number().int(),
          kind: z.enum(['alpha', 'beta']),
        })
        .strict(),
    },
    responses: { 200: { description: 'Accepted', body: z.object({ ok: z.literal(true) }) } },
    errors: bodyErrors,
    handler: ({ params }) => {
      bump(params.slot);
      return { status: 200, body: { ok: true } };
    },
  }),
  defineRoute({
    method: 'post',
    path: '/test/sink/:slot',
    summary: 'Accepts any padding, to probe the body size limit',
    tags: ['test'],
    request: { params: slotParams, body: z.object({ pad: z.string() }) },
    responses: { 200: { description: 'Accepted', body: z.object({ received: z.number() }) } },
    errors: bodyErrors,
    handler: ({ params, body }) => {
      bump(params.slot);
      return { status: 200, body: { received: body.pad.length } };
    },
  }),
];

const teardowns: Array<() => Promise<void>> = [];
const owner = { teardown: (fn: () => Promise<void>) => void teardowns.push(fn) };

/** TRUST_PROXY=false (default), small body limit, CORS allowlist, test routes. */
let direct: TestService;
/** TRUST_PROXY=true with TRUSTED_PROXY_HOPS=2: behind GCP's external load balancer. */
let proxied: TestService;

test.before(async () => {
  [direct, proxied] = await Promise.all([
    startTestService(
      owner,
      {
        CORS_ALLOWED_ORIGINS: `${LISTED_ORIGIN}, ${OTHER_LISTED_ORIGIN}`,
        MAX_REQUEST_BODY_BYTES: String(LIMIT),
        TRUST_PROXY: 'false',
        GOOGLE_CLOUD_PROJECT: 'karaxas-test',
      },
      { extraRoutes },
    ),
    startTestService(owner, { TRUST_PROXY: 'true', TRUSTED_PROXY_HOPS: '2', CORS_ALLOWED_ORIGINS: LISTED_ORIGIN }),
  ]);
});

test.after.always(async () => {
  for (const teardown of teardowns.reverse()) await teardown();
});

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

type HttpResult = {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  text: string;
};

/** One request on its own connection via node:http: raw header values, no normalisation. */
const request = (
  service: { url: string },
  path: string,
  options: { method?: string; headers?: Record<string, string | number>; body?: string | Buffer } = {},
): Promise<HttpResult> =>
  new Promise((resolve, reject) => {
    const req = http.request(new URL(path, service.url), { method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          text: Buffer.concat(chunks).toString('utf8'),
        }),
      );
    });
    req.on('error', reject);
    req.end(options.body);
  });

/** How many times a header appears in the raw response. */
const headerCount = (response: { rawHeaders: string[] }, name: string) =>
  response.rawHeaders.filter((value, index) => index % 2 === 0 && value.toLowerCase() === name.toLowerCase()).length;

type RawResponse = {
  status: number;
  headers: Array<[string, string]>;
  header: (name: string) => string | undefined;
  body: string;
  /** The whole response as received, head included. */
  wire: string;
};

const decodeChunked = (body: Buffer): Buffer | undefined => {
  const parts: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const lineEnd = body.indexOf('\r\n', offset);
    if (lineEnd < 0) return undefined;
    const size = Number.parseInt(body.subarray(offset, lineEnd).toString('latin1'), 16);
    if (Number.isNaN(size)) return undefined;
    if (size === 0) return Buffer.concat(parts);
    if (body.length < lineEnd + 2 + size + 2) return undefined;
    parts.push(body.subarray(lineEnd + 2, lineEnd + 2 + size));
    offset = lineEnd + 2 + size + 2;
  }
};

/** A complete HTTP/1.1 response from the bytes so far, or undefined while incomplete. */
const parseRawResponse = (buffer: Buffer, closed: boolean): RawResponse | undefined => {
  const headEnd = buffer.indexOf('\r\n\r\n');
  if (headEnd < 0) return undefined;
  const [statusLine = '', ...lines] = buffer.subarray(0, headEnd).toString('latin1').split('\r\n');
  const headers = lines.map((line): [string, string] => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
  });
  const header = (name: string) => headers.find(([key]) => key === name.toLowerCase())?.[1];
  let body: Buffer | undefined = buffer.subarray(headEnd + 4);
  const length = header('content-length');
  if (length !== undefined) {
    if (body.length < Number(length)) return undefined;
    body = body.subarray(0, Number(length));
  } else if (/chunked/i.test(header('transfer-encoding') ?? '')) {
    body = decodeChunked(body);
    if (body === undefined) return undefined;
  } else if (!closed) {
    return undefined;
  }
  return {
    status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0),
    headers,
    header,
    body: body.toString('utf8'),
    wire: buffer.toString('latin1'),
  };
};

type RawConnection = {
  socket: net.Socket;
  /** Resolves with the first complete response; rejects if the connection closes without one. */
  response: Promise<RawResponse>;
  closed: Promise<void>;
  isClosed: () => boolean;
};

/** A raw TCP connection to the service: bytes go out exactly as written. */
const connectRaw = (service: { url: string }): RawConnection => {
  const { hostname, port } = new URL(service.url);
  const socket = net.connect(Number(port), hostname);
  let received = Buffer.alloc(0);
  let isClosed = false;
  // Resets and EPIPE are expected when the server hangs up on a body it refused.
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const response = new Promise<RawResponse>((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const parsed = parseRawResponse(received, false);
      if (parsed) resolve(parsed);
    });
    void closed.then(() => {
      isClosed = true;
      const parsed = parseRawResponse(received, true);
      if (parsed) resolve(parsed);
      else reject(new Error(`connection closed without a complete response: ${JSON.stringify(received.toString('latin1'))}`));
    });
  });
  response.catch(() => undefined);
  return { socket, response, closed, isClosed: () => isClosed };
};

const within = async <T>(promise: Promise<T>, ms: number, what: string): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
};

/** Sends `payload` as is on a fresh connection and returns the response. */
const rawRequest = async (service: { url: string }, payload: string | Buffer): Promise<RawResponse> => {
  const connection = connectRaw(service);
  connection.socket.write(payload);
  try {
    return await within(connection.response, 5_000, 'a raw response');
  } finally {
    connection.socket.destroy();
  }
};

// ---------------------------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------------------------

type Envelope = { error: { code: string; message: string; requestId: string; details?: Array<Record<string, unknown>> } };

/** The exact contract envelope: only `error`, only code/message/requestId (+details), requestId = header. */
const assertEnvelope = (
  t: ExecutionContext,
  response: { status: number; text: string; requestId: string | undefined; contentType: string | undefined },
  code: ErrorCode,
  options: { details?: boolean } = {},
): Envelope['error'] => {
  t.is(response.status, errorRegistry[code].status, `status for ${code}: ${response.text}`);
  t.is(response.contentType, 'application/json; charset=utf-8');
  const body = JSON.parse(response.text) as Envelope;
  t.deepEqual(Object.keys(body), ['error']);
  t.deepEqual(Object.keys(body.error).sort(), options.details ? ['code', 'details', 'message', 'requestId'] : ['code', 'message', 'requestId']);
  t.is(body.error.code, code);
  t.is(body.error.message, errorRegistry[code].message);
  t.truthy(response.requestId);
  t.is<string | undefined, string | undefined>(body.error.requestId, response.requestId);
  return body.error;
};

const envelopeOf = (t: ExecutionContext, response: HttpResult, code: ErrorCode, options: { details?: boolean } = {}) =>
  assertEnvelope(
    t,
    {
      status: response.status,
      text: response.text,
      requestId: response.headers['x-request-id'] as string | undefined,
      contentType: response.headers['content-type'],
    },
    code,
    options,
  );

const rawEnvelopeOf = (t: ExecutionContext, response: RawResponse, code: ErrorCode) =>
  assertEnvelope(
    t,
    { status: response.status, text: response.body, requestId: response.header('x-request-id'), contentType: response.header('content-type') },
    code,
  );

type LogEntry = Record<string, unknown> & { httpRequest?: Record<string, unknown> };

/** Polls the captured log until an entry matches (log writes may trail the response by a tick). */
const findLog = async (service: TestService, predicate: (entry: LogEntry) => boolean, what: string): Promise<LogEntry> => {
  const deadline = Date.now() + 3_000;
  for (;;) {
    const entry = (service.logs.entries() as LogEntry[]).find(predicate);
    if (entry) return entry;
    if (Date.now() > deadline) throw new Error(`no log line for ${what}`);
    await sleep(20);
  }
};

const accessLogOf = (service: TestService, requestId: string) =>
  findLog(service, (entry) => entry.requestId === requestId && entry.httpRequest !== undefined, `the access log of ${requestId}`);

// ---------------------------------------------------------------------------------------------
// X-Request-ID
// ---------------------------------------------------------------------------------------------

test('a valid inbound X-Request-ID is kept, on the header and in the envelope', async (t) => {
  const valid = ['abc-123', 'A.b:c_d-9', 'x'.repeat(128), '3f0c2f4e-8b1a-4c8e-9a57-0f5b1b7a7e11', '1', 'trace:span.0'];
  for (const id of valid) {
    const response = await request(direct, '/no/such/path', { headers: { 'X-Request-ID': id } });
    t.is(response.headers['x-request-id'], id);
    t.is(headerCount(response, 'x-request-id'), 1);
    t.is(envelopeOf(t, response, 'not_found').requestId, id);
  }
  const ok = await request(direct, '/healthz', { headers: { 'X-Request-ID': 'kept-on-200' } });
  t.is(ok.status, 200);
  t.is(ok.headers['x-request-id'], 'kept-on-200');
});

test('an invalid or missing X-Request-ID is replaced by a fresh UUID', async (t) => {
  const invalid: Record<string, string | undefined> = {
    '129 characters': 'x'.repeat(129),
    '200 characters': 'a'.repeat(200),
    'a space': 'has space',
    'a tab': 'has\ttab',
    'a slash': 'a/b',
    'a semicolon': 'a;b',
    'percent-encoded CRLF': 'abc%0D%0ASet-Cookie:%20session=attacker',
    'escaped CRLF text': 'abc\\r\\nSet-Cookie: x=1',
    'markup': '<script>alert(1)</script>',
    'latin-1 letters': 'caf\u00e9',
    'empty': '',
    'absent': undefined,
  };
  const seen = new Set<string>();
  for (const [label, id] of Object.entries(invalid)) {
    const response = await request(direct, '/no/such/path', { headers: id === undefined ? {} : { 'X-Request-ID': id } });
    const issued = response.headers['x-request-id'] as string;
    t.regex(issued, uuidPattern, label);
    t.not(issued, id, label);
    t.false(seen.has(issued), `${label}: ids are fresh`);
    seen.add(issued);
    t.is(envelopeOf(t, response, 'not_found').requestId, issued, label);
  }
});

test('unicode and duplicated X-Request-IDs (raw socket) are replaced by a fresh UUID', async (t) => {
  const cases: Record<string, Buffer> = {
    'unicode (UTF-8 bytes)': Buffer.from('GET /no/such/path HTTP/1.1\r\nHost: t\r\nX-Request-ID: \u043a\u043b\u044e\u0447-\u{1f600}\r\nConnection: close\r\n\r\n', 'utf8'),
    'right-to-left override': Buffer.from('GET /no/such/path HTTP/1.1\r\nHost: t\r\nX-Request-ID: abc\u202edef\r\nConnection: close\r\n\r\n', 'utf8'),
    'two headers': Buffer.from('GET /no/such/path HTTP/1.1\r\nHost: t\r\nX-Request-ID: first\r\nX-Request-ID: second\r\nConnection: close\r\n\r\n'),
  };
  for (const [label, payload] of Object.entries(cases)) {
    const response = await rawRequest(direct, payload);
    const issued = response.header('x-request-id');
    t.regex(issued ?? '', uuidPattern, label);
    t.is(response.headers.filter(([name]) => name === 'x-request-id').length, 1, label);
    t.is<string | undefined, string | undefined>(rawEnvelopeOf(t, response, 'not_found').requestId, issued, label);
  }
});

test('CRLF in X-Request-ID never injects a response header', async (t) => {
  // CR LF ends the header line: the rest arrives as separate request headers, and nothing of it
  // may come back. The part before the break is all the id there ever was.
  const split = await rawRequest(
    direct,
    'GET /no/such/path HTTP/1.1\r\nHost: t\r\nX-Request-ID: evil id\r\nSet-Cookie: session=attacker\r\nX-Injected: yes\r\nConnection: close\r\n\r\n',
  );
  t.is(split.status, 404);
  t.regex(split.header('x-request-id') ?? '', uuidPattern);
  t.is(split.header('set-cookie'), undefined);
  t.is(split.header('x-injected'), undefined);
  t.false(split.wire.includes('attacker'));
  t.is<string | undefined, string | undefined>(rawEnvelopeOf(t, split, 'not_found').requestId, split.header('x-request-id'));

  const keptPrefix = await rawRequest(
    direct,
    'GET /no/such/path HTTP/1.1\r\nHost: t\r\nX-Request-ID: abc\r\nSet-Cookie: session=attacker\r\nConnection: close\r\n\r\n',
  );
  t.is(keptPrefix.header('x-request-id'), 'abc');
  t.is(keptPrefix.header('set-cookie'), undefined);
  t.false(keptPrefix.wire.includes('attacker'));

  // A CR or LF inside the value (bare, or as obsolete line folding) is refused by the HTTP parser
  // before the application sees it: nothing is reflected.
  for (const value of ['abc\rSet-Cookie: session=attacker', 'abc\nSet-Cookie: session=attacker', 'abc\r\n Set-Cookie: session=attacker']) {
    const response = await rawRequest(direct, `GET /no/such/path HTTP/1.1\r\nHost: t\r\nX-Request-ID: ${value}\r\nConnection: close\r\n\r\n`);
    t.is(response.status, 400, JSON.stringify(value));
    t.is(response.header('set-cookie'), undefined);
    t.false(response.wire.includes('attacker'));
  }
});

// ---------------------------------------------------------------------------------------------
// Error envelope
// ---------------------------------------------------------------------------------------------

test('404 for an unknown path is the exact envelope', async (t) => {
  for (const path of ['/no/such/path', '/healthz/extra', '/%2e%2e/etc/passwd']) {
    const response = await request(direct, path, { headers: { 'X-Request-ID': 'env-404' } });
    const error = envelopeOf(t, response, 'not_found');
    t.deepEqual(JSON.parse(response.text), { error: { code: 'not_found', message: 'Not found.', requestId: 'env-404' } });
    t.is(error.requestId, 'env-404');
  }
});

test('405 for a wrong method is the exact envelope with an Allow header', async (t) => {
  const post = await request(direct, '/healthz', { method: 'POST', headers: { 'X-Request-ID': 'env-405' } });
  envelopeOf(t, post, 'method_not_allowed');
  t.deepEqual(JSON.parse(post.text), {
    error: { code: 'method_not_allowed', message: errorRegistry.method_not_allowed.message, requestId: 'env-405' },
  });
  t.truthy(post.headers.allow);
  t.true((post.headers.allow ?? '').split(/,\s*/).includes('GET'));

  const del = await request(direct, '/test/boom', { method: 'DELETE' });
  envelopeOf(t, del, 'method_not_allowed');
  t.true((del.headers.allow ?? '').split(/,\s*/).includes('GET'));

  const get = await request(direct, '/test/echo/method', { method: 'GET' });
  envelopeOf(t, get, 'method_not_allowed');
  t.true((get.headers.allow ?? '').split(/,\s*/).includes('POST'));
  t.is(callsOf('method'), 0);
});

test('malformed JSON is 400 invalid_json and the handler does not run', async (t) => {
  for (const body of ['{"name": "x",', 'not json', '{"name": "x"}}', '\u0000']) {
    const response = await request(direct, '/test/echo/malformed', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Request-ID': 'env-invalid-json' },
      body,
    });
    t.deepEqual(JSON.parse(response.text), {
      error: { code: 'invalid_json', message: errorRegistry.invalid_json.message, requestId: 'env-invalid-json' },
    });
    envelopeOf(t, response, 'invalid_json');
  }
  t.is(callsOf('malformed'), 0);
});

test('a non-JSON content type on a JSON route is 415 unsupported_media_type', async (t) => {
  const body = JSON.stringify({ name: 'ok', count: 1, kind: 'alpha' });
  for (const contentType of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json; charset=iso-8859-1', undefined]) {
    const headers: Record<string, string> = { 'X-Request-ID': 'env-415' };
    if (contentType !== undefined) headers['Content-Type'] = contentType;
    const response = await request(direct, '/test/echo/media', { method: 'POST', headers, body });
    envelopeOf(t, response, 'unsupported_media_type');
    t.deepEqual(JSON.parse(response.text), {
      error: { code: 'unsupported_media_type', message: errorRegistry.unsupported_media_type.message, requestId: 'env-415' },
    });
  }
  t.is(callsOf('media'), 0);

  // The same body as JSON is accepted (also with an explicit UTF-8 charset).
  for (const contentType of ['application/json', 'application/json; charset=utf-8']) {
    const accepted = await request(direct, '/test/echo/media', { method: 'POST', headers: { 'Content-Type': contentType }, body });
    t.is(accepted.status, 200, accepted.text);
    t.deepEqual(JSON.parse(accepted.text), { ok: true });
  }
  t.is(callsOf('media'), 2);
});

test('a schema violation is 400 validation_failed with {path, message} details that do not echo the input', async (t) => {
  const response = await request(direct, '/test/echo/invalid', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Request-ID': 'env-validation' },
    body: JSON.stringify({
      name: 'SENTINEL_NAME_far_too_long',
      count: 'SENTINEL_COUNT',
      kind: 'SENTINEL_KIND',
      SENTINEL_EXTRA_KEY: 'SENTINEL_EXTRA_VALUE',
    }),
  });
  const error = envelopeOf(t, response, 'validation_failed', { details: true });
  t.is(error.requestId, 'env-validation');
  const details = error.details ?? [];
  t.true(details.length >= 3);
  for (const detail of details) {
    t.deepEqual(Object.keys(detail).sort(), ['message', 'path']);
    t.is(typeof detail.path, 'string');
    t.is(typeof detail.message, 'string');
    t.true((detail.message as string).length > 0);
  }
  const paths = details.map((detail) => detail.path);
  for (const path of ['body.name', 'body.count', 'body.kind']) t.true(paths.includes(path), `${path} in ${JSON.stringify(paths)}`);
  t.false(response.text.includes('SENTINEL'), response.text);
  t.is(callsOf('invalid'), 0);

  // A missing body on a JSON route is a validation failure too, not a crash.
  const empty = await request(direct, '/test/echo/invalid', { method: 'POST', headers: { 'Content-Type': 'application/json' } });
  envelopeOf(t, empty, 'validation_failed', { details: true });

  // Invalid route params are reported the same way.
  const params = await request(direct, '/test/echo/NOT_A_SLOT', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: 'ok', count: 1, kind: 'alpha' }),
  });
  const paramsError = envelopeOf(t, params, 'validation_failed', { details: true });
  t.deepEqual(
    paramsError.details?.map((detail) => detail.path),
    ['params.slot'],
  );
  t.false(params.text.includes('NOT_A_SLOT'));
  t.is(callsOf('invalid'), 0);
});

test('a thrown error is 500 internal_error: nothing internal in the body, the cause logged with the request id', async (t) => {
  const response = await request(direct, '/test/boom', { headers: { 'X-Request-ID': 'env-500-boom' } });
  envelopeOf(t, response, 'internal_error');
  t.deepEqual(JSON.parse(response.text), {
    error: { code: 'internal_error', message: errorRegistry.internal_error.message, requestId: 'env-500-boom' },
  });
  for (const leak of ['secret', 'internal detail', '/etc/passwd', 'SELECT', 'users', 'stack', 'Error:', '    at ', '.ts', '.js', 'node_modules', '/work', 'koa', 'slonik']) {
    t.false(response.text.includes(leak), `the body leaks ${leak}`);
  }
  t.is(callsOf('boom'), 1);

  const logged = await findLog(
    direct,
    (entry) => entry.requestId === 'env-500-boom' && JSON.stringify(entry).includes(INTERNAL_MESSAGE),
    'the 500 cause',
  );
  t.is(logged.severity, 'ERROR');
  const err = logged.err as { message?: string; stack?: string } | undefined;
  t.is(err?.message, INTERNAL_MESSAGE);
  t.truthy(err?.stack);
  t.is(logged.errorCode, 'internal_error');
  const access = await accessLogOf(direct, 'env-500-boom');
  t.is(access.severity, 'ERROR');
  t.is(access.httpRequest?.status, 500);
});

// ---------------------------------------------------------------------------------------------
// Secure headers, HSTS, client IP
// ---------------------------------------------------------------------------------------------

const assertSecureHeaders = (t: ExecutionContext, response: HttpResult, label: string) => {
  t.is(response.headers['cache-control'], 'no-store', label);
  t.is(response.headers['x-content-type-options'], 'nosniff', label);
  t.is(response.headers['x-frame-options'], 'DENY', label);
  t.is(response.headers['referrer-policy'], 'no-referrer', label);
  const permissions = (response.headers['permissions-policy'] as string | undefined) ?? '';
  for (const feature of ['camera=()', 'microphone=()', 'geolocation=()', 'payment=()', 'usb=()']) {
    t.true(permissions.includes(feature), `${label}: Permissions-Policy ${feature}`);
  }
  t.truthy(response.headers['x-request-id'], label);
  for (const name of ['cache-control', 'x-content-type-options', 'x-frame-options', 'referrer-policy', 'permissions-policy', 'x-request-id']) {
    t.is(headerCount(response, name), 1, `${label}: one ${name}`);
  }
  t.is(response.headers['x-powered-by'], undefined, label);
  t.is(response.headers.server, undefined, label);
  t.is(response.headers['strict-transport-security'], undefined, `${label}: no HSTS over plain HTTP`);
  for (let index = 1; index < response.rawHeaders.length; index += 2) {
    t.notRegex(response.rawHeaders[index]!, /\bkoa\b|node\.?js|express|\bv?\d+\.\d+\.\d+\b/i, `${label}: ${response.rawHeaders[index - 1]}`);
  }
};

test('every contract §1 header is on a 200, a 404, a 405, a 413 and a 500', async (t) => {
  const ok = await request(direct, '/healthz');
  t.is(ok.status, 200);
  t.deepEqual(JSON.parse(ok.text), { status: 'ok' });
  t.is(ok.headers['content-type'], 'application/json; charset=utf-8');
  assertSecureHeaders(t, ok, '200');

  const notFound = await request(direct, '/no/such/path');
  t.is(notFound.status, 404);
  assertSecureHeaders(t, notFound, '404');

  const notAllowed = await request(direct, '/healthz', { method: 'PUT' });
  t.is(notAllowed.status, 405);
  assertSecureHeaders(t, notAllowed, '405');

  const tooLarge = await request(direct, '/test/sink/headers', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'Content-Length': LIMIT + 1 },
    body: JSON.stringify({ pad: 'a'.repeat(LIMIT + 1 - 10) }),
  });
  t.is(tooLarge.status, 413);
  assertSecureHeaders(t, tooLarge, '413');

  const failed = await request(direct, '/test/boom');
  t.is(failed.status, 500);
  assertSecureHeaders(t, failed, '500');
});

test('HSTS: absent over plain HTTP, absent for X-Forwarded-Proto without TRUST_PROXY, present behind the trusted proxy', async (t) => {
  const plain = await request(direct, '/healthz');
  t.is(plain.headers['strict-transport-security'], undefined);

  const spoofed = await request(direct, '/healthz', { headers: { 'X-Forwarded-Proto': 'https' } });
  t.is(spoofed.status, 200);
  t.is(spoofed.headers['strict-transport-security'], undefined);

  const trusted = await request(proxied, '/healthz', { headers: { 'X-Forwarded-Proto': 'https' } });
  t.is(trusted.status, 200);
  const hsts = trusted.headers['strict-transport-security'] as string | undefined;
  t.truthy(hsts);
  t.true(Number(/max-age=(\d+)/.exec(hsts ?? '')?.[1]) >= 31_536_000, hsts);
  t.is(headerCount(trusted, 'strict-transport-security'), 1);

  // Also on errors behind the proxy.
  const trustedNotFound = await request(proxied, '/no/such/path', { headers: { 'X-Forwarded-Proto': 'https' } });
  t.is(trustedNotFound.status, 404);
  t.truthy(trustedNotFound.headers['strict-transport-security']);

  const trustedPlain = await request(proxied, '/healthz');
  t.is(trustedPlain.headers['strict-transport-security'], undefined);
  const trustedHttp = await request(proxied, '/healthz', { headers: { 'X-Forwarded-Proto': 'http' } });
  t.is(trustedHttp.headers['strict-transport-security'], undefined);
});

test('the client IP follows TRUST_PROXY and TRUSTED_PROXY_HOPS (access log remoteIp)', async (t) => {
  const remoteIpOf = async (service: TestService, requestId: string, forwardedFor?: string) => {
    const headers: Record<string, string> = { 'X-Request-ID': requestId };
    if (forwardedFor !== undefined) headers['X-Forwarded-For'] = forwardedFor;
    const response = await request(service, '/healthz', { headers });
    t.is(response.status, 200);
    return (await accessLogOf(service, requestId)).httpRequest?.remoteIp;
  };
  // spoofed (client-supplied), client (appended by the LB), LB → hops=2 picks the client.
  t.is(await remoteIpOf(proxied, 'ip-hops', '198.51.100.66, 203.0.113.7, 10.1.2.3'), '203.0.113.7');
  t.is(await remoteIpOf(proxied, 'ip-hops-many', '1.1.1.1, 2.2.2.2, 198.51.100.66, 203.0.113.17, 10.1.2.3'), '203.0.113.17');
  t.is(await remoteIpOf(proxied, 'ip-single', '203.0.113.8'), '203.0.113.8');
  t.is(await remoteIpOf(proxied, 'ip-v6', '2001:db8::1, 10.1.2.3'), '2001:db8::1');
  t.is(await remoteIpOf(proxied, 'ip-garbage', 'not-an-ip, 10.1.2.3'), '127.0.0.1');
  t.is(await remoteIpOf(proxied, 'ip-none'), '127.0.0.1');
  t.is(await remoteIpOf(direct, 'ip-untrusted', '203.0.113.9'), '127.0.0.1');
  t.is(await remoteIpOf(direct, 'ip-untrusted-many', '198.51.100.66, 203.0.113.7, 10.1.2.3'), '127.0.0.1');
});

// ---------------------------------------------------------------------------------------------
// CORS
// ---------------------------------------------------------------------------------------------

const corsHeaderNames = (response: HttpResult) =>
  response.rawHeaders.filter((value, index) => index % 2 === 0 && value.toLowerCase().startsWith('access-control-'));

test('CORS: a listed origin gets itself back (never *) with Vary: Origin, also on errors', async (t) => {
  for (const origin of [LISTED_ORIGIN, OTHER_LISTED_ORIGIN]) {
    for (const path of ['/healthz', '/no/such/path', '/test/boom']) {
      const response = await request(direct, path, { headers: { Origin: origin } });
      t.is(response.headers['access-control-allow-origin'], origin, `${origin} ${path}`);
      t.is(headerCount(response, 'access-control-allow-origin'), 1);
      t.true(
        String(response.headers.vary ?? '')
          .split(/,\s*/)
          .map((value) => value.toLowerCase())
          .includes('origin'),
        `${path}: Vary ${String(response.headers.vary)}`,
      );
      t.is(response.headers['access-control-allow-credentials'], undefined);
      t.true(String(response.headers['access-control-expose-headers'] ?? '').includes('X-Request-ID'));
    }
  }
});

test('CORS: unlisted origins, look-alikes and Origin: null get no CORS headers', async (t) => {
  const unlisted = [
    'https://evil.example.com',
    'null',
    'http://game.example.com',
    'https://GAME.example.com',
    'https://game.example.com.evil.test',
    'https://game.example.com:443',
    `${LISTED_ORIGIN}/`,
    '*',
  ];
  for (const origin of unlisted) {
    const response = await request(direct, '/healthz', { headers: { Origin: origin } });
    t.is(response.status, 200);
    t.deepEqual(corsHeaderNames(response), [], origin);
  }
  const withoutOrigin = await request(direct, '/healthz');
  t.deepEqual(corsHeaderNames(withoutOrigin), []);
});

test('CORS preflight: a listed origin gets methods, headers and max-age; an unlisted one gets nothing', async (t) => {
  const preflight = (origin: string) =>
    request(direct, '/test/echo/preflight', {
      method: 'OPTIONS',
      headers: {
        Origin: origin,
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'authorization, content-type, x-request-id',
      },
    });

  const listed = await preflight(LISTED_ORIGIN);
  t.true(listed.status === 204 || listed.status === 200, String(listed.status));
  t.is(listed.headers['access-control-allow-origin'], LISTED_ORIGIN);
  const methods = String(listed.headers['access-control-allow-methods'] ?? '').split(/,\s*/);
  t.true(methods.includes('POST'), methods.join());
  t.false(methods.includes('*'));
  const allowHeaders = String(listed.headers['access-control-allow-headers'] ?? '')
    .toLowerCase()
    .split(/,\s*/);
  for (const name of ['authorization', 'content-type', 'x-request-id']) t.true(allowHeaders.includes(name), allowHeaders.join());
  t.false(allowHeaders.includes('*'));
  t.regex(String(listed.headers['access-control-max-age'] ?? ''), /^\d+$/);
  t.true(Number(listed.headers['access-control-max-age']) > 0);
  t.regex(String(listed.headers['x-request-id'] ?? ''), uuidPattern);
  t.is(listed.headers['x-content-type-options'], 'nosniff');

  for (const origin of ['https://evil.example.com', 'null']) {
    const response = await preflight(origin);
    t.deepEqual(corsHeaderNames(response), [], origin);
  }
  t.is(callsOf('preflight'), 0);
});

// ---------------------------------------------------------------------------------------------
// Body size guard
// ---------------------------------------------------------------------------------------------

const padBody = (totalBytes: number) => {
  const body = JSON.stringify({ pad: 'a'.repeat(totalBytes - '{"pad":""}'.length) });
  if (Buffer.byteLength(body) !== totalBytes) throw new Error('bad padding');
  return body;
};

test('413 from Content-Length before the body is read; the handler does not run', async (t) => {
  for (const declared of [LIMIT + 1, 10 * 1024 * 1024, 1e15]) {
    // Only the head is sent: a response proves the server decided without waiting for the body.
    const connection = connectRaw(direct);
    connection.socket.write(
      `POST /test/sink/declared HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: ${declared}\r\nX-Request-ID: declared-${declared}\r\n\r\n`,
    );
    const response = await within(connection.response, 5_000, `413 for Content-Length ${declared}`);
    rawEnvelopeOf(t, response, 'payload_too_large');
    t.is(response.header('x-request-id'), `declared-${declared}`);
    t.is(response.header('connection')?.toLowerCase(), 'close');
    await within(connection.closed, 5_000, 'the server to close the connection');
    connection.socket.destroy();
  }

  // The guard sits before routing: it also covers routes without a body schema and unknown paths.
  for (const path of ['/healthz', '/no/such/path']) {
    const connection = connectRaw(direct);
    connection.socket.write(`POST ${path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: ${LIMIT + 1}\r\n\r\n`);
    rawEnvelopeOf(t, await within(connection.response, 5_000, `413 for ${path}`), 'payload_too_large');
    connection.socket.destroy();
  }

  // And with the oversized body actually sent.
  const sent = await request(direct, '/test/sink/declared', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: padBody(LIMIT + 1),
  });
  envelopeOf(t, sent, 'payload_too_large');
  t.is(callsOf('declared'), 0);
});

test('413 for a chunked body streamed past the limit; the handler does not run and the server stops reading', async (t) => {
  const connection = connectRaw(direct);
  connection.socket.write(
    'POST /test/sink/chunked HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nX-Request-ID: chunked-413\r\n\r\n',
  );
  const frame = (data: string) => `${Buffer.byteLength(data).toString(16)}\r\n${data}\r\n`;
  connection.socket.write(frame('{"pad":"'));
  let written = 8;
  const chunk = 'a'.repeat(512);
  // Stream twice the limit and stop, without the terminating chunk: the server must answer 413
  // from what it read so far, not wait for the rest of the body. (No timing assertions: a
  // loaded machine may answer late, but it must answer without the body being complete.)
  while (written < 2 * LIMIT && connection.socket.writable) {
    connection.socket.write(frame(chunk));
    written += chunk.length;
  }
  const writtenBeforeResponse = written;
  const response = await within(connection.response, 5_000, 'the chunked 413');
  rawEnvelopeOf(t, response, 'payload_too_large');
  t.is(response.header('x-request-id'), 'chunked-413');
  t.true(writtenBeforeResponse <= 2 * LIMIT + chunk.length);
  // The server stops reading: it closes the connection instead of draining an endless body.
  const cap = 16 * 1024 * 1024;
  const deadline = Date.now() + 15_000;
  while (!connection.isClosed() && connection.socket.writable && written < cap && Date.now() < deadline) {
    if (!connection.socket.write(frame(chunk))) {
      await within(
        Promise.race([new Promise((resolve) => connection.socket.once('drain', resolve)), connection.closed]),
        1_000,
        'drain',
      ).catch(() => undefined);
    }
    written += chunk.length;
    await sleep(2);
  }
  await within(connection.closed, 5_000, 'the server to close the connection');
  t.true(written < cap, `the server kept reading: ${written} bytes written`);
  connection.socket.destroy();
  t.is(callsOf('chunked'), 0);

  const access = await accessLogOf(direct, 'chunked-413');
  t.is(access.httpRequest?.status, 413);
});

test('a body exactly at MAX_REQUEST_BODY_BYTES is accepted, with Content-Length and chunked', async (t) => {
  const body = padBody(LIMIT);
  const withLength = await request(direct, '/test/sink/exact', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'Content-Length': LIMIT },
    body,
  });
  t.is(withLength.status, 200, withLength.text);
  t.deepEqual(JSON.parse(withLength.text), { received: LIMIT - 10 });

  const chunks = body.match(/[\s\S]{1,500}/g) ?? [];
  const chunked = await rawRequest(
    direct,
    `POST /test/sink/exact HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunks
      .map((part) => `${part.length.toString(16)}\r\n${part}\r\n`)
      .join('')}0\r\n\r\n`,
  );
  t.is(chunked.status, 200, chunked.body);
  t.deepEqual(JSON.parse(chunked.body), { received: LIMIT - 10 });
  t.is(callsOf('exact'), 2);

  // One byte more is refused, both ways.
  const over = padBody(LIMIT + 1);
  const overWithLength = await request(direct, '/test/sink/exact', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: over });
  t.is(overWithLength.status, 413);
  const overChunked = await rawRequest(
    direct,
    `POST /test/sink/exact HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${(over.match(/[\s\S]{1,500}/g) ?? [])
      .map((part) => `${part.length.toString(16)}\r\n${part}\r\n`)
      .join('')}0\r\n\r\n`,
  );
  t.is(overChunked.status, 413);
  t.is(callsOf('exact'), 2);
});

// ---------------------------------------------------------------------------------------------
// OpenAPI
// ---------------------------------------------------------------------------------------------

type SchemaObject = { $ref?: string; type?: string; properties?: Record<string, SchemaObject>; required?: string[]; additionalProperties?: unknown };
type Operation = { responses: Record<string, { description?: string; content?: Record<string, { schema?: SchemaObject }> }> };
type OpenApiDocument = {
  openapi: string;
  info: { title: string; version: string };
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, SchemaObject> };
};

test('the OpenAPI 3.1.0 document lists the health routes with their schemas and every error refers to ErrorEnvelope', async (t) => {
  const response = await request(direct, '/openapi.json');
  t.is(response.status, 200);
  t.is(response.headers['content-type'], 'application/json; charset=utf-8');
  const document = JSON.parse(response.text) as OpenApiDocument;
  t.is(document.openapi, '3.1.0');
  t.truthy(document.info.title);
  t.truthy(document.info.version);

  const jsonSchema = (path: string, status: string) => document.paths[path]?.get?.responses[status]?.content?.['application/json']?.schema;
  const healthz = jsonSchema('/healthz', '200');
  t.is(healthz?.type, 'object');
  t.truthy(healthz?.properties?.status);
  t.deepEqual(healthz?.required, ['status']);
  const readyz = jsonSchema('/readyz', '200');
  t.is(readyz?.type, 'object');
  t.truthy(readyz?.properties?.status);
  t.is(jsonSchema('/readyz', '503')?.$ref, '#/components/schemas/ErrorEnvelope');
  t.is(jsonSchema('/openapi.json', '200')?.type, 'object');

  // Path parameters use OpenAPI syntax.
  t.truthy(document.paths['/test/echo/{slot}']?.post);

  const envelope = document.components.schemas.ErrorEnvelope;
  t.is(envelope?.type, 'object');
  const error = envelope?.properties?.error;
  t.deepEqual([...(error?.required ?? [])].sort(), ['code', 'message', 'requestId']);
  t.truthy(error?.properties?.details);

  let operations = 0;
  for (const [path, item] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      operations += 1;
      t.truthy(operation.responses['500'], `${method} ${path} declares 500`);
      for (const [status, declared] of Object.entries(operation.responses)) {
        if (Number(status) < 400) continue;
        t.is(declared.content?.['application/json']?.schema?.$ref, '#/components/schemas/ErrorEnvelope', `${method} ${path} ${status}`);
      }
    }
  }
  t.true(operations >= 3);
  // A body route declares its body errors.
  const echo = document.paths['/test/echo/{slot}']?.post?.responses ?? {};
  for (const status of ['400', '413', '415']) t.truthy(echo[status], status);
});

// ---------------------------------------------------------------------------------------------
// Access log
// ---------------------------------------------------------------------------------------------

test('access log lines are JSON in Cloud Logging shape without query strings or credentials', async (t) => {
  const bearer = 'SENTINEL_BEARER_7d41c0';
  const trace = '0123456789abcdef0123456789abcdef';
  const ok = await request(direct, '/healthz?ticket=TICKET_SENTINEL_91&token=TOKEN_SENTINEL_27', {
    headers: {
      'X-Request-ID': 'log-200',
      Authorization: `Bearer ${bearer}`,
      Cookie: 'session=COOKIE_SENTINEL_55',
      'User-Agent': 'karaxas-test/1.0',
      'X-Cloud-Trace-Context': `${trace}/1234567;o=1`,
    },
  });
  t.is(ok.status, 200);
  const failures = await Promise.all([
    request(direct, '/no/such/path?token=TOKEN_SENTINEL_27', { headers: { 'X-Request-ID': 'log-404', Authorization: `Bearer ${bearer}` } }),
    request(direct, '/test/boom?ticket=TICKET_SENTINEL_91', { headers: { 'X-Request-ID': 'log-500', Authorization: `Bearer ${bearer}` } }),
    request(direct, '/test/echo/logged?token=TOKEN_SENTINEL_27', {
      method: 'POST',
      headers: { 'X-Request-ID': 'log-400', 'Content-Type': 'application/json', Authorization: `Bearer ${bearer}` },
      body: JSON.stringify({ name: 'PASSWORD_SENTINEL_13', count: 'x', kind: 'alpha' }),
    }),
  ]);
  t.deepEqual(
    failures.map((response) => response.status),
    [404, 500, 400],
  );

  const entry = await accessLogOf(direct, 'log-200');
  t.is(entry.severity, 'INFO');
  t.is(entry.message, 'GET /healthz 200');
  t.is(entry.requestId, 'log-200');
  t.is(entry['logging.googleapis.com/trace'], `projects/karaxas-test/traces/${trace}`);
  t.is(entry['logging.googleapis.com/spanId'], '1234567');
  const httpRequest = entry.httpRequest ?? {};
  t.is(httpRequest.requestMethod, 'GET');
  t.is(httpRequest.requestUrl, '/healthz');
  t.is(httpRequest.status, 200);
  t.is(httpRequest.remoteIp, '127.0.0.1');
  t.is(httpRequest.userAgent, 'karaxas-test/1.0');
  t.regex(String(httpRequest.latency), /^\d+\.\d+s$/);

  t.is((await accessLogOf(direct, 'log-404')).severity, 'WARNING');
  t.is((await accessLogOf(direct, 'log-404')).httpRequest?.requestUrl, '/no/such/path');
  t.is((await accessLogOf(direct, 'log-500')).severity, 'ERROR');
  t.is((await accessLogOf(direct, 'log-400')).httpRequest?.status, 400);

  // Every line is JSON with a severity and a message; no secret, query value or body value anywhere.
  for (const line of direct.logs.lines) {
    const parsed = JSON.parse(line) as Record<string, unknown>;
    t.is(typeof parsed.severity, 'string');
    t.is(typeof parsed.message, 'string');
    for (const secret of [bearer, 'TICKET_SENTINEL', 'TOKEN_SENTINEL', 'COOKIE_SENTINEL', 'PASSWORD_SENTINEL', 'ticket=', 'token=']) {
      t.false(line.includes(secret), `a log line holds ${secret}: ${line}`);
    }
  }
});
