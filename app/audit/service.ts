/**
 * The security-event trail's rules: what may be stored (scrubbed details, bounded fields), how
 * request metadata maps onto a row, one structured log line per committed event, and the ops
 * reads (newest-first pages with an opaque cursor, per-type counters).
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import type { AfterCommit } from '../db/after-commit.js';
import type { Logger } from '../logger.js';
import type { JsonObject, JsonValue, SecurityAuditKeyset, SecurityAuditStore, SecurityEventRow } from './store.js';
import {
  securityEventTypes,
  type RequestMeta,
  type SecurityAuditQueries,
  type SecurityAuditQuery,
  type SecurityAuditService,
  type SecurityEvent,
  type SecurityEventCounts,
  type SecurityEventInput,
  type SecurityEventPage,
} from './types.js';

/** Column caps of the table (CHECK constraints in 0002_security_event_audit.sql). */
export const USER_AGENT_MAX_LENGTH = 512;
export const REQUEST_ID_MAX_LENGTH = 128;

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;

/** Bounds of scrubbed details: long strings, deep or wide structures and large payloads are cut. */
export const DETAILS_LIMITS = {
  maxStringLength: 1_000,
  maxDepth: 6,
  maxArrayItems: 100,
  maxKeys: 100,
  /** Characters of the JSON text; well under the table's 64 KiB byte cap even at 3 bytes/char. */
  maxJsonLength: 16_000,
} as const;

/** A bad page request (size, bounds or cursor); the ops API answers 400. */
export class InvalidSecurityAuditQueryError extends Error {
  override name = 'InvalidSecurityAuditQueryError';
}

// ---------------------------------------------------------------------------------------------
// Scrubbing

/**
 * Key fragments that mark a value as a credential: a key whose lower-cased letters and digits
 * contain any of them is dropped. Substring matching fails closed — `keyboard` or `footprint`
 * go too — because losing context from an audit row is cheap and storing a secret in an
 * append-only table is not (it cannot be deleted for months).
 */
const CREDENTIAL_FRAGMENTS = [
  'password',
  'passwd',
  'passphrase',
  'secret',
  'token',
  'cookie',
  'authorization',
  'credential',
  'ticket',
  'hash',
  'code',
  'key',
  'otp',
  'jwt',
  'bearer',
  'signature',
  'salt',
] as const;

/**
 * Two narrow exceptions keep useful context that merely sounds like a credential:
 * - identifiers — the key's last word is `id`/`ids` (`tokenId`, `key_id`, `sessionIds`) and the
 *   value is a UUID, an integer, or an array of those (`tokenId: "<the token>"` is still dropped);
 * - diagnostic codes — `errorCode`, `statusCode`, `reasonCode` and the like (a diagnostic word,
 *   then `code`, no other credential word) with a number or a short code-shaped string value.
 *   A bare `code` (an MFA or recovery code) is always dropped.
 */
const DIAGNOSTIC_CODE_WORDS = new Set(['error', 'status', 'reason', 'http', 'result', 'exit', 'response', 'country', 'language']);

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const CODE_VALUE_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;
/** Values redacted whatever their key: JWTs and HTTP credentials. */
const CREDENTIAL_VALUE_PATTERNS = [/^eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*$/, /^(bearer|basic|digest)\s+\S/i];
export const REDACTED = '[redacted]';

/** `HTTPStatusCode` → http,status,code; `refresh_token-id` → refresh,token,id. */
const wordsOf = (key: string) =>
  key
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);

const hasCredentialFragment = (words: readonly string[]) => {
  const joined = words.join('');
  return CREDENTIAL_FRAGMENTS.some((fragment) => joined.includes(fragment));
};

const isIdentifierValue = (value: unknown): boolean =>
  (typeof value === 'string' && UUID_PATTERN.test(value)) ||
  (typeof value === 'number' && Number.isSafeInteger(value)) ||
  (Array.isArray(value) && value.length <= DETAILS_LIMITS.maxArrayItems && value.every((item) => isIdentifierValue(item) && !Array.isArray(item)));

