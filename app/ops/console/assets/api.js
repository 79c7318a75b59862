/* global window */
/**
 * The console's API client: `fetch` to the same origin (the CSP allows nothing else).
 *
 * Credentials live in this module's memory only — never in localStorage, sessionStorage,
 * cookies or the URL — so closing or reloading the tab signs out. Requests carry them only in
 * the Authorization header and never send cookies (`credentials: 'omit'`).
 *
 * An admin session (TOTP sign-in) is refreshed once, single-flight, when the access token
 * expires; when that fails, or when the ops token is refused, the session ends and the
 * listeners registered with `onSessionEnded` are told why.
 */

export class ApiError extends Error {
  constructor({ code, message, status, requestId = null, details = undefined }) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.status = status;
    this.requestId = requestId;
    this.details = details;
  }
}

const TIMEOUT_MS = 30_000;

/** @type {null | {kind: 'ops-token', token: string} | {kind: 'admin', accessToken: string, refreshToken: string}} */
let credentials = null;
/** Whether the credentials were accepted (a refusal before that is a failed sign-in, not an ended session). */
let established = false;
let refreshing = null;
const endedListeners = new Set();

const parse = async (response) => {
  const text = await response.text().catch(() => '');
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
};

/**
 * One request. `client: true` adds `X-Client-Platform: web` (the sign-in routes run the release
 * policy's login gate, which blocks requests naming no platform while any gate is on).
 */
const send = async (method, path, { query, body, token, client = false } = {}) => {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(name, String(value));
  }
  const headers = { accept: 'application/json' };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (client) headers['x-client-platform'] = 'web';
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
      redirect: 'error',
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (cause) {
    const timedOut = cause?.name === 'TimeoutError';
    throw new ApiError({
      code: timedOut ? 'timeout' : 'connection_failed',
      message: timedOut ? `No answer within ${TIMEOUT_MS / 1000} s` : 'Could not reach the API',
      status: 0,
    });
  }
  const data = await parse(response);
  if (!response.ok) {
    const envelope = data && typeof data === 'object' ? data.error : undefined;
    throw new ApiError({
      code: typeof envelope?.code === 'string' ? envelope.code : `http_${response.status}`,
      message: typeof envelope?.message === 'string' ? envelope.message : `HTTP ${response.status}`,
      status: response.status,
      requestId: typeof envelope?.requestId === 'string' ? envelope.requestId : response.headers.get('x-request-id'),
      details: Array.isArray(envelope?.details) ? envelope.details : undefined,
    });
  }
  return data;
};

const endSession = (reason) => {
  if (credentials === null) return;
  const wasEstablished = established;
  credentials = null;
  established = false;
  if (wasEstablished) for (const listener of endedListeners) listener(reason);
};

const tokenOf = (current) => (current.kind === 'ops-token' ? current.token : current.accessToken);

/** Rotates the admin pair once for every caller that saw the expired token. */
const refresh = (seen) => {
  if (credentials !== seen) return Promise.resolve();
  refreshing ??= (async () => {
    try {
      const pair = await send('POST', '/auth/refresh', { body: { refreshToken: seen.refreshToken }, client: true });
      if (credentials === seen) credentials = { kind: 'admin', accessToken: pair.accessToken, refreshToken: pair.refreshToken };
    } catch (error) {
      endSession('Your admin session ended; sign in again.');
      throw error;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
};

/** A call with the current credentials. */
const call = async (method, path, options = {}) => {
  const current = credentials;
  if (current === null) throw new ApiError({ code: 'signed_out', message: 'Not signed in', status: 0 });
  try {
    return await send(method, path, { ...options, token: tokenOf(current) });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
    if (current.kind === 'admin' && error.code === 'unauthorized') {
      await refresh(current);
      if (credentials === null) throw error;
      return send(method, path, { ...options, token: tokenOf(credentials) });
    }
    endSession(current.kind === 'ops-token' ? 'The ops token was refused; sign in again.' : 'Your admin session ended; sign in again.');
    throw error;
  }
};

export const session = {
  get kind() {
    return credentials?.kind ?? null;
  },
  useOpsToken(token) {
    credentials = { kind: 'ops-token', token };
    established = false;
  },
  useAdminPair(pair) {
    credentials = { kind: 'admin', accessToken: pair.accessToken, refreshToken: pair.refreshToken };
    established = false;
  },
  /** The credentials were accepted: from now on a refusal ends the session (and tells the listeners). */
  establish() {
    established = credentials !== null;
  },
  /** Forgets the credentials without telling the listeners (a deliberate sign-out). */
  clear() {
    credentials = null;
    established = false;
  },
  onSessionEnded(listener) {
    endedListeners.add(listener);
  },
};

/** The ops API (contract §7) and the public policy read (§6). */
export const api = {
  metrics: () => call('GET', '/ops/release/metrics'),
  securityAudit: (query) => call('GET', '/ops/release/security-audit', { query }),
  adminAudit: (query) => call('GET', '/ops/release/admin-audit', { query }),
  verifyChain: () => call('GET', '/ops/release/security-audit/verify'),
  drain: (id) => call('GET', `/ops/release/drains/${encodeURIComponent(id)}`),
  releasePolicy: (platform) => send('GET', '/release/policy', { query: { platform } }),
  me: () => call('GET', '/auth/me'),
};

/** Admin sign-in (contract §3, §4). */
export const auth = {
  login: (email, password) => send('POST', '/auth/login', { body: { email, password }, client: true }),
  verifyMfa: (mfaToken, code) => send('POST', '/auth/mfa/verify', { body: { mfaToken, code }, client: true }),
  /** Revokes the admin session on the server (best effort: an ended session is fine). */
  logout: async () => {
    const current = credentials;
    if (current?.kind !== 'admin') return;
    await send('POST', '/auth/logout', { token: current.accessToken }).catch(() => undefined);
  },
};

/** Every page of a list endpoint, newest first, up to `maxItems`; `truncated` when more exist. */
export const listAll = async (fetchPage, query, maxItems) => {
  const items = [];
  let cursor;
  do {
    const page = await fetchPage({ ...query, limit: 500, cursor });
    for (const item of page.items) {
      if (items.length >= maxItems) return { items, truncated: true };
      items.push(item);
    }
    cursor = page.nextCursor ?? undefined;
    if (cursor !== undefined && items.length >= maxItems) return { items, truncated: true };
  } while (cursor !== undefined);
  return { items, truncated: false };
};
