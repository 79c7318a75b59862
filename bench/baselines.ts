/**
 * Baseline servers and workloads, one per process (`tsx bench/baselines.ts <mode>`), pinned to
 * the server core like the service under test:
 *
 *   node-http       raw node:http hello — the physical limit of this box
 *   koa-hello       bare Koa 3 + @koa/router hello
 *   koa-contract-hello  the same, plus what the API contract makes every response carry: the
 *                   16 headers of GET /healthz (security headers, Vary, request id) and one JSON
 *                   access-log line — the part of the platform's cost that is not ours to remove
 *   koa-pg-me       bare Koa route doing /auth/me's primary-key lookup of the user with raw pg
 *   koa-pg-refresh  bare Koa route issuing the refresh-rotation transaction with raw pg
 *   koa-pg-metrics  bare Koa route issuing the three queries of GET /ops/release/metrics with raw pg
 *   ws-broadcast    raw ws server broadcasting every `send` frame to every socket
 *   argon2          raw argon2id verify throughput at a given concurrency (libuv pool)
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import Router from '@koa/router';
import argon2 from 'argon2';
import Koa from 'koa';
import pg from 'pg';
import { pino } from 'pino';
import { WebSocket, WebSocketServer } from 'ws';
import { countsByTypeQuery } from '../app/audit/store.js';
import { serveBenchIpc } from './lib/child.js';

const mode = process.argv[2];
const databaseUrl = process.env.BENCH_DATABASE_URL;
const poolSize = Number(process.env.DB_POOL_SIZE ?? 10);

const listen = async (server: Server): Promise<string> => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
};

const closeServer = (server: Server) =>
  new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });

const newPool = () => {
  if (!databaseUrl) throw new Error('BENCH_DATABASE_URL is not set');
  return new pg.Pool({ connectionString: databaseUrl, max: poolSize, application_name: 'karaxas-bench-baseline' });
};

const readBody = async (req: IncomingMessage): Promise<string> => {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
};

const sha256 = (value: string) => createHash('sha256').update(value).digest();

const startNodeHttp = async () => {
  const body = JSON.stringify({ status: 'ok' });
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  serveBenchIpc({ url: await listen(server), stop: () => closeServer(server) });
};

const startKoa = async (configure: (router: Router) => void, cleanup: () => Promise<void> = async () => undefined, before?: Koa.Middleware) => {
  const app = new Koa();
  const router = new Router();
  configure(router);
  if (before) app.use(before);
  app.use(router.routes()).use(router.allowedMethods());
  const server = createServer(app.callback());
  serveBenchIpc({
    url: await listen(server),
    stop: async () => {
      await closeServer(server);
      await cleanup();
    },
  });
};

const startKoaHello = () =>
  startKoa((router) => {
    router.get('/healthz', (ctx) => {
      ctx.body = { status: 'ok' };
    });
  });

/** Static response headers of GET /healthz (contract §1), as the service sends them. */
const contractHeaders: Array<[string, string]> = [
  ['Cache-Control', 'no-store'],
  ['Permissions-Policy', 'accelerometer=(), camera=(), display-capture=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=(), interest-cohort=()'],
  ['Content-Security-Policy', "default-src 'none';frame-ancestors 'none'"],
  ['Cross-Origin-Opener-Policy', 'same-origin'],
  ['Cross-Origin-Resource-Policy', 'same-site'],
  ['Origin-Agent-Cluster', '?1'],
  ['Referrer-Policy', 'no-referrer'],
  ['X-Content-Type-Options', 'nosniff'],
  ['X-DNS-Prefetch-Control', 'off'],
  ['X-Download-Options', 'noopen'],
  ['X-Frame-Options', 'DENY'],
  ['X-Permitted-Cross-Domain-Policies', 'none'],
  ['X-XSS-Protection', '0'],
  ['Vary', 'Origin'],
];

const startKoaContractHello = () => {
  const logger = pino({ messageKey: 'message', base: undefined }, pino.destination({ dest: 1, sync: true, minLength: 4_096, periodicFlush: 100 }));
  return startKoa(
    (router) => {
      router.get('/healthz', (ctx) => {
        ctx.body = { status: 'ok' };
      });
    },
    async () => undefined,
    async (ctx, next) => {
      const started = process.hrtime.bigint();
      const requestId = randomUUID();
      ctx.set('X-Request-ID', requestId);
      for (const [name, value] of contractHeaders) ctx.set(name, value);
      await next();
      logger.info(
        {
          requestId,
          httpRequest: {
            requestMethod: ctx.method,
            requestUrl: ctx.path,
            status: ctx.status,
            remoteIp: ctx.ip,
            latency: `${(Number(process.hrtime.bigint() - started) / 1e9).toFixed(6)}s`,
            responseSize: ctx.response.length,
          },
        },
        `${ctx.method} ${ctx.path} ${ctx.status}`,
      );
    },
  );
};