/** Whether `key` (with this value) may be stored. */
export const isAllowedDetailKey = (key: string, value: unknown): boolean => {
  const words = wordsOf(key);
  if (!hasCredentialFragment(words)) return true;
  const last = words.at(-1);
  if ((last === 'id' || last === 'ids') && isIdentifierValue(value)) return true;
  if (
    last === 'code' &&
    words.length >= 2 &&
    DIAGNOSTIC_CODE_WORDS.has(words.at(-2)!) &&
    !hasCredentialFragment(words.slice(0, -1)) &&
    ((typeof value === 'number' && Number.isFinite(value)) || (typeof value === 'string' && CODE_VALUE_PATTERN.test(value)))
  ) {
    return true;
  }
  return false;
};

/**
 * Text PostgreSQL accepts in text and jsonb: no NUL, no unpaired surrogate (JSON.stringify
 * would emit `\ud800`, which jsonb rejects), at most `maxLength` UTF-16 units — longer text is cut
 * (never inside a surrogate pair) and ends in "…".
 */
const cleanText = (text: string, maxLength: number): string => {
  const clean = text.replace(/\0/g, '').replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
  if (clean.length <= maxLength) return clean;
  let end = maxLength - 1;
  if (/[\uD800-\uDBFF]/.test(clean.charAt(end - 1))) end -= 1;
  return `${clean.slice(0, end)}…`;
};

const scrubValue = (value: unknown, depth: number, seen: Set<object>): JsonValue | undefined => {
  switch (typeof value) {
    case 'string':
      return CREDENTIAL_VALUE_PATTERNS.some((pattern) => pattern.test(value.trim())) ? REDACTED : cleanText(value, DETAILS_LIMITS.maxStringLength);
    case 'number':
      return Number.isFinite(value) ? value : null;
    case 'boolean':
      return value;
    case 'bigint':
      return value.toString();
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
  }
  if (value === null) return null;
  const object = value as object;
  if (object instanceof Date) return Number.isNaN(object.getTime()) ? null : object.toISOString();
  // Bytes are likely key material or token hashes; never store them.
  if (ArrayBuffer.isView(object) || object instanceof ArrayBuffer) return REDACTED;
  if (seen.has(object)) return '[circular]';
  if (depth >= DETAILS_LIMITS.maxDepth) return '[too deep]';
  seen.add(object);
  try {
    if (Array.isArray(object)) {
      const items = object.slice(0, DETAILS_LIMITS.maxArrayItems).map((item) => scrubValue(item, depth + 1, seen) ?? null);
      if (object.length > DETAILS_LIMITS.maxArrayItems) items.push(`…${object.length - DETAILS_LIMITS.maxArrayItems} more`);
      return items;
    }
    if (object instanceof Error) {
      return { name: cleanText(object.name, 100), message: scrubValue(object.message, depth + 1, seen) ?? null };
    }
    return scrubObject(object as Record<string, unknown>, depth, seen);
  } finally {
    seen.delete(object);
  }
};

const scrubObject = (object: Record<string, unknown>, depth: number, seen: Set<object>): JsonObject => {
  const result: JsonObject = {};
  let kept = 0;
  for (const [rawKey, rawValue] of Object.entries(object)) {
    if (!isAllowedDetailKey(rawKey, rawValue)) continue;
    const value = scrubValue(rawValue, depth + 1, seen);
    if (value === undefined) continue;
    if (kept === DETAILS_LIMITS.maxKeys) {
      result.truncatedKeys = true;
      break;
    }
    result[cleanText(rawKey, 100)] = value;
    kept += 1;
  }
  return result;
};

/**
 * Makes event details safe to keep for months: recursively drops keys that look like credentials
 * (see {@link isAllowedDetailKey}) and values that look like bearer tokens, turns everything into
 * plain JSON (Dates to ISO strings, bigints to strings, bytes redacted, cycles cut), and bounds the
 * size (long strings cut with "…", depth, array and key counts limited). When the result is still
 * larger than {@link DETAILS_LIMITS}.maxJsonLength, only the top-level entries that fit are kept
 * and `detailsTruncated: true` is added.
 */
