/**
 * `karaxas-backend/client`: the SDK for game clients (browsers and game engines' JavaScript
 * runtimes). No Node-only API: `fetch` and `WebSocket` (both injectable), timers and
 * `crypto.getRandomValues` when present. Typed from the server's own zod schemas.
 *
 * See docs/client.md.
 */
export {
  createKaraxasClient,
  type KaraxasClient,
  type KaraxasClientEvents,
  type KaraxasClientOptions,
  type LoginResult,
  type SessionStorageHook,
  type SignedIn,
  type SignedOutReason,
  type StoredSession,
  type UpdateRequired,
  type UpdateRequiredSource,
} from './client.js';
export { TypedEmitter, type EmitterOptions, type Listener } from './emitter.js';
export { isKaraxasError, KaraxasError, type ClientErrorCode, type KaraxasErrorSource } from './errors.js';
export type { FetchInit, FetchLike, FetchResponseLike } from './http.js';
export {
  backoffDelay,
  CloseCode,
  newClientMsgId,
  RealtimeConnection,
  type ChatErrorEvent,
  type RealtimeEvents,
  type RealtimeOptions,
  type RealtimeState,
  type RealtimeStopReason,
  type WebSocketConstructor,
  type WebSocketLike,
} from './realtime.js';
export * from './schemas.js';
