/**
 * `createKaraxasClient`: the game client's view of the Karaxas API (contract §3–§6).
 *
 * Sessions. The access token lives in memory only. The refresh token is kept in memory too and,
 * when a `storage` hook is given, handed to it after every rotation so that a game can resume the
 * session after a restart (`resumeSession()`). One client per stored session: two clients
 * rotating the same refresh token trip the server's reuse detection, which signs the user out.
 *
 * Single-flight refresh. Every authenticated call goes through {@link authed}:
 *   1. it takes the current session — waiting for a refresh in flight, and starting one first when
 *      the access token is (about to be) expired by the client's clock;
 *   2. it sends the call with that access token;
 *   3. on a 401 it asks for a renewal *relative to the token it used*: if a refresh is in flight
 *      it waits for it; if the session already holds a newer token (another call refreshed in the
 *      meantime) it uses that one; only otherwise does it start a refresh; then it retries once.
 * `refreshing` holds the one promise of the refresh in flight; every caller awaits the same
 * promise, so however many calls fail together exactly one `POST /auth/refresh` is sent.
 * `invalid_refresh_token` / `refresh_token_reused` end the session (`signedOut` with that reason);
 * `426 client_update_required` emits `updateRequired` and keeps the session (an updated build can
 * resume it); network failures and 429 keep the session and reject the waiting calls.
 *
 * Every request carries `X-Client-Platform` and `X-Client-Version` (contract §1, §6).
 */
import { TypedEmitter, type EmitterOptions, type Listener } from './emitter.js';
import { clientError, KaraxasError } from './errors.js';
import { createTransport, errorFrom, expectBody, expectStatus, type FetchLike, type HttpRequest, type HttpResponse } from './http.js';
import { RealtimeConnection, type RealtimeEvents, type RealtimeOptions, type WebSocketConstructor } from './realtime.js';
import {
  chatMessageSchema,
  chatPageSchema,
  loginBodySchema,
  mfaChallengeSchema,
  mfaVerifyBodySchema,
  platformSchema,
  publicPolicyResponseSchema,
  recoveryCodesSchema,
  registerBodySchema,
  sessionSchema,
  tokenPairSchema,
  totpEnrollmentSchema,
  userSchema,
  versionSchema,
  wsTicketSchema,
  type ChatMessage,
  type ChatPage,
  type PublicPolicy,
  type PublicPolicyResponse,
  type ReleaseDrainFrame,
  type ReleasePlatform,
  type Session,
  type TokenPair,
  type TotpEnrollment,
  type User,
} from './schemas.js';
import { z } from 'zod';

// ---------------------------------------------------------------------------------------------
// Public types

/** What a persistence hook stores: never the access token. */
export type StoredSession = {
  refreshToken: string;
  sessionId: string;
  /** ISO-8601: after this the refresh token is useless. */
  refreshExpiresAt: string;
};

/**
 * Optional persistence of the refresh token (e.g. the platform's keychain or secure storage;
 * avoid plain localStorage on the web). `save(null)` means "forget it" (signed out).
 */
export type SessionStorageHook = {
  load(): StoredSession | null | Promise<StoredSession | null>;
  save(session: StoredSession | null): void | Promise<void>;
};

export type SignedOutReason =
  /** `logout()` (or revoking the current session by id). */
  | 'logout'
  /** Revoked elsewhere: websocket 4001, revoke-all, an ops revocation, MFA turned off. */
  | 'session_revoked'
  /** The refresh token expired or its session ended. */
  | 'invalid_refresh_token'
  /** The server saw a rotated refresh token again and signed every session of the user out. */
  | 'refresh_token_reused';

export type UpdateRequiredSource =
  /** 426 client_update_required on login, MFA verification or refresh (the login gate). */
  | 'login'
  | 'mfa_verify'
  | 'refresh'
  /** A `release.drain` frame: the socket closes with 4000 after `graceSeconds`. */
  | 'release.drain'
  /** The socket was closed with 4000 without a drain frame before it. */
  | 'socket_closed';

