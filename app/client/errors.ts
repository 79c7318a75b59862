/**
 * The one error type of the client SDK: every rejected promise carries a {@link KaraxasError}.
 */
import type { ErrorDetail } from './schemas.js';

/** Where a failure came from. */
export type KaraxasErrorSource =
  /** The server answered with its error envelope (or another non-success status). */
  | 'server'
  /** Refused locally before anything was sent (invalid input, not signed in, socket closed…). */
  | 'client'
  /** No answer: offline, DNS, connection refused or reset, TLS, timeout. */
  | 'network'
  /** The server answered something that does not match the contract. */
  | 'response';

/**
 * Codes produced by the SDK itself (the server's codes — `invalid_credentials`,
 * `client_update_required`, `rate_limited`, … — are passed through unchanged).
 */
export type ClientErrorCode =
  | 'not_signed_in'
  | 'already_signed_in'
  | 'no_mfa_challenge'
  | 'validation_failed'
  | 'connection_failed'
  | 'timeout'
  | 'invalid_response'
  | 'connection_closed'
  | 'not_joined'
  | 'frame_too_large'
  | 'send_timeout'
  | 'join_timeout';

export class KaraxasError extends Error {
  override name = 'KaraxasError';
  /** snake_case code: the server's (contract §1) or one of {@link ClientErrorCode}. */
  readonly code: string;
  /** HTTP status; 0 when no response was received (or nothing was sent). */
  readonly status: number;
  readonly source: KaraxasErrorSource;
  /** The server's request id (quote it in bug reports), when there is one. */
  readonly requestId: string | null;
  /** Validation details (`{path, message}`), for `validation_failed`. */
  readonly details: ErrorDetail[] | undefined;
  /** Seconds to wait before retrying (429 `Retry-After`, chat `retryAfter`), when given. */
  readonly retryAfter: number | null;

  constructor(init: {
    code: string;
    message: string;
    status?: number;
    source: KaraxasErrorSource;
    requestId?: string | null;
    details?: ErrorDetail[];
    retryAfter?: number | null;
    cause?: unknown;
  }) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code;
    this.status = init.status ?? 0;
    this.source = init.source;
    this.requestId = init.requestId ?? null;
    this.details = init.details;
    this.retryAfter = init.retryAfter ?? null;
  }
}

export const clientError = (code: ClientErrorCode, message: string, details?: ErrorDetail[]) =>
  new KaraxasError({ code, message, source: 'client', details });

export const isKaraxasError = (error: unknown, code?: string): error is KaraxasError =>
  error instanceof KaraxasError && (code === undefined || error.code === code);
