/**
 * Wire schemas of the realtime feature (contract §3, §5): websocket tickets, chat messages and
 * pages, chat sends, and the websocket frames.
 *
 * Shared by the routes (./routes.ts), the service (./service.ts), the gateway (./gateway.ts),
 * the OpenAPI document and the client SDK (app/client), so this module imports nothing but zod:
 * no Koa, no database, no Node built-ins. It must bundle for browsers and game engines.
 */
import { z } from 'zod';

// ---------------------------------------------------------------------------------------------
// Limits and patterns

/** Chat channel names: lowercase letters, digits, `.`, `_`, `-`; 1–64 characters (also a CHECK in the table). */
export const channelNamePattern = /^[a-z0-9][a-z0-9._-]{0,63}$/;
/** A client's idempotency key of a chat send. */
export const clientMsgIdPattern = /^[A-Za-z0-9._:-]{1,64}$/;
/** The largest websocket frame, in bytes: a larger one closes the socket with 1009. */
export const MAX_FRAME_BYTES = 4096;

export const channelNameSchema = z
  .string()
  .regex(channelNamePattern, 'must be 1-64 characters: a-z, 0-9, ".", "_", "-", starting with a letter or digit');
export const clientMsgIdSchema = z.string().regex(clientMsgIdPattern, 'must be 1-64 characters: A-Z, a-z, 0-9, ".", "_", ":", "-"');

/** A field problem (`details` of the error envelope, contract §1, and of the `error` frame). */
export const errorDetailSchema = z.object({ path: z.string(), message: z.string() });
export type ErrorDetail = z.infer<typeof errorDetailSchema>;

// ---------------------------------------------------------------------------------------------
// Websocket tickets

/** `POST /auth/ws-ticket` → 201: a single-use ticket for `GET /ws?ticket=`, bound to the session. */
export const wsTicketSchema = z.object({ ticket: z.string(), expiresIn: z.number().int() });
export type WsTicket = z.infer<typeof wsTicketSchema>;

// ---------------------------------------------------------------------------------------------
// Chat

/**
 * C0 and C1 controls except line feed; the bidirectional overrides and isolates (text that
 * renders differently from its logical order); U+FEFF and the line/paragraph separators.
 */
// eslint-disable-next-line no-control-regex
const forbiddenCharacters = /[\u0000-\u0009\u000B-\u001F\u007F-\u009F\u200E\u200F\u2028-\u202E\u2066-\u2069\uFEFF]/u;

/** With the `u` flag a valid surrogate pair is one code point, so this matches lone halves only. */
const loneSurrogate = /\p{Cs}/u;

/**
 * Validates and normalises message text: NFC, well-formed Unicode, no control characters but
 * line feed, not blank, at most `maxLength` characters (code points). Returns the text to store
 * or the problem. The server never interprets the text (no HTML, no markup). Pure.
 */
export const validateChatText = (text: unknown, maxLength: number): { ok: true; text: string } | { ok: false; message: string } => {
  if (typeof text !== 'string') return { ok: false, message: 'Expected a string' };
  // Checked before normalising so that a huge input costs nothing more.
  if (text.length > maxLength * 2) return { ok: false, message: `At most ${maxLength} characters` };
  if (loneSurrogate.test(text)) return { ok: false, message: 'Not well-formed Unicode' };
  const normalised = text.normalize('NFC');
  if (forbiddenCharacters.test(normalised)) return { ok: false, message: 'Control characters are not allowed' };
  if (normalised.trim().length === 0) return { ok: false, message: 'Must not be blank' };
  let length = 0;
  for (const _ of normalised) {
    length += 1;
    if (length > maxLength) return { ok: false, message: `At most ${maxLength} characters` };
  }
  return { ok: true, text: normalised };
};

/**
 * Message text within `maxLength` characters (the server's CHAT_MAX_MESSAGE_LENGTH), checked by
 * {@link validateChatText}. The parsed value is the text as sent; the server stores its NFC form.
 */
export const chatTextSchema = (maxLength: number) =>
  z.string().superRefine((text, ctx) => {
    const checked = validateChatText(text, maxLength);
    if (!checked.ok) ctx.addIssue({ code: z.ZodIssueCode.custom, message: checked.message });
  });

/** `POST /chat/channels/:channel/messages` body (HTTP twin of the `chat.send` frame). */
export const chatSendBodySchema = (maxLength: number) =>
  z
    .object({
      text: chatTextSchema(maxLength),
      clientMsgId: clientMsgIdSchema.optional(),
    })
    .strict();

/** `:channel` of the chat routes. */
export const chatChannelParamsSchema = z.object({ channel: channelNameSchema });

/** `GET /chat/channels/:channel/messages` query. */
export const chatHistoryQuerySchema = z.object({
  before: z.string().max(200).optional(),
  limit: z.coerce.number().int().min(1).max(100).optional(),
});

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

// ---------------------------------------------------------------------------------------------
// Websocket frames (contract §5). The gateway validates incoming frames field by field (its own
// error details); these schemas are the wire shapes its types are inferred from.

/** Client → server frames. */
export const chatJoinFrameSchema = z.object({ type: z.literal('chat.join'), channel: channelNameSchema });
export const chatLeaveFrameSchema = z.object({ type: z.literal('chat.leave'), channel: channelNameSchema });
/** `text` is checked against CHAT_MAX_MESSAGE_LENGTH by the server ({@link validateChatText}). */
export const chatSendFrameSchema = z.object({
  type: z.literal('chat.send'),
  channel: channelNameSchema,
  text: z.string(),
  clientMsgId: clientMsgIdSchema.optional(),
});
export const pingFrameSchema = z.object({ type: z.literal('ping') });

export const clientFrameSchema = z.discriminatedUnion('type', [chatJoinFrameSchema, chatLeaveFrameSchema, chatSendFrameSchema, pingFrameSchema]);
export type ClientFrame = z.infer<typeof clientFrameSchema>;

/** Server → client frames. */
export const chatMessageFrameSchema = chatMessageSchema.extend({ type: z.literal('chat.message') });
export const chatJoinedFrameSchema = z.object({ type: z.literal('chat.joined'), channel: z.string() });
export const chatLeftFrameSchema = z.object({ type: z.literal('chat.left'), channel: z.string() });
export const pongFrameSchema = z.object({ type: z.literal('pong') });

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

/** Release drain (contract §6): update the client; the socket then closes with 4000. */
export const releaseDrainFrameSchema = z.object({
  type: z.literal('release.drain'),
  version: z.string(),
  minSupportedVersion: z.string(),
  forceUpdate: z.boolean(),
  graceSeconds: z.number().int(),
});
export type ReleaseDrainFrame = z.infer<typeof releaseDrainFrameSchema>;

/** Every frame the server sends; clients ignore frames of other types (forward compatibility). */
export const serverFrameSchema = z.discriminatedUnion('type', [
  chatMessageFrameSchema,
  chatJoinedFrameSchema,
  chatLeftFrameSchema,
  pongFrameSchema,
  errorFrameSchema,
  releaseDrainFrameSchema,
]);
export type ServerFrame = z.infer<typeof serverFrameSchema>;
