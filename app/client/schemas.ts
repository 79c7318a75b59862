/**
 * The wire schemas the client SDK speaks, from the single source of truth shared with the server.
 *
 * This module imports ONLY schema modules (zod, semver and app/auth/schemas.ts,
 * app/ops/schemas.ts, app/realtime/schemas.ts, app/mfa/schemas.ts — which the server's routes,
 * services and websocket gateway use themselves), never a server module, so that the SDK bundles
 * for browsers and game engines. Every schema re-exported here is the server's own object.
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
// Realtime (app/realtime/schemas.ts) and MFA (app/mfa/schemas.ts)

export {
  channelNamePattern,
  channelNameSchema,
  chatMessageSchema,
  chatPageSchema,
  clientFrameSchema,
  clientMsgIdPattern,
  clientMsgIdSchema,
  errorDetailSchema,
  errorFrameSchema,
  MAX_FRAME_BYTES,
  releaseDrainFrameSchema,
  serverFrameSchema,
  wsTicketSchema,
  type ChatMessage,
  type ChatPage,
  type ClientFrame,
  type ErrorDetail,
  type ErrorFrame,
  type ReleaseDrainFrame,
  type ServerFrame,
  type WsTicket,
} from '../realtime/schemas.js';
export {
  mfaCodeBodySchema,
  mfaCodeSchema,
  mfaVerifyBodySchema,
  RECOVERY_CODE_COUNT,
  recoveryCodesSchema,
  totpEnrollmentSchema,
  type RecoveryCodes,
  type TotpEnrollment,
} from '../mfa/schemas.js';

import { errorDetailSchema } from '../realtime/schemas.js';

// ---------------------------------------------------------------------------------------------
// Error envelope (contract §1)

export const errorEnvelopeSchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    requestId: z.string(),
    details: z.array(errorDetailSchema).optional(),
  }),
});