/** Everything a game needs for its update screen. */
export type UpdateRequired = {
  source: UpdateRequiredSource;
  platform: ReleasePlatform;
  /** The version this client runs (`options.version`). */
  currentVersion: string;
  /** The oldest version the server accepts, when known. */
  minSupportedVersion: string | null;
  /** The newest release (the drain's `version`, or the policy's `latestVersion`), when known. */
  latestVersion: string | null;
  forceUpdate: boolean;
  /** Drain only: seconds until the server closes the connection. */
  graceSeconds: number | null;
  /** Drain only: when the server closes the connection (epoch milliseconds, this device's clock). */
  closesAt: number | null;
  /** The platform's active policy (426 only; `getReleasePolicy()` reads it any time). */
  policy: PublicPolicy | null;
};

export type SignedIn = { user: User; sessionId: string };

export type LoginResult =
  | ({ mfaRequired: false } & SignedIn)
  | {
      mfaRequired: true;
      /** Seconds the challenge stays valid. */
      expiresIn: number;
      /**
       * Completes the sign-in with a TOTP code or a recovery code (same as `client.verifyMfa`).
       * One attempt per challenge: after `invalid_mfa_code`, call `login` again.
       */
      verifyMfa: (code: string) => Promise<SignedIn>;
    };

export type KaraxasClientEvents = RealtimeEvents & {
  signedIn: SignedIn & { method: 'password' | 'mfa' | 'resume' };
  signedOut: { reason: SignedOutReason };
  /** The access token was renewed (single-flight: once per refresh, whatever the number of waiting calls). */
  tokensRefreshed: { sessionId: string; expiresIn: number };
  updateRequired: UpdateRequired;
  /** Something went wrong that the SDK handled (storage failure, history catch-up failure, bad frame). */
  warning: { code: string; message: string; cause?: unknown };
};

export type KaraxasClientOptions = {
  /** The API's base URL, e.g. `https://api.karaxas.example` (a path prefix is kept). */
  baseUrl: string;
  /** Sent as X-Client-Platform. */
  platform: ReleasePlatform;
  /** This build's semver version, sent as X-Client-Version. */
  version: string;
  /** Default: the global `fetch`. */
  fetch?: FetchLike;
  /** Default: the global `WebSocket` (Node 20: pass the `ws` package's). */
  WebSocket?: WebSocketConstructor;
  /** Persistence hook for the refresh token (default: memory only). */
  storage?: SessionStorageHook;
  /** Per-request timeout (default 15 s). */
  timeoutMs?: number;
  /** Realtime tuning (backoff, keepalive, catch-up). */
  realtime?: RealtimeOptions;
  /** Receives errors thrown by event listeners (default: re-thrown asynchronously). */
  onListenerError?: EmitterOptions<KaraxasClientEvents>['onListenerError'];
};

// ---------------------------------------------------------------------------------------------

type SessionState = {
  accessToken: string;
  /** Epoch ms after which the client refreshes before calling (a margin before the real expiry). */
  accessRenewAt: number;
  refreshToken: string;
  refreshExpiresAt: number;
  sessionId: string;
};

const validationError = (error: z.ZodError, what: string) => {
  const details = error.issues.map((issue) => ({ path: issue.path.join('.') || '(body)', message: issue.message }));
  return clientError('validation_failed', `Invalid ${what}: ${details.map((d) => `${d.path} ${d.message}`).join('; ')}`, details);
};

const parseInput = <S extends z.ZodTypeAny>(schema: S, input: unknown, what: string): z.output<S> => {
  const parsed = schema.safeParse(input);
  if (!parsed.success) throw validationError(parsed.error, what);
  return parsed.data as z.output<S>;
};

const SESSION_ENDING_CODES = new Set(['invalid_refresh_token', 'refresh_token_reused']);

