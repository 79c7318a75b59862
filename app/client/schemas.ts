/**
 * The wire schemas the client SDK speaks, from the single source of truth shared with the server.
 *
 * This module imports ONLY schema modules (zod, semver and app/auth/schemas.ts,
 * app/ops/schemas.ts — which the server routes use themselves), never a server module, so that
 * the SDK bundles for browsers and game engines.
 *
 * A few schemas the SDK needs still live inside server-only modules (their modules import Koa,
 * the database and Node's crypto): the websocket ticket and chat message bodies
 * (app/realtime/routes.ts), the channel / clientMsgId patterns (app/realtime/service.ts), the
 * frame limit and frames (app/realtime/gateway.ts) and the MFA bodies (app/mfa/routes.ts). They
 * are restated below, marked "server copy", and test/client-sdk.test.ts checks that each one
 * still agrees with the server's. Once those definitions move into schema-only modules (e.g.
 * app/realtime/schemas.ts, app/mfa/schemas.ts), replace the copies by re-exports.
 */
import { z } from 'zod';

export {
  loginBodySchema,
  mfaChallengeSchema,
  refreshBodySchema,
  registerBodySchema,
  sessionSchema,
  tokenPairSchema,
  userSchema,
} from '../auth/schemas.js';
export {
  platformSchema,
  publicPolicyQuerySchema,
  publicPolicyResponseSchema,
  publicPolicySchema,
  releasePlatforms,
  versionSchema,
  type PublicPolicyResponse,
  type ReleasePlatform,
} from '../ops/schemas.js';

import type { sessionSchema, tokenPairSchema, userSchema } from '../auth/schemas.js';
import type { publicPolicySchema } from '../ops/schemas.js';

export type User = z.infer<typeof userSchema>;
export type TokenPair = z.infer<typeof tokenPairSchema>;
export type Session = z.infer<typeof sessionSchema>;
export type PublicPolicy = z.infer<typeof publicPolicySchema>;

// ---------------------------------------------------------------------------------------------
// Error envelope (contract §1)

export const errorDetailSchema = z.object({ path: z.string(), message: z.string() });
export const errorEnvelopeSchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    requestId: z.string(),
    details: z.array(errorDetailSchema).optional(),
  }),
});
export type ErrorDetail = z.infer<typeof errorDetailSchema>;

// ---------------------------------------------------------------------------------------------
// Server copies (see the header): realtime and MFA

/** Server copy of app/realtime/service.ts `channelNamePattern`. */
export const channelNamePattern = /^[a-z0-9][a-z0-9._-]{0,63}$/;
/** Server copy of app/realtime/service.ts `clientMsgIdPattern`. */
export const clientMsgIdPattern = /^[A-Za-z0-9._:-]{1,64}$/;
/** Server copy of app/realtime/gateway.ts `MAX_FRAME_BYTES`: a larger frame closes the socket with 1009. */
export const MAX_FRAME_BYTES = 4096;

/** Server copy of the `POST /auth/ws-ticket` 201 body (app/realtime/routes.ts). */
export const wsTicketSchema = z.object({ ticket: z.string(), expiresIn: z.number().int() });

/** Server copy of app/realtime/routes.ts `chatMessageSchema`. */
export const chatMessageSchema = z.object({
  id: z.string().uuid(),
  channel: z.string(),
  userId: z.string().uuid(),
  displayName: z.string(),
  text: z.string(),
  sentAt: z.string().datetime(),
  clientMsgId: z.string().nullable(),
});
export type ChatMessage = z.infer<typeof chatMessageSchema>;

/** `GET /chat/channels/:channel/messages` → a page, newest first (pass nextCursor as `before`). */
export const chatPageSchema = z.object({ items: z.array(chatMessageSchema), nextCursor: z.string().nullable() });
export type ChatPage = z.infer<typeof chatPageSchema>;

/** Server copy of app/mfa/routes.ts `mfaCodeSchema`: a TOTP code or a recovery code. */
export const mfaCodeSchema = z.string().trim().min(6, 'must be a 6-digit code or a recovery code').max(64);
/** Server copy of app/mfa/routes.ts `mfaVerifyBodySchema`. */
export const mfaVerifyBodySchema = z.object({ mfaToken: z.string().min(1).max(128), code: mfaCodeSchema }).strict();
/** Server copy of app/mfa/routes.ts `totpEnrollmentSchema`. */
export const totpEnrollmentSchema = z.object({ secret: z.string(), otpauthUri: z.string().startsWith('otpauth://totp/') });
export type TotpEnrollment = z.infer<typeof totpEnrollmentSchema>;
/** Server copy of app/mfa/routes.ts `recoveryCodesSchema` (RECOVERY_CODE_COUNT = 10). */
export const recoveryCodesSchema = z.object({ recoveryCodes: z.array(z.string()).length(10) });

// ---------------------------------------------------------------------------------------------
// Websocket frames (contract §5; server copy of app/realtime/gateway.ts `ServerFrame`)

export const releaseDrainFrameSchema = z.object({
  type: z.literal('release.drain'),
  version: z.string(),
  minSupportedVersion: z.string(),
  forceUpdate: z.boolean(),
  graceSeconds: z.number().int(),
});
export type ReleaseDrainFrame = z.infer<typeof releaseDrainFrameSchema>;

export const errorFrameSchema = z.object({
  type: z.literal('error'),
  code: z.string(),
  message: z.string().optional(),
  retryAfter: z.number().optional(),
  clientMsgId: z.string().optional(),
  channel: z.string().optional(),
  details: z.array(errorDetailSchema).optional(),
});
export type ErrorFrame = z.infer<typeof errorFrameSchema>;

/** Every frame the server sends; frames of other types are ignored (forward compatibility). */
export const serverFrameSchema = z.discriminatedUnion('type', [
  chatMessageSchema.extend({ type: z.literal('chat.message') }),
  z.object({ type: z.literal('chat.joined'), channel: z.string() }),
  z.object({ type: z.literal('chat.left'), channel: z.string() }),
  z.object({ type: z.literal('pong') }),
  errorFrameSchema,
  releaseDrainFrameSchema,
]);
export type ServerFrame = z.infer<typeof serverFrameSchema>;

/** Frames the client sends. */
export type ClientFrame =
  | { type: 'chat.join'; channel: string }
  | { type: 'chat.leave'; channel: string }
  | { type: 'chat.send'; channel: string; text: string; clientMsgId: string }
  | { type: 'ping' };
