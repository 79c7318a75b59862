/**
 * HTTP routes of the realtime feature: websocket tickets and the chat twins of the websocket
 * frames (contract §3, §5). The websocket itself is served by ./gateway.ts.
 */
import type { Middleware } from 'koa';
import { authOf, requireUser } from '../auth/guard.js';
import type { AuthService } from '../auth/service.js';
import { AppError } from '../http/errors.js';
import { requestMeta } from '../http/request-meta.js';
import { defineRoute, type AnyRoute, type AppState } from '../http/route.js';
import {
  chatChannelParamsSchema,
  chatHistoryQuerySchema,
  chatMessageSchema,
  chatPageSchema,
  chatSendBodySchema,
  wsTicketSchema,
} from './schemas.js';
import type { RealtimeService } from './service.js';

export type RealtimeRouteDeps = {
  auth: Pick<AuthService, 'authenticate'>;
  realtime: RealtimeService;
  chat: { maxMessageLength: number; rateLimitMax: number };
  /** The release policy's client update gate, applied to ticket issuance. */
  clientGate?: Middleware<AppState>[];
};

export const createRealtimeRoutes = ({ auth, realtime, chat, clientGate = [] }: RealtimeRouteDeps): AnyRoute[] => {
  const signedIn = requireUser(auth);
  const sendBody = chatSendBodySchema(chat.maxMessageLength);

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
          body: wsTicketSchema,
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
      request: { params: chatChannelParamsSchema, body: sendBody },
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
        params: chatChannelParamsSchema,
        query: chatHistoryQuerySchema,
      },
      responses: {
        200: {
          description: 'A page of messages; pass nextCursor as `before` for the next (older) page',
          body: chatPageSchema,
        },
      },
      errors: ['unauthorized', 'validation_failed'],
      middleware: [signedIn],
      handler: async ({ params, query }) => ({ status: 200, body: await realtime.listMessages(params.channel, query) }),
    }),
  ];
};