export const scrubDetails = (details: Record<string, unknown> | null | undefined): JsonObject => {
  if (details === null || details === undefined || typeof details !== 'object' || Array.isArray(details)) return {};
  const scrubbed = scrubObject(details, 0, new Set([details]));
  if (JSON.stringify(scrubbed).length <= DETAILS_LIMITS.maxJsonLength) return scrubbed;
  const fitted: JsonObject = {};
  let length = 2 + '"detailsTruncated":true'.length;
  for (const [key, value] of Object.entries(scrubbed)) {
    const entryLength = JSON.stringify(key).length + 1 + JSON.stringify(value).length + 1;
    if (length + entryLength > DETAILS_LIMITS.maxJsonLength) continue;
    fitted[key] = value;
    length += entryLength;
  }
  fitted.detailsTruncated = true;
  return fitted;
};

// ---------------------------------------------------------------------------------------------
// Request metadata

/** An address `inet` accepts, or null: a malformed client address must not fail the transaction. */
const normaliseIp = (ip: string | null): string | null => {
  if (!ip) return null;
  const address = ip.trim().replace(/%.*$/, ''); // zone ids (fe80::1%eth0) are not inet syntax
  return isIP(address) === 0 ? null : address;
};

const optionalText = (text: string | null | undefined, maxLength: number) => {
  if (text === null || text === undefined) return null;
  const clean = cleanText(text, maxLength);
  return clean === '' ? null : clean;
};

// ---------------------------------------------------------------------------------------------
// Cursors

/** base64url of `[createdAtWithMicroseconds, id]`. */
const cursorSchema = z.tuple([z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/), z.string().uuid()]);

export const encodeCursor = (keyset: SecurityAuditKeyset): string =>
  Buffer.from(JSON.stringify([keyset.createdAt, keyset.id]), 'utf8').toString('base64url');

/** @throws {InvalidSecurityAuditQueryError} for anything {@link encodeCursor} did not produce. */
export const decodeCursor = (cursor: string): SecurityAuditKeyset => {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new InvalidSecurityAuditQueryError('cursor is not valid');
  }
  const result = cursorSchema.safeParse(parsed);
  if (!result.success || Number.isNaN(Date.parse(result.data[0]))) throw new InvalidSecurityAuditQueryError('cursor is not valid');
  return { createdAt: result.data[0], id: result.data[1].toLowerCase() };
};

const isoBound = (value: string | Date | undefined, name: string): string | undefined => {
  if (value === undefined) return undefined;
  const time = value instanceof Date ? value.getTime() : Date.parse(value);
  if (Number.isNaN(time)) throw new InvalidSecurityAuditQueryError(`${name} is not a valid timestamp`);
  return new Date(time).toISOString();
};

const toEvent = (row: SecurityEventRow): SecurityEvent => ({
  id: row.id,
  eventType: row.event_type,
  userId: row.user_id,
  sessionId: row.session_id,
  ip: row.ip,
  userAgent: row.user_agent,
  requestId: row.request_id,
  details: row.details,
  createdAt: row.created_at,
});

// ---------------------------------------------------------------------------------------------
// The service

export type SecurityAuditServiceDependencies = { store: SecurityAuditStore } & (
  | {
      /**
       * Receives one `info` line per event whose row committed — `{securityEvent,
       * securityEventId, userId, sessionId, requestId}`, never details — for log-based metrics
       * and alerts (infra/components/monitoring.ts), so a line must never claim a row that does
       * not exist. Written right after the COMMIT of the transaction that recorded the event (in
       * commit order within the process; none when it rolled back), or at once when the event
       * was recorded outside a transaction.
       */
      logger: Pick<Logger, 'info'>;
      /** Defers each line until its row committed: the `afterCommit` of the pool the callers use (app/db/after-commit.ts). */
      afterCommit: AfterCommit;
    }
  | { logger?: undefined; afterCommit?: undefined }
);