export const createKaraxasClient = (options: KaraxasClientOptions) => {
  const platform = parseInput(platformSchema, options.platform, 'platform');
  const version: string = parseInput(versionSchema, options.version, 'version');
  const globalFetch = (globalThis as { fetch?: FetchLike }).fetch;
  const doFetch: FetchLike | undefined = options.fetch ?? (globalFetch ? (url, init) => globalFetch(url, init) : undefined);
  if (!doFetch) throw clientError('validation_failed', 'This runtime has no fetch: pass options.fetch');
  const transport = createTransport({
    baseUrl: options.baseUrl,
    fetch: doFetch,
    headers: { 'x-client-platform': platform, 'x-client-version': version },
    timeoutMs: options.timeoutMs ?? 15_000,
  });
  const events = new TypedEmitter<KaraxasClientEvents>({ onListenerError: options.onListenerError });
  const warn = (code: string, message: string, cause?: unknown) => events.emit('warning', { code, message, cause });

  let session: SessionState | null = null;
  let user: User | null = null;
  let refreshing: Promise<SessionState> | null = null;
  let challenge: { mfaToken: string; expiresAt: number } | null = null;

  const notSignedIn = () => clientError('not_signed_in', 'Not signed in');

  const toSessionState = (pair: TokenPair): SessionState => {
    const now = Date.now();
    // Renew a little before the real expiry: a quarter of the lifetime, at most 30 s.
    const margin = Math.min(30_000, pair.expiresIn * 250);
    return {
      accessToken: pair.accessToken,
      accessRenewAt: now + pair.expiresIn * 1000 - margin,
      refreshToken: pair.refreshToken,
      refreshExpiresAt: now + pair.refreshExpiresIn * 1000,
      sessionId: pair.sessionId,
    };
  };

  const persist = async () => {
    if (!options.storage) return;
    const current = session;
    try {
      await options.storage.save(
        current
          ? { refreshToken: current.refreshToken, sessionId: current.sessionId, refreshExpiresAt: new Date(current.refreshExpiresAt).toISOString() }
          : null,
      );
    } catch (error) {
      warn('storage_failed', 'The session storage hook failed', error);
    }
  };

  // ---- realtime (created up front: it holds the channels across sessions of the same user) ----

  const realtime = new RealtimeConnection(
    {
      WebSocket: () => {
        const Constructor = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
        if (!Constructor) throw clientError('validation_failed', 'This runtime has no WebSocket: pass options.WebSocket (in Node 20, the ws package)');
        return Constructor;
      },
      fetchTicket: async () => expectBody(await authed({ method: 'POST', path: '/auth/ws-ticket' }), 201, wsTicketSchema, 'POST /auth/ws-ticket').ticket,
      webSocketUrl: transport.webSocketUrl,
      history: (channel, limit) => chatHistory(channel, { limit }),
      currentUserId: () => user?.id ?? null,
      emit: (event, payload) => events.emit(event, payload as KaraxasClientEvents[typeof event]),
      warn,
      onSessionRevoked: () => void endSession('session_revoked'),
      onDrain: (frame: ReleaseDrainFrame) =>
        events.emit('updateRequired', {
          source: 'release.drain',
          platform,
          currentVersion: version,
          minSupportedVersion: frame.minSupportedVersion,
          latestVersion: frame.version,
          forceUpdate: frame.forceUpdate,
          graceSeconds: frame.graceSeconds,
          closesAt: Date.now() + frame.graceSeconds * 1000,
          policy: null,
        }),
      onDrainClose: () => void announceUpdate('socket_closed', null),
    },
    options.realtime,
  );

  // ---- session lifecycle ----------------------------------------------------------------------

  /** Clears the session locally (idempotent) and tells the game. */
  const endSession = async (reason: SignedOutReason) => {
    if (!session && !challenge) return;
    const hadSession = session !== null;
    session = null;
    user = null;
    challenge = null;
    realtime.stop('signed_out');
    if (hadSession) events.emit('signedOut', { reason });
    await persist();
  };

  /** Emits `updateRequired` for a 426, with the platform's policy when it can be read. */
  const announceUpdate = async (source: UpdateRequiredSource, response: HttpResponse | null) => {
    let policy: PublicPolicy | null = null;
    try {
      policy = (await getReleasePolicy()).policy;
    } catch {
      // Offline or blocked: the header (when readable) still names the minimum.
    }
    events.emit('updateRequired', {
      source,
      platform,
      currentVersion: version,
      minSupportedVersion: policy?.minSupportedVersion ?? response?.headers.get('x-min-supported-version') ?? null,
      latestVersion: policy?.latestVersion ?? null,
      forceUpdate: policy?.forceUpdate ?? true,
      graceSeconds: null,
      closesAt: null,
      policy,
    });
  };

  /** The one refresh in flight, started when there is none. */
  const refreshSession = (): Promise<SessionState> => {
    if (refreshing) return refreshing;
    const from = session;
    if (!from) return Promise.reject(notSignedIn());
    const flight = (async () => {
      const response = await transport.send({ method: 'POST', path: '/auth/refresh', body: { refreshToken: from.refreshToken } });
      if (response.status === 200) {
        const pair = expectBody(response, 200, tokenPairSchema, 'POST /auth/refresh');
        if (session !== from) {
          // Signed out (or replaced) while the refresh was in flight: do not leave that session alive.
          void transport.send({ method: 'POST', path: '/auth/logout', token: pair.accessToken }).catch(() => undefined);
          throw notSignedIn();
        }
        const next = toSessionState(pair);
        session = next;
        events.emit('tokensRefreshed', { sessionId: pair.sessionId, expiresIn: pair.expiresIn });
        // Stored before anyone uses the new pair: a restart never resumes with the rotated-away token.
        await persist();
        return next;
      }
      const error = errorFrom(response, 'POST /auth/refresh');
      if (SESSION_ENDING_CODES.has(error.code)) {
        if (session === from) await endSession(error.code as SignedOutReason);
      } else if (response.status === 400) {
        // A refresh token the server cannot even parse (corrupted storage): the session is unusable.
        if (session === from) await endSession('invalid_refresh_token');
      } else if (error.code === 'client_update_required') await announceUpdate('refresh', response);
      throw error;
    })();
    refreshing = flight;
    flight
      .finally(() => {
        if (refreshing === flight) refreshing = null;
      })
      .catch(() => undefined);
    return flight;
  };

  /** The session to call with: after the refresh in flight, or a new one when the token is due. */
  const usableSession = async (): Promise<SessionState> => {
    if (refreshing) return refreshing;
    if (!session) throw notSignedIn();
    if (Date.now() >= session.accessRenewAt) return refreshSession();
    return session;
  };

  /** After a 401 with `used`: the newer session if someone already renewed it, else the (one) refresh. */
  const renewAfter = async (used: SessionState): Promise<SessionState> => {
    if (refreshing) return refreshing;
    if (!session) throw notSignedIn();
    if (session !== used) return session;
    return refreshSession();
  };

  /** An authenticated call: single-flight refresh and one retry on 401. */
  const authed = async (request: Omit<HttpRequest, 'token'>): Promise<HttpResponse> => {
    const first = await usableSession();
    const response = await transport.send({ ...request, token: first.accessToken });
    if (response.status !== 401) return response;
    const renewed = await renewAfter(first);
    return transport.send({ ...request, token: renewed.accessToken });
  };

  const fetchMe = async (): Promise<User> => {
    const body = expectBody(await authed({ method: 'GET', path: '/auth/me' }), 200, z.object({ user: userSchema }), 'GET /auth/me');
    user = body.user;
    return body.user;
  };

  const adopt = async (pair: TokenPair, method: 'password' | 'mfa' | 'resume'): Promise<SignedIn> => {
    session = toSessionState(pair);
    challenge = null;
    const current = session;
    await persist();
    const me = await fetchMe();
    if (session?.sessionId !== current.sessionId) throw notSignedIn();
    events.emit('signedIn', { user: me, sessionId: current.sessionId, method });
    return { user: me, sessionId: current.sessionId };
  };

  const signInResponse = async (response: HttpResponse, source: 'login' | 'mfa_verify', what: string) => {
    if (response.status === 426) {
      await announceUpdate(source, response);
      throw errorFrom(response, what);
    }
    if (response.status !== 200) throw errorFrom(response, what);
  };

  const verifyMfa = async (code: string): Promise<SignedIn> => {
    const pending = challenge;
    if (!pending || Date.now() > pending.expiresAt) {
      challenge = null;
      throw clientError('no_mfa_challenge', 'No MFA challenge is pending (or it expired): sign in again');
    }
    const body = parseInput(mfaVerifyBodySchema, { mfaToken: pending.mfaToken, code }, 'code');
    const response = await transport.send({ method: 'POST', path: '/auth/mfa/verify', body });
    // The server consumes a challenge with its first attempt, whatever the outcome: after a wrong
    // code the player signs in again.
    if (challenge === pending) challenge = null;
    await signInResponse(response, 'mfa_verify', 'POST /auth/mfa/verify');
    return adopt(expectBody(response, 200, tokenPairSchema, 'POST /auth/mfa/verify'), 'mfa');
  };

  const getReleasePolicy = async (): Promise<PublicPolicyResponse> =>
    expectBody(
      await transport.send({ method: 'GET', path: '/release/policy', query: { platform, version } }),
      200,
      publicPolicyResponseSchema,
      'GET /release/policy',
    );

  const chatHistory = async (channel: string, query: { before?: string; limit?: number } = {}): Promise<ChatPage> =>
    expectBody(
      await authed({ method: 'GET', path: `/chat/channels/${encodeURIComponent(channel)}/messages`, query }),
      200,
      chatPageSchema,
      'GET /chat/channels/:channel/messages',
    );

  const client = {
    platform,
    version,

    /** Adds a listener; returns a function that removes it. */
    on: <K extends keyof KaraxasClientEvents>(event: K, listener: Listener<KaraxasClientEvents[K]>) => events.on(event, listener),
    once: <K extends keyof KaraxasClientEvents>(event: K, listener: Listener<KaraxasClientEvents[K]>) => events.once(event, listener),
    off: <K extends keyof KaraxasClientEvents>(event: K, listener: Listener<KaraxasClientEvents[K]>) => events.off(event, listener),
    /** The next payload of `event` (matching `filter`), as a promise. */
    next: <K extends keyof KaraxasClientEvents>(event: K, filter?: (payload: KaraxasClientEvents[K]) => boolean) => events.next(event, filter),

    get isSignedIn() {
      return session !== null;
    },
    /** The signed-in user as last read (`me()` refreshes it). */
    get user() {
      return user;
    },
    get sessionId() {
      return session?.sessionId ?? null;
    },

    /** `POST /auth/register` → the new user (not signed in: call `login`). */
    register: async (input: { email: string; password: string; displayName: string }): Promise<User> => {
      const body = parseInput(registerBodySchema, { email: input.email, password: input.password, displayName: input.displayName }, 'registration');
      const response = await transport.send({ method: 'POST', path: '/auth/register', body });
      return expectBody(response, 201, z.object({ user: userSchema }), 'POST /auth/register').user;
    },

    /**
     * `POST /auth/login`. Resolves `{mfaRequired: false, user, sessionId}` when signed in, or
     * `{mfaRequired: true, expiresIn, verifyMfa}` when TOTP is on. A 426 emits `updateRequired`
     * before rejecting with `client_update_required`.
     */
    login: async (input: { email: string; password: string }): Promise<LoginResult> => {
      if (session) throw clientError('already_signed_in', 'Already signed in: call logout() first');
      const body = parseInput(loginBodySchema, { email: input.email, password: input.password }, 'credentials');
      const response = await transport.send({ method: 'POST', path: '/auth/login', body });
      await signInResponse(response, 'login', 'POST /auth/login');
      const mfa = mfaChallengeSchema.safeParse(response.body);
      if (mfa.success) {
        challenge = { mfaToken: mfa.data.mfaToken, expiresAt: Date.now() + mfa.data.expiresIn * 1000 };
        return { mfaRequired: true, expiresIn: mfa.data.expiresIn, verifyMfa };
      }
      const signedIn = await adopt(expectBody(response, 200, tokenPairSchema, 'POST /auth/login'), 'password');
      return { mfaRequired: false, ...signedIn };
    },

    /** `POST /auth/mfa/verify` for the pending challenge of the last `login`. */
    verifyMfa,

    /**
     * Resumes the session saved by the storage hook: one refresh, then `me`. Resolves the user, or
     * null when nothing was saved or the saved session is over (`signedOut` tells why).
     */
    resumeSession: async (): Promise<User | null> => {
      if (session) return user ?? fetchMe();
      const saved = await options.storage?.load();
      if (!saved || Date.parse(saved.refreshExpiresAt) <= Date.now()) return null;
      session = {
        accessToken: '',
        accessRenewAt: 0,
        refreshToken: saved.refreshToken,
        refreshExpiresAt: Date.parse(saved.refreshExpiresAt),
        sessionId: saved.sessionId,
      };
      try {
        await refreshSession();
      } catch (error) {
        if (error instanceof KaraxasError && SESSION_ENDING_CODES.has(error.code)) return null;
        throw error;
      }
      const me = await fetchMe();
      events.emit('signedIn', { user: me, sessionId: saved.sessionId, method: 'resume' });
      return me;
    },

    /** Renews the access token now (joins the refresh in flight, if any). */
    refresh: async (): Promise<void> => {
      await refreshSession();
    },

    /**
     * Signs out: closes the realtime connection, revokes the session on the server
     * (`POST /auth/logout`) and forgets it locally. Resolves false when the server could not be
     * told (offline); the local session is gone either way.
     */
    logout: async (): Promise<boolean> => {
      if (!session) {
        await endSession('logout');
        return false;
      }
      realtime.stop('signed_out');
      try {
        const response = await authed({ method: 'POST', path: '/auth/logout' });
        return response.status === 204;
      } catch {
        return false;
      } finally {
        await endSession('logout');
      }
    },

    /** `GET /auth/me`. */
    me: fetchMe,

    /** `GET /auth/sessions`: the active sessions (`current` marks this one). */
    sessions: async (): Promise<Session[]> =>
      expectBody(await authed({ method: 'GET', path: '/auth/sessions' }), 200, z.object({ sessions: z.array(sessionSchema) }), 'GET /auth/sessions')
        .sessions,

    /** `DELETE /auth/sessions/:id`; revoking the current session signs out (`logout`). */
    revokeSession: async (id: string): Promise<void> => {
      parseInput(z.string().uuid(), id, 'session id');
      const current = session?.sessionId === id;
      if (current) realtime.stop('signed_out');
      expectStatus(await authed({ method: 'DELETE', path: `/auth/sessions/${id}` }), 204, 'DELETE /auth/sessions/:id');
      if (current) await endSession('logout');
    },

    /** `POST /auth/sessions/revoke-all`: every session, this one included (`signedOut` with `session_revoked`). */
    revokeAllSessions: async (): Promise<number> => {
      const body = expectBody(
        await authed({ method: 'POST', path: '/auth/sessions/revoke-all' }),
        200,
        z.object({ revoked: z.number().int() }),
        'POST /auth/sessions/revoke-all',
      );
      await endSession('session_revoked');
      return body.revoked;
    },

    /** TOTP management (contract §4). */
    mfa: {
      /** Starts enrollment: the secret and otpauth URI for an authenticator app. */
      enroll: async (): Promise<TotpEnrollment> =>
        expectBody(await authed({ method: 'POST', path: '/auth/mfa/totp/enroll' }), 200, totpEnrollmentSchema, 'POST /auth/mfa/totp/enroll'),
      /** Turns TOTP on with a first code; resolves the recovery codes (shown once). */
      activate: async (code: string): Promise<string[]> =>
        expectBody(
          await authed({ method: 'POST', path: '/auth/mfa/totp/activate', body: { code } }),
          200,
          recoveryCodesSchema,
          'POST /auth/mfa/totp/activate',
        ).recoveryCodes,
      /** Turns TOTP off; the server signs every session out (`signedOut` with `session_revoked`). */
      disable: async (code: string): Promise<void> => {
        expectStatus(await authed({ method: 'POST', path: '/auth/mfa/totp/disable', body: { code } }), 204, 'POST /auth/mfa/totp/disable');
        await endSession('session_revoked');
      },
      /** New recovery codes (the old ones stop working). */
      regenerateRecoveryCodes: async (code: string): Promise<string[]> =>
        expectBody(
          await authed({ method: 'POST', path: '/auth/mfa/recovery-codes', body: { code } }),
          200,
          recoveryCodesSchema,
          'POST /auth/mfa/recovery-codes',
        ).recoveryCodes,
    },

    /** The HTTP twins of the chat frames. */
    chat: {
      /** A page of history, newest first; pass `nextCursor` as `before` for older messages. */
      history: chatHistory,
      /** Sends over HTTP (the same message again for a repeated clientMsgId). */
      post: async (channel: string, text: string, input: { clientMsgId?: string } = {}): Promise<ChatMessage> =>
        expectBody(
          await authed({
            method: 'POST',
            path: `/chat/channels/${encodeURIComponent(channel)}/messages`,
            body: { text, clientMsgId: input.clientMsgId ?? realtime.newClientMsgId() },
          }),
          201,
          chatMessageSchema,
          'POST /chat/channels/:channel/messages',
        ),
    },

    /** `GET /release/policy` for this client's platform and version (public; no session needed). */
    getReleasePolicy,

    /** The realtime connection: `connect`, `join`, `send`, `leave`, `disconnect`, `state`. */
    realtime,

    /** Stops the realtime connection and its timers (the session stays; nothing is sent). */
    dispose: () => {
      realtime.stop('client');
    },
  };
  return client;
};

export type KaraxasClient = ReturnType<typeof createKaraxasClient>;
