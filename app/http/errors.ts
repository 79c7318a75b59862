/**
 * The closed registry of error codes and their HTTP statuses. Every error the API returns is
 * one of these; anything else becomes `500 internal_error` with its cause logged, never sent.
 */
export const errorRegistry = {
  bad_request: { status: 400, message: 'The request is malformed.' },
  validation_failed: { status: 400, message: 'The request is invalid.' },
  invalid_json: { status: 400, message: 'The request body is not valid JSON.' },
  unauthorized: { status: 401, message: 'Authentication is required.' },
  invalid_credentials: { status: 401, message: 'The e-mail address or password is incorrect.' },
  invalid_refresh_token: { status: 401, message: 'The refresh token is invalid or expired.' },
  refresh_token_reused: { status: 401, message: 'The refresh token was already used; all sessions were signed out.' },
  invalid_mfa_code: { status: 401, message: 'The code is incorrect.' },
  invalid_mfa_token: { status: 401, message: 'The MFA challenge is invalid or expired.' },
  invalid_ws_ticket: { status: 401, message: 'The websocket ticket is invalid, used or expired.' },
  forbidden: { status: 403, message: 'This action is not allowed.' },
  origin_not_allowed: { status: 403, message: 'This origin is not allowed.' },
  mfa_required: { status: 403, message: 'This action requires a multi-factor authenticated session.' },
  password_reset_required: { status: 403, message: 'A password reset is required before signing in.' },
  not_found: { status: 404, message: 'Not found.' },
  method_not_allowed: { status: 405, message: 'This method is not allowed on this resource.' },
  request_timeout: { status: 408, message: 'The request took too long to arrive.' },
  email_taken: { status: 409, message: 'An account with this e-mail address already exists.' },
  conflict: { status: 409, message: 'The request conflicts with the current state.' },
  mfa_already_enabled: { status: 409, message: 'Multi-factor authentication is already enabled.' },
  mfa_not_enabled: { status: 409, message: 'Multi-factor authentication is not enabled.' },
  payload_too_large: { status: 413, message: 'The request body is too large.' },
  unsupported_media_type: { status: 415, message: 'The request body must be application/json.' },
  client_update_required: { status: 426, message: 'This client version is no longer supported; please update.' },
  rate_limited: { status: 429, message: 'Too many requests; retry later.' },
  muted: { status: 429, message: 'You are temporarily muted after repeated chat violations; retry later.' },
  account_locked: { status: 429, message: 'Too many failed attempts; retry later.' },
  internal_error: { status: 500, message: 'An internal error occurred.' },
  not_ready: { status: 503, message: 'The service is not ready.' },
  service_unavailable: { status: 503, message: 'The service is temporarily unavailable; retry later.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof errorRegistry;

export type ErrorDetail = { path: string; message: string };

/**
 * An error meant for the client. `message` defaults to the registry's text; pass a specific one
 * only when it is safe to show (no internals).
 */
export class AppError extends Error {
  readonly status: number;
  readonly details: ErrorDetail[] | undefined;
  readonly headers: Record<string, string>;

  constructor(
    readonly code: ErrorCode,
    options: { message?: string; details?: ErrorDetail[]; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(options.message ?? errorRegistry[code].message, { cause: options.cause });
    this.name = 'AppError';
    this.status = errorRegistry[code].status;
    this.details = options.details;
    this.headers = options.headers ?? {};
  }
}

/**
 * Unique and check constraints, by name, and the client error each one means. Only constraints
 * listed here become 4xx; any other violation is a bug and stays a 500.
 */
export const constraintErrors: Record<string, ErrorCode> = {
  users_email_key: 'email_taken',
};
