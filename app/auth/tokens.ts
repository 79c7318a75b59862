/**
 * Access tokens: HS256 JWTs (jose) with a `kid` header naming the signing secret's fingerprint,
 * so that a token signed with the previous secret still verifies while JWT_SECRET_PREVIOUS is
 * configured during a rotation. Only HS256 is accepted; the `typ` header (RFC 9068 `at+jwt`)
 * keeps other JWTs from being presented as access tokens.
 */
import { createHash } from 'node:crypto';
import { errors as joseErrors, jwtVerify, SignJWT, type JWTHeaderParameters } from 'jose';
import { z } from 'zod';
import type { Config } from '../config/index.js';

const ACCESS_TOKEN_TYPE = 'at+jwt';
const CLOCK_TOLERANCE_SECONDS = 5;
/** Verified tokens remembered per process (FIFO beyond this). */
const VERIFIED_TOKENS_KEPT = 10_000;

export const accessClaimsSchema = z.object({
  sub: z.string().uuid(),
  sid: z.string().uuid(),
  role: z.enum(['player', 'admin']),
  amr: z.array(z.enum(['pwd', 'otp'])).min(1),
  iat: z.number().int(),
  exp: z.number().int(),
  iss: z.string(),
  aud: z.union([z.string(), z.array(z.string())]),
});

export type AccessClaims = z.infer<typeof accessClaimsSchema>;

export class InvalidAccessTokenError extends Error {
  override name = 'InvalidAccessTokenError';
}

type Key = { kid: string; secret: Uint8Array };

const keyFor = (secret: string): Key => ({
  kid: createHash('sha256').update(secret).digest('base64url').slice(0, 16),
  secret: new TextEncoder().encode(secret),
});

export type AccessTokenIssuer = {
  sign: (claims: { userId: string; sessionId: string; role: 'player' | 'admin'; amr: readonly string[] }) => Promise<string>;
  /** @throws {InvalidAccessTokenError} for any token that is not a valid, current access token. */
  verify: (token: string) => Promise<AccessClaims>;
  ttlSeconds: number;
};

export const createAccessTokenIssuer = (config: Pick<Config, 'secrets' | 'tokens'>): AccessTokenIssuer => {
  const current = keyFor(config.secrets.jwtSecret);
  const verificationKeys = new Map<string, Uint8Array>([[current.kid, current.secret]]);
  if (config.secrets.jwtSecretPrevious !== undefined) {
    const previous = keyFor(config.secrets.jwtSecretPrevious);
    verificationKeys.set(previous.kid, previous.secret);
  }
  const { issuer, audience, accessTtlSeconds } = config.tokens;

  /**
   * Tokens already verified, with their claims, until they expire. A client presents the same
   * token for its whole life, and verifying it again (HMAC through WebCrypto, the claims schema)
   * cost more than the rest of an authenticated request. Keyed by the whole compact token: only
   * an identical string that passed every check hits; the only check that depends on time, the
   * expiry (jose: `exp <= now - tolerance` is expired), is made again on every hit.
   */
  const verified = new Map<string, AccessClaims>();
  const remember = (token: string, claims: AccessClaims) => {
    if (verified.size >= VERIFIED_TOKENS_KEPT) verified.delete(verified.keys().next().value as string);
    verified.set(token, Object.freeze(claims));
  };

  return {
    ttlSeconds: accessTtlSeconds,
    sign: ({ userId, sessionId, role, amr }) =>
      new SignJWT({ sid: sessionId, role, amr: [...amr] })
        .setProtectedHeader({ alg: 'HS256', kid: current.kid, typ: ACCESS_TOKEN_TYPE })
        .setSubject(userId)
        .setIssuer(issuer)
        .setAudience(audience)
        .setIssuedAt()
        .setExpirationTime(`${accessTtlSeconds}s`)
        .sign(current.secret),
    verify: async (token) => {
      const known = verified.get(token);
      if (known !== undefined) {
        if (known.exp > Math.floor(Date.now() / 1000) - CLOCK_TOLERANCE_SECONDS) return known;
        verified.delete(token);
      }
      try {
        const { payload } = await jwtVerify(
          token,
          (header: JWTHeaderParameters) => {
            const key = header.kid === undefined ? undefined : verificationKeys.get(header.kid);
            if (!key) throw new InvalidAccessTokenError('unknown key id');
            return key;
          },
          { algorithms: ['HS256'], issuer, audience, typ: ACCESS_TOKEN_TYPE, clockTolerance: CLOCK_TOLERANCE_SECONDS },
        );
        const claims = accessClaimsSchema.parse(payload);
        remember(token, claims);
        return claims;
      } catch (error) {
        if (error instanceof InvalidAccessTokenError) throw error;
        if (error instanceof joseErrors.JOSEError || error instanceof z.ZodError || error instanceof TypeError) {
          throw new InvalidAccessTokenError(error instanceof joseErrors.JOSEError ? error.code : 'invalid claims');
        }
        throw error;
      }
    },
  };
};
