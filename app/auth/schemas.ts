/**
 * Wire schemas of the accounts API, shared by the routes, the OpenAPI document and the client SDK.
 */
import { z } from 'zod';

/** Printable text without control characters (display names, user agents shown to operators). */
const hasNoControlCharacters = (value: string) => !/[\p{Cc}\p{Cf}\u2028\u2029]/u.test(value);

export const emailSchema = z.string().trim().toLowerCase().email('must be an e-mail address').max(254);
export const newPasswordSchema = z
  .string()
  .min(12, 'must be at least 12 characters')
  .max(128, 'must be at most 128 characters');
export const displayNameSchema = z
  .string()
  .trim()
  .min(1, 'must not be empty')
  .max(64, 'must be at most 64 characters')
  .refine(hasNoControlCharacters, 'must not contain control characters');

export const userSchema = z.object({
  id: z.string().uuid(),
  email: z.string(),
  displayName: z.string(),
  role: z.enum(['player', 'admin']),
  mfaEnabled: z.boolean(),
  createdAt: z.string().datetime(),
});

export const tokenPairSchema = z.object({
  accessToken: z.string(),
  refreshToken: z.string(),
  tokenType: z.literal('Bearer'),
  expiresIn: z.number().int(),
  refreshExpiresIn: z.number().int(),
  sessionId: z.string().uuid(),
});

export const mfaChallengeSchema = z.object({
  mfaRequired: z.literal(true),
  mfaToken: z.string(),
  expiresIn: z.number().int(),
});

export const registerBodySchema = z.object({ email: emailSchema, password: newPasswordSchema, displayName: displayNameSchema }).strict();
// Login accepts any length up to the maximum: old passwords predate today's minimum.
export const loginBodySchema = z.object({ email: emailSchema, password: z.string().min(1).max(128) }).strict();
export const refreshBodySchema = z.object({ refreshToken: z.string().min(1).max(256) }).strict();

export const sessionSchema = z.object({
  id: z.string().uuid(),
  createdAt: z.string().datetime(),
  lastUsedAt: z.string().datetime(),
  expiresAt: z.string().datetime(),
  ip: z.string().nullable(),
  userAgent: z.string().nullable(),
  current: z.boolean(),
});
