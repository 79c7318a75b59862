/**
 * Accounts, sessions and tokens for the scenarios, written straight into the database (the
 * scenarios measure the endpoints, not the set-up): users with one argon2id hash at the
 * configured parameters, sessions with a live refresh token each, and access tokens signed with
 * the service's own issuer and secret.
 */
import { createHash, randomBytes } from 'node:crypto';
import argon2 from 'argon2';
import type pg from 'pg';
import { createAccessTokenIssuer } from '../../app/auth/tokens.js';

export type BenchSession = { id: string; userId: string; accessToken: string; refreshToken: string };
export type BenchUser = { id: string; email: string };

export type TokenSettings = { jwtSecret: string; issuer: string; audience: string; accessTtlSeconds: number };

export const BENCH_PASSWORD = 'correct horse battery staple 42';

export const hashPassword = (parameters: { memoryKib: number; timeCost: number; parallelism: number }) =>
  argon2.hash(BENCH_PASSWORD, {
    type: argon2.argon2id,
    memoryCost: parameters.memoryKib,
    timeCost: parameters.timeCost,
    parallelism: parameters.parallelism,
  });

const sha256 = (value: string) => createHash('sha256').update(value).digest();

export const createUsers = async (client: pg.Client, count: number, passwordHash: string, prefix: string): Promise<BenchUser[]> => {
  const { rows } = await client.query<{ id: string; email: string }>(
    `INSERT INTO users (email, display_name, password_hash)
     SELECT $1 || '-' || i || '@bench.karaxas.test', 'Bench player ' || i, $2
       FROM generate_series(1, $3::int) AS i
     RETURNING id, email::text AS email`,
    [prefix, passwordHash, count],
  );
  return rows;
};

/** `perUser` sessions for each user, each with a live refresh token and an access token. */
export const createSessions = async (client: pg.Client, users: readonly BenchUser[], perUser: number, tokens: TokenSettings): Promise<BenchSession[]> => {
  const issuer = createAccessTokenIssuer({
    secrets: { jwtSecret: tokens.jwtSecret, jwtSecretPrevious: undefined } as never,
    tokens: { issuer: tokens.issuer, audience: tokens.audience, accessTtlSeconds: tokens.accessTtlSeconds } as never,
  });
  const userIds = users.flatMap((user) => Array.from({ length: perUser }, () => user.id));
  const { rows } = await client.query<{ id: string; user_id: string }>(
    `INSERT INTO user_sessions (user_id, amr, role, expires_at, ip, user_agent)
     SELECT u, ARRAY['pwd'], 'player', now() + interval '30 days', '127.0.0.1', 'karaxas-bench'
       FROM unnest($1::uuid[]) AS u
     RETURNING id, user_id`,
    [userIds],
  );
  const refreshTokens = rows.map(() => `kxr_${randomBytes(32).toString('base64url')}`);
  await client.query(
    `INSERT INTO refresh_tokens (session_id, token_hash, expires_at)
     SELECT s, h, now() + interval '30 days' FROM unnest($1::uuid[], $2::bytea[]) AS t(s, h)`,
    [rows.map((row) => row.id), refreshTokens.map(sha256)],
  );
  return Promise.all(
    rows.map(async (row, index) => ({
      id: row.id,
      userId: row.user_id,
      refreshToken: refreshTokens[index]!,
      accessToken: await issuer.sign({ userId: row.user_id, sessionId: row.id, role: 'player', amr: ['pwd'] }),
    })),
  );
};

/** One-time websocket tickets for `sessions` (stored hashed, valid for 60 s). */
export const createTickets = async (client: pg.Client, sessions: readonly BenchSession[]): Promise<string[]> => {
  const tickets = sessions.map(() => `kxt_${randomBytes(32).toString('base64url')}`);
  await client.query(
    `INSERT INTO ws_tickets (ticket_hash, user_id, session_id, expires_at)
     SELECT h, u, s, now() + interval '60 seconds' FROM unnest($1::bytea[], $2::uuid[], $3::uuid[]) AS t(h, u, s)`,
    [tickets.map(sha256), sessions.map((session) => session.userId), sessions.map((session) => session.id)],
  );
  return tickets;
};
