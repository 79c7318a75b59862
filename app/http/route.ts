/**
 * Route definitions: each route declares its input schemas, its response schema per status and
 * the error codes it may answer with. The same definitions mount the Koa handlers and generate
 * the OpenAPI document, so the two cannot drift.
 */
import type Router from '@koa/router';
import type { Middleware, ParameterizedContext } from 'koa';
import getRawBody from 'raw-body';
import { z, type ZodTypeAny } from 'zod';
import type { Logger } from '../logger.js';
import { AppError, type ErrorCode, type ErrorDetail } from './errors.js';

/** What every request carries through the middleware chain. */
export type AppState = {
  requestId: string;
  log: Logger;
  /** The client address per TRUST_PROXY / TRUSTED_PROXY_HOPS. */
  clientIp: string;
  /** Set by authentication guards. */
  auth?: unknown;
};

export type AppContext = ParameterizedContext<AppState>;

type Schema = ZodTypeAny;
type Out<S> = S extends ZodTypeAny ? z.output<S> : undefined;

export type RouteResult = { status: number; body?: unknown; headers?: Record<string, string> };

export type RouteDefinition<B extends Schema | undefined, Q extends Schema | undefined, P extends Schema | undefined> = {
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** Koa path syntax: `/auth/sessions/:id`. */
  path: string;
  summary: string;
  tags: string[];
  /** How callers authenticate, for the OpenAPI document (guards themselves go in `middleware`). */
  security?: 'bearer' | 'ops';
  request?: { body?: B; query?: Q; params?: P };
  responses: Record<number, { description: string; body?: Schema }>;
  errors: readonly ErrorCode[];
  /** Run before the body is read: throttling and authentication reject early and cheaply. */
  middleware?: Middleware<AppState>[];
  handler: (input: { body: Out<B>; query: Out<Q>; params: Out<P>; ctx: AppContext }) => Promise<RouteResult> | RouteResult;
};

/** A route with its types erased, for lists of routes. */
export type AnyRoute = RouteDefinition<Schema | undefined, Schema | undefined, Schema | undefined>;

/** Declares a route; the identity function that gives the handler its input types. */
export const defineRoute = <
  B extends Schema | undefined = undefined,
  Q extends Schema | undefined = undefined,
  P extends Schema | undefined = undefined,
>(
  route: RouteDefinition<B, Q, P>,
): AnyRoute => route as unknown as AnyRoute;

export const errorEnvelopeSchema = z
  .object({
    error: z.object({
      code: z.string(),
      message: z.string(),
      requestId: z.string(),
      details: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
    }),
  })
  .strict();

/**
 * The issue's message without anything the client sent. Zod's default texts for these two codes
 * quote the submitted value (`received 'x'`) or the submitted key names.
 */
const safeIssueMessage = (issue: z.ZodIssue): string => {
  if (issue.code === z.ZodIssueCode.invalid_enum_value && issue.message.includes(String(issue.received))) {
    return `Invalid enum value. Expected ${issue.options.map((option) => `'${String(option)}'`).join(' | ')}`;
  }
  if (issue.code === z.ZodIssueCode.unrecognized_keys && issue.keys.some((key) => issue.message.includes(key))) {
    return 'Unrecognized key(s) in object';
  }
  return issue.message;
};

/** Zod issues as `{path, message}` pairs; values are never echoed back. */
export const issuesToDetails = (issues: z.ZodIssue[], prefix: string): ErrorDetail[] =>
  issues.map((issue) => ({
    path: [prefix, ...issue.path].join('.'),
    message: safeIssueMessage(issue),
  }));

const parsePart = <S extends Schema | undefined>(schema: S, value: unknown, part: string): Out<S> => {
  if (schema === undefined) return undefined as Out<S>;
  const result = schema.safeParse(value);
  if (!result.success) throw new AppError('validation_failed', { details: issuesToDetails(result.error.issues, part) });
  return result.data as Out<S>;
};

const hasBody = (ctx: AppContext) =>
  ctx.request.length !== undefined ? ctx.request.length > 0 : ctx.get('transfer-encoding') !== '';

/**
 * Reads and parses a JSON body within `limit` bytes. Streams are cut off as soon as they pass
 * the limit, so a chunked body cannot make the server buffer more than that.
 * @throws {AppError} unsupported_media_type, payload_too_large or invalid_json.
 */
export const readJsonBody = async (ctx: AppContext, limit: number): Promise<unknown> => {
  if (!hasBody(ctx)) return undefined;
  if (ctx.request.is('application/json') === false) throw new AppError('unsupported_media_type');
  const charset = ctx.request.charset;
  if (charset !== '' && charset.toLowerCase() !== 'utf-8') throw new AppError('unsupported_media_type');
  let text: string;
  try {
    text = await getRawBody(ctx.req, { length: ctx.request.length, limit, encoding: 'utf8' });
  } catch (error) {
    const type = (error as { type?: string }).type;
    if (type === 'entity.too.large') throw new AppError('payload_too_large', { headers: { Connection: 'close' } });
    throw new AppError('validation_failed', { message: 'The request body could not be read.', cause: error });
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new AppError('invalid_json');
  }
};

/** Mounts routes on a router. */
export const mountRoutes = (router: Router<AppState>, routes: readonly AnyRoute[], options: { maxBodyBytes: number }) => {
  for (const route of routes) {
    const handle: Middleware<AppState> = async (ctx) => {
      const raw = route.request?.body === undefined ? undefined : await readJsonBody(ctx, options.maxBodyBytes);
      const input = {
        body: parsePart(route.request?.body, raw, 'body'),
        query: parsePart(route.request?.query, ctx.query, 'query'),
        params: parsePart(route.request?.params, ctx.params, 'params'),
        ctx,
      };
      const result = await route.handler(input);
      const response = route.responses[result.status];
      if (!response) throw new Error(`${route.method.toUpperCase()} ${route.path} answered undeclared status ${result.status}`);
      for (const [name, value] of Object.entries(result.headers ?? {})) ctx.set(name, value);
      ctx.status = result.status;
      // Parsing the response strips any field the schema does not declare: nothing leaks by accident.
      if (response.body !== undefined) ctx.body = response.body.parse(result.body);
    };
    router.register(route.path, [route.method.toUpperCase()], [...(route.middleware ?? []), handle]);
  }
};

/** Koa `:param` path to OpenAPI `{param}` path. */
export const openApiPath = (path: string) => path.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