export type SecurityAudit = SecurityAuditService & SecurityAuditQueries;

export const createSecurityAuditService = ({ store, logger, afterCommit }: SecurityAuditServiceDependencies): SecurityAudit => ({
  /**
   * Appends `event` on `connection` with the request's id, ip and user agent and scrubbed details,
   * and schedules its log line for when the row commits (see {@link SecurityAuditServiceDependencies}).
   * Holds the chain lock until `connection`'s transaction ends: call it last in the transaction.
   * @throws when the insert fails (unknown type, malformed user/session id, or a serialization
   *   failure in a REPEATABLE READ transaction); the caller's transaction must then roll back.
   * @throws {UntrackedConnectionError} (with a logger) when `connection` does not come from the
   *   commit-hooks pool — a wiring mistake; inside a transaction that rolls the row back too.
   */
  record: async (connection, meta: RequestMeta, event: SecurityEventInput) => {
    const userId = event.userId ?? null;
    const sessionId = event.sessionId ?? null;
    const requestId = optionalText(meta.requestId, REQUEST_ID_MAX_LENGTH);
    const inserted = await store.insert(connection, {
      eventType: event.type,
      userId,
      sessionId,
      ip: normaliseIp(meta.ip),
      userAgent: optionalText(meta.userAgent, USER_AGENT_MAX_LENGTH),
      requestId,
      details: scrubDetails(event.details),
    });
    // Not now: until the caller's transaction commits, the row may still roll back.
    if (logger !== undefined) {
      afterCommit(connection, () =>
        logger.info({ securityEvent: event.type, securityEventId: inserted.id, userId, sessionId, requestId }, `security event ${event.type}`),
      );
    }
  },

  /** @see SecurityAuditStore.verifyChain */
  verifyChain: () => store.verifyChain(),

  /**
   * One page of events, newest first (created_at, then id, descending), filtered by type, user and
   * a [since, until) window. Pages are keyset-based, so rows appended meanwhile never shift them:
   * following `nextCursor` to the end returns every row that existed at the start exactly once.
   * @throws {InvalidSecurityAuditQueryError} for a limit outside 1–500, a bad bound or cursor.
   */
  list: async (query: SecurityAuditQuery): Promise<SecurityEventPage> => {
    const limit = query.limit ?? DEFAULT_PAGE_SIZE;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) {
      throw new InvalidSecurityAuditQueryError(`limit must be an integer from 1 to ${MAX_PAGE_SIZE}`);
    }
    if (query.userId !== undefined && !UUID_PATTERN.test(query.userId)) throw new InvalidSecurityAuditQueryError('userId is not a UUID');
    if (query.eventType !== undefined && !(securityEventTypes as readonly string[]).includes(query.eventType)) {
      throw new InvalidSecurityAuditQueryError('eventType is not a known security event type');
    }
    const rows = await store.list({
      eventType: query.eventType,
      userId: query.userId,
      since: isoBound(query.since, 'since'),
      until: isoBound(query.until, 'until'),
      after: query.cursor === undefined ? undefined : decodeCursor(query.cursor),
      limit: limit + 1,
    });
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return {
      items: page.map(toEvent),
      nextCursor: rows.length > limit && last ? encodeCursor({ createdAt: last.created_at_exact, id: last.id }) : null,
    };
  },

  /** Every known event type, with zeros for those that never occurred. */
  countsByType: async (): Promise<SecurityEventCounts> => {
    const counts = Object.fromEntries(securityEventTypes.map((type) => [type, { last1h: 0, last24h: 0, total: 0 }])) as SecurityEventCounts;
    for (const row of await store.countsByType()) {
      counts[row.event_type] = { last1h: row.last1h, last24h: row.last24h, total: Number(row.total) };
    }
    return counts;
  },
});