/** The same primary-key lookup as the auth store's findUserById, and the same response shape. */
const startKoaPgMe = async () => {
  const pool = newPool();
  await startKoa(
    (router) => {
      router.get('/me', async (ctx) => {
        const { rows } = await pool.query<{
          id: string;
          email: string;
          display_name: string;
          role: string;
          mfa_enabled: boolean;
          created_at: Date;
        }>(
          `SELECT id, email::text AS email, display_name, password_hash, role, password_reset_required, mfa_enabled, created_at
             FROM users WHERE id = $1`,
          [ctx.get('x-user-id')],
        );
        const user = rows[0];
        if (!user) {
          ctx.status = 401;
          return;
        }
        ctx.body = {
          user: {
            id: user.id,
            email: user.email,
            displayName: user.display_name,
            role: user.role,
            mfaEnabled: user.mfa_enabled,
            createdAt: user.created_at.toISOString(),
          },
        };
      });
    },
    () => pool.end(),
  );
};

const sessionColumns = `id, user_id, amr, role, created_at, last_used_at, expires_at, revoked_at, revoked_reason,
  host(ip) AS ip, user_agent, expires_at <= now() AS expired`;
const tokenColumns = `id, session_id, expires_at, rotated_at, successor_id, successor_sealed, expires_at <= now() AS expired,
  extract(epoch FROM now() - rotated_at)::float8 AS seconds_since_rotation`;

/**
 * The statements of AuthService.refresh's rotation path, in the same order, in one transaction:
 * token by hash, session row lock, token re-read, mark rotated (with a sealed successor), insert
 * the successor, clear old sealed successors, touch the session, append the security event.
 */
const startKoaPgRefresh = async () => {
  const pool = newPool();
  const refreshTtlSeconds = 30 * 86_400;
  await startKoa(
    (router) => {
      router.post('/refresh', async (ctx) => {
        const { refreshToken } = JSON.parse(await readBody(ctx.req)) as { refreshToken: string };
        const client = await pool.connect();
        try {
          await client.query('BEGIN');
          const tokenHash = sha256(refreshToken);
          const found = (await client.query<{ id: string; session_id: string }>(`SELECT ${tokenColumns} FROM refresh_tokens WHERE token_hash = $1`, [tokenHash]))
            .rows[0];
          if (!found) throw new Error('invalid refresh token');
          const session = (await client.query<{ id: string; user_id: string }>(`SELECT ${sessionColumns} FROM user_sessions WHERE id = $1 FOR UPDATE`, [found.session_id]))
            .rows[0];
          if (!session) throw new Error('no session');
          const token = (await client.query<{ id: string; rotated_at: Date | null }>(`SELECT ${tokenColumns} FROM refresh_tokens WHERE token_hash = $1`, [tokenHash]))
            .rows[0];
          if (!token || token.rotated_at !== null) throw new Error('already rotated');
          const successor = `kxr_${randomBytes(32).toString('base64url')}`;
          const successorId = randomUUID();
          const expiresAt = new Date(Date.now() + refreshTtlSeconds * 1000).toISOString();
          await client.query(
            `UPDATE refresh_tokens SET rotated_at = now(), successor_id = $2, successor_sealed = $3
              WHERE id = $1 AND rotated_at IS NULL RETURNING id`,
            [token.id, successorId, randomBytes(71)],
          );
          await client.query(
            `INSERT INTO refresh_tokens (id, session_id, token_hash, expires_at)
             VALUES (coalesce($1::uuid, gen_random_uuid()), $2, $3, $4::timestamptz) RETURNING id`,
            [successorId, session.id, sha256(successor), expiresAt],
          );
          await client.query(
            `UPDATE refresh_tokens SET successor_sealed = NULL
              WHERE successor_sealed IS NOT NULL
                AND ($1::uuid IS NULL OR session_id = $1::uuid)
                AND rotated_at <= now() - make_interval(secs => $2)`,
            [session.id, 10],
          );
          await client.query(
            `UPDATE user_sessions
                SET last_used_at = now(),
                    expires_at = CASE WHEN $2::integer IS NULL THEN expires_at ELSE now() + make_interval(secs => $2::integer) END
              WHERE id = $1`,
            [session.id, refreshTtlSeconds],
          );
          await client.query(
            `INSERT INTO security_event_audit (event_type, user_id, session_id, ip, user_agent, request_id, details)
             VALUES ($1, $2::uuid, $3::uuid, $4::inet, $5, $6, $7::jsonb) RETURNING id, seq, created_at`,
            ['refresh_rotated', session.user_id, session.id, '127.0.0.1', null, randomUUID(), '{}'],
          );
          await client.query('COMMIT');
          ctx.body = { refreshToken: successor };
        } catch (error) {
          await client.query('ROLLBACK').catch(() => undefined);
          ctx.status = 401;
          ctx.body = { error: (error as Error).message };
        } finally {
          client.release();
        }
      });
    },
    () => pool.end(),
  );
};

