/**
 * An independent RFC 6238 implementation for tests (SHA-1, 6 digits, 30 s steps), so that the
 * server's otplib-based verification is checked against something other than itself.
 */
import { createHmac } from 'node:crypto';

const BASE32_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 without padding, as in otpauth URIs. */
export const base32Decode = (text: string): Buffer => {
  const clean = text.replace(/=+$/, '').toUpperCase();
  let bits = 0;
  let value = 0;
  const bytes: number[] = [];
  for (const character of clean) {
    const index = BASE32_ALPHABET.indexOf(character);
    if (index < 0) throw new Error(`not base32: ${character}`);
    value = (value << 5) | index;
    bits += 5;
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(bytes);
};

export const PERIOD_SECONDS = 30;

/** RFC 4226 HOTP with dynamic truncation. */
export const hotp = (key: Buffer, counter: number, digits = 6): string => {
  const message = Buffer.alloc(8);
  message.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', key).update(message).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  const binary = (mac.readUInt32BE(offset) & 0x7fffffff) % 10 ** digits;
  return String(binary).padStart(digits, '0');
};

/** The time step of a moment (milliseconds since the epoch). */
export const stepAt = (milliseconds = Date.now()) => Math.floor(milliseconds / 1000 / PERIOD_SECONDS);

/** The code of `step` for a base32 secret. */
export const totpForStep = (secretBase32: string, step: number, digits = 6) => hotp(base32Decode(secretBase32), step, digits);

/** Milliseconds until the next step starts. */
export const msUntilNextStep = (milliseconds = Date.now()) => PERIOD_SECONDS * 1000 - (milliseconds % (PERIOD_SECONDS * 1000));
