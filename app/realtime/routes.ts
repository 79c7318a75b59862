/**
 * HTTP routes of the realtime feature: websocket tickets and the chat twins of the websocket
 * frames (contract §3, §5). The websocket itself is served by ./gateway.ts.
 */
import type { Middleware } from 'koa';
import { z } from 'zod';
import { authOf, requireUser } from '../auth/guard.js';
import type { AuthService } from '../auth/service.js';
import { AppError } from '../http/errors.js';
import { requestMeta } from '../http/request-meta.js';
import { defineRoute, type AnyRoute, type AppState } from '../http/route.js';
import { channelNamePattern, clientMsgIdPattern, validateChatText, type RealtimeService } from './service.js';

export type RealtimeRouteDeps = {
  auth: Pick<AuthService, 'authenticate'>;
  realtime: RealtimeService;
  chat: { maxMessageLength: number; rateLimitMax: number };
  /** The release policy's client update gate, applied to ticket issuance. */
  clientGate?: Middleware<AppState>[];
};

export const chatMessageSchema = z.object({
  id: z.string().uuid(),
  channel: z.string(),
  userId: z.string().uuid(),
  displayName: z.string(),
  text: z.string(),
  sentAt: z.string().datetime(),
  clientMsgId: z.string().nullable(),
});

const channelParams = z.object({
  channel: z.string().regex(channelNamePattern, 'must be 1-64 characters: a-z, 0-9, ".", "_", "-", starting with a letter or digit'),
});

export const createRealtimeRoutes = ({ auth, realtime, chat, clientGate = [] }: RealtimeRouteDeps): AnyRoute[] => {
  const signedIn = requireUser(auth);
  const sendBody = z
    .object({
      text: z.string().superRefine((text, ctx) => {
        const checked = validateChatText(text, chat.maxMessageLength);
        if (!checked.ok) ctx.addIssue({ code: z.ZodIssueCode.custom, message: checked.message });
      }),
      clientMsgId: z.string().regex(clientMsgIdPattern, 'must be 1-64 characters: A-Z, a-z, 0-9, ".", "_", ":", "-"').optional(),
    })
    .strict();

  const limitedHeaders = (retryAfter: number) => ({
    'Retry-After': String(retryAfter),
    'RateLimit-Limit': String(chat.rateLimitMax),
    'RateLimit-Remaining': '0',
    'RateLimit-Reset': String(retryAfter),
  });

  return [
    defineRoute({
      method: 'post',
      path: '/auth/ws-ticket',
      summary: 'A one-time websocket ticket for GET /ws?ticket=',
      tags: ['auth', 'realtime'],
      security: 'bearer',
      responses: {
        201: {
          description: 'A single-use ticket bound to this session',
          body: z.object({ ticket: z.string(), expiresIn: z.number().int() }),
        },
      },
      errors: ['unauthorized', 'rate_limited', 'client_update_required'],
      // The release gate too: after a forced update, an outdated client holding a still-valid
      // access token must not reconnect its socket and dodge the drain.
      middleware: [signedIn, ...clientGate],
      handler: async ({ ctx }) => ({ status: 201, body: await realtime.issueTicket(requestMeta(ctx), authOf(ctx.state)) }),
    }),
    defineRoute({
      method: 'post',
      path: '/chat/channels/:channel/messages',
      summary: 'Send a chat message (HTTP twin of the chat.send frame)',
      tags: ['chat'],
      security: 'bearer',
      request: { params: channelParams, body: sendBody },
      responses: { 201: { description: 'The stored message (the same one again for a repeated clientMsgId)', body: chatMessageSchema } },
      errors: ['unauthorized', 'validation_failed', 'invalid_json', 'unsupported_media_type', 'payload_too_large', 'rate_limited', 'muted'],
      middleware: [signedIn],
      handler: async ({ params, body, ctx }) => {
        const caller = authOf(ctx.state);
        const outcome = await realtime.sendMessage(
          requestMeta(ctx),
          { userId: caller.userId, sessionId: caller.sessionId },
          { channel: params.channel, text: body.text, clientMsgId: body.clientMsgId ?? null },
        );
        if (outcome.kind !== 'sent') throw new AppError(outcome.kind, { headers: limitedHeaders(outcome.retryAfter) });
        return { status: 201, body: outcome.message };
      },
    }),
    defineRoute({
      method: 'get',
      path: '/chat/channels/:channel/messages',
      summary: 'Chat history, newest first, with a keyset cursor',
      tags: ['chat'],
      security: 'bearer',
      request: {
        params: channelParams,
        query: z.object({
          before: z.string().max(200).optional(),
          limit: z.coerce.number().int().min(1).max(100).optional(),
        }),
      },
      responses: {
        200: {
          description: 'A page of messages; pass nextCursor as `before` for the next (older) page',
          body: z.object({ items: z.array(chatMessageSchema), nextCursor: z.string().nullable() }),
        },
      },
      errors: ['unauthorized', 'validation_failed'],
      middleware: [signedIn],
      handler: async ({ params, query }) => ({ status: 200, body: await realtime.listMessages(params.channel, query) }),
    }),
  ];
};