/** The queries of the ops metrics (audit counts with the 1 h / 24 h windows, drains, active sessions), in parallel. */
const startKoaPgMetrics = async () => {
  const pool = newPool();
  await startKoa(
    (router) => {
      router.get('/metrics', async (ctx) => {
        const [events, drains, sessions] = await Promise.all([
          pool.query(countsByTypeQuery.sql),
          pool.query('SELECT status, count(*)::int AS n FROM publish_drains GROUP BY status'),
          pool.query('SELECT count(*)::int AS active FROM user_sessions WHERE revoked_at IS NULL AND expires_at > now()'),
        ]);
        ctx.body = {
          generatedAt: new Date().toISOString(),
          securityEvents: Object.fromEntries(
            events.rows.map((row: { event_type: string; total: string; last1h: number; last24h: number }) => [
              row.event_type,
              { total: Number(row.total), last1h: row.last1h, last24h: row.last24h },
            ]),
          ),
          drains: drains.rows,
          sessions: { active: (sessions.rows[0] as { active: number }).active },
        };
      });
    },
    () => pool.end(),
  );
};

/** Every `{"type":"send"}` frame goes to every socket as a chat.message-shaped frame. */
const startWsBroadcast = async () => {
  const server = createServer((_req, res) => {
    res.writeHead(404).end();
  });
  const wss = new WebSocketServer({ noServer: true, maxPayload: 4096, perMessageDeflate: false, clientTracking: false });
  const sockets = new Set<WebSocket>();
  server.on('upgrade', (req, socket, head) => {
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws);
      ws.on('close', () => sockets.delete(ws));
      ws.on('message', (data) => {
        const frame = JSON.parse(String(data)) as { type: string; text?: string; clientMsgId?: string; channel?: string };
        if (frame.type === 'chat.join') {
          ws.send(JSON.stringify({ type: 'chat.joined', channel: frame.channel }));
          return;
        }
        if (frame.type !== 'chat.send') return;
        const message = JSON.stringify({
          type: 'chat.message',
          id: randomUUID(),
          channel: frame.channel,
          userId: randomUUID(),
          displayName: 'Bench sender',
          text: frame.text,
          sentAt: new Date().toISOString(),
          clientMsgId: frame.clientMsgId ?? null,
        });
        for (const member of sockets) if (member.readyState === WebSocket.OPEN) member.send(message);
      });
    });
  });
  serveBenchIpc({
    url: await listen(server),
    stop: async () => {
      for (const socket of sockets) socket.terminate();
      await closeServer(server);
    },
  });
};

/** argon2id verify with `concurrency` verifications in flight for `seconds`. */
const startArgon2 = () => {
  serveBenchIpc({
    url: '',
    stop: async () => undefined,
    handlers: {
      verify: async (message) => {
        const { hash, password, concurrency, seconds } = message as unknown as { hash: string; password: string; concurrency: number; seconds: number };
        const deadline = performance.now() + seconds * 1000;
        const started = performance.now();
        let count = 0;
        const latencies: number[] = [];
        const worker = async () => {
          while (performance.now() < deadline) {
            const begun = performance.now();
            if (!(await argon2.verify(hash, password))) throw new Error('argon2 verify returned false');
            latencies.push(performance.now() - begun);
            count += 1;
          }
        };
        await Promise.all(Array.from({ length: concurrency }, worker));
        return { count, seconds: (performance.now() - started) / 1000, latencies };
      },
    },
  });
};

const modes: Record<string, () => Promise<void> | void> = {
  'node-http': startNodeHttp,
  'koa-hello': startKoaHello,
  'koa-contract-hello': startKoaContractHello,
  'koa-pg-me': startKoaPgMe,
  'koa-pg-refresh': startKoaPgRefresh,
  'koa-pg-metrics': startKoaPgMetrics,
  'ws-broadcast': startWsBroadcast,
  argon2: startArgon2,
};

const start = mode === undefined ? undefined : modes[mode];
if (!start) {
  console.error(`usage: tsx bench/baselines.ts <${Object.keys(modes).join('|')}>`);
  process.exit(2);
}
Promise.resolve(start()).catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
