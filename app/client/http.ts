/**
 * The SDK's HTTP transport: `fetch` only (injectable), JSON in and out, the client headers on
 * every call, a per-request timeout, and the contract's error envelope turned into
 * {@link KaraxasError}. Knows nothing about tokens beyond putting one in `Authorization`.
 */
import type { z } from 'zod';
import { KaraxasError } from './errors.js';
import { errorEnvelopeSchema } from './schemas.js';

/** The subset of `RequestInit` the SDK uses. */
export type FetchInit = {
  method: string;
  headers: Record<string, string>;
  body?: string;
  signal?: AbortSignal;
  credentials?: 'omit';
  redirect?: 'error';
};

/** The subset of `Response` the SDK reads. */
export type FetchResponseLike = {
  status: number;
  headers: { get(name: string): string | null };
  text(): Promise<string>;
};

/** A `fetch` (the global one, a wrapper, or a game engine's polyfill). */
export type FetchLike = (url: string, init: FetchInit) => Promise<FetchResponseLike>;

export type HttpRequest = {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  /** Sent as `Authorization: Bearer …` (never in the URL). */
  token?: string;
};

export type HttpResponse = {
  status: number;
  /** The parsed JSON body; undefined for an empty or non-JSON body. */
  body: unknown;
  headers: { get(name: string): string | null };
  requestId: string | null;
};

export type TransportOptions = {
  baseUrl: string;
  fetch: FetchLike;
  /** Headers sent on every request (X-Client-Platform, X-Client-Version). */
  headers: Record<string, string>;
  timeoutMs: number;
};

const retryAfterOf = (headers: { get(name: string): string | null }): number | null => {
  const value = headers.get('retry-after');
  if (value === null || !/^\d+$/.test(value.trim())) return null;
  return Number(value.trim());
};

/** The error a non-success response stands for. */
export const errorFrom = (response: HttpResponse, what: string): KaraxasError => {
  const envelope = errorEnvelopeSchema.safeParse(response.body);
  if (envelope.success) {
    return new KaraxasError({
      code: envelope.data.error.code,
      message: envelope.data.error.message,
      status: response.status,
      source: 'server',
      requestId: envelope.data.error.requestId,
      details: envelope.data.error.details,
      retryAfter: retryAfterOf(response.headers),
    });
  }
  const success = response.status >= 200 && response.status < 300;
  return new KaraxasError({
    code: success ? 'invalid_response' : `http_${response.status}`,
    message: `${what} answered ${response.status} without the expected body`,
    status: response.status,
    source: success ? 'response' : 'server',
    requestId: response.requestId,
    retryAfter: retryAfterOf(response.headers),
  });
};

/** The parsed body of a response that must have `status` and match `schema`. */
export const expectBody = <S extends z.ZodTypeAny>(response: HttpResponse, status: number, schema: S, what: string): z.output<S> => {
  if (response.status !== status) throw errorFrom(response, what);
  const parsed = schema.safeParse(response.body);
  if (!parsed.success) {
    throw new KaraxasError({
      code: 'invalid_response',
      message: `${what} answered a body that does not match the contract: ${parsed.error.issues
        .slice(0, 3)
        .map((issue) => `${issue.path.join('.') || '(body)'} ${issue.message}`)
        .join('; ')}`,
      status: response.status,
      source: 'response',
      requestId: response.requestId,
    });
  }
  return parsed.data as z.output<S>;
};

/** Checks a status-only response (204). */
export const expectStatus = (response: HttpResponse, status: number, what: string): void => {
  if (response.status !== status) throw errorFrom(response, what);
};

export const createTransport = (options: TransportOptions) => {
  let base: URL;
  try {
    base = new URL(options.baseUrl);
  } catch (cause) {
    throw new KaraxasError({ code: 'validation_failed', message: 'baseUrl must be an absolute http(s) URL', source: 'client', cause });
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new KaraxasError({ code: 'validation_failed', message: 'baseUrl must be an http:// or https:// URL', source: 'client' });
  }
  const basePath = base.pathname.replace(/\/+$/, '');

  const urlOf = (path: string, query: Record<string, string | number | undefined> = {}, protocol = base.protocol) => {
    const url = new URL(base.toString());
    url.protocol = protocol;
    url.pathname = `${basePath}${path}`;
    url.search = '';
    url.hash = '';
    for (const [key, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(key, String(value));
    return url.toString();
  };

  const send = async (request: HttpRequest): Promise<HttpResponse> => {
    const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
    if (request.body !== undefined) headers['content-type'] = 'application/json';
    if (request.token !== undefined) headers.authorization = `Bearer ${request.token}`;
    const what = `${request.method} ${request.path.replace(/\/[0-9a-f-]{36}(?=\/|$)/g, '/:id')}`;

    const controller = typeof AbortController === 'function' ? new AbortController() : undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        controller?.abort();
        reject(new KaraxasError({ code: 'timeout', message: `${what}: no answer within ${options.timeoutMs} ms`, source: 'network' }));
      }, options.timeoutMs);
    });
    try {
      const response = await Promise.race([
        options
          .fetch(urlOf(request.path, request.query), {
            method: request.method,
            headers,
            body: request.body === undefined ? undefined : JSON.stringify(request.body),
            signal: controller?.signal,
            credentials: 'omit',
            redirect: 'error',
          })
          .catch((cause: unknown) => {
            throw new KaraxasError({ code: 'connection_failed', message: `${what}: could not reach the server`, source: 'network', cause });
          }),
        timedOut,
      ]);
      const text = await Promise.race([response.text(), timedOut]).catch((cause: unknown) => {
        if (cause instanceof KaraxasError) throw cause;
        throw new KaraxasError({ code: 'connection_failed', message: `${what}: the response was cut off`, source: 'network', cause });
      });
      let body: unknown;
      try {
        body = text === '' ? undefined : JSON.parse(text);
      } catch {
        body = undefined;
      }
      return { status: response.status, body, headers: response.headers, requestId: response.headers.get('x-request-id') };
    } finally {
      clearTimeout(timer);
      // The race above may leave `timedOut` without a handler once the request settled.
      timedOut.catch(() => undefined);
    }
  };

  return {
    send,
    /** `ws(s)://…/ws?ticket=` for a ticket. */
    webSocketUrl: (ticket: string) => urlOf('/ws', { ticket }, base.protocol === 'https:' ? 'wss:' : 'ws:'),
  };
};

export type Transport = ReturnType<typeof createTransport>;
