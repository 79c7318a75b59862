/**
 * RFC 6238 codes for tests (SHA-1, 6 digits, 30 s steps). The arithmetic is the pentest module's
 * own implementation (app/pentest/totp.ts), which does not use otplib — so the server's
 * otplib-based verification is still checked against something other than itself.
 */
import { base32Decode, hotp, TOTP_PERIOD_SECONDS } from '../../app/pentest/totp.js';

export { base32Decode, hotp };

export const PERIOD_SECONDS = TOTP_PERIOD_SECONDS;

/** The time step of a moment (milliseconds since the epoch). */
export const stepAt = (milliseconds = Date.now()) => Math.floor(milliseconds / 1000 / PERIOD_SECONDS);

/** The code of `step` for a base32 secret. */
export const totpForStep = (secretBase32: string, step: number, digits = 6) => hotp(base32Decode(secretBase32), step, digits);

/** Milliseconds until the next step starts. */
export const msUntilNextStep = (milliseconds = Date.now()) => PERIOD_SECONDS * 1000 - (milliseconds % (PERIOD_SECONDS * 1000));

/**
 * The current step, after waiting for the next one when fewer than `marginMs` remain in it: a
 * test that signs with the previous step's code (to keep the current one unused) must not have
 * the server move two steps on before it verifies — under load a request can take seconds.
 */
export const settledStep = async (marginMs = 5_000): Promise<number> => {
  const left = msUntilNextStep();
  if (left < marginMs) await new Promise((resolve) => setTimeout(resolve, left + 100));
  return stepAt();
};
