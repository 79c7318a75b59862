/**
 * Authenticated encryption (AES-256-GCM) for small secrets at rest: TOTP secrets and the
 * refresh-token successor kept for the reuse grace window.
 *
 * Sealed layout: `version(1) | keyId(8) | iv(12) | tag(16) | ciphertext`. The key id is a
 * fingerprint of the key, so that a rotated key can still open what the previous one sealed.
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';

const VERSION = 1;

export type SealingKey = { id: Buffer; key: Buffer };

/** A key's 8-byte fingerprint, stored beside each ciphertext. */
export const keyFingerprint = (key: Buffer): Buffer => createHash('sha256').update(key).digest().subarray(0, 8);

export const sealingKey = (key: Buffer): SealingKey => {
  if (key.length !== 32) throw new Error('sealing keys are 32 bytes');
  return { id: keyFingerprint(key), key };
};

/** Derives an independent 32-byte key for one purpose from a master secret (HKDF-SHA256). */
export const deriveKey = (secret: string | Buffer, purpose: string): Buffer =>
  Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), `karaxas:${purpose}`, 32));

/**
 * @param associatedData binds the ciphertext to its context (e.g. the user id), so it cannot be
 *   moved to another row.
 */
export const seal = (current: SealingKey, plaintext: Buffer, associatedData: Buffer): Buffer => {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', current.key, iv);
  cipher.setAAD(associatedData);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([Buffer.from([VERSION]), current.id, iv, cipher.getAuthTag(), ciphertext]);
};

export class UnsealError extends Error {
  override name = 'UnsealError';
}

/**
 * Opens a sealed value with whichever of `keys` sealed it.
 * @throws {UnsealError} when no key matches, or the data or its context was tampered with.
 */
export const unseal = (keys: readonly SealingKey[], sealed: Buffer, associatedData: Buffer): Buffer => {
  if (sealed.length < 1 + 8 + 12 + 16 || sealed[0] !== VERSION) throw new UnsealError('unknown sealed format');
  const keyId = sealed.subarray(1, 9);
  const key = keys.find((candidate) => candidate.id.equals(keyId));
  if (!key) throw new UnsealError('sealed with a key that is no longer configured');
  const iv = sealed.subarray(9, 21);
  const tag = sealed.subarray(21, 37);
  const decipher = createDecipheriv('aes-256-gcm', key.key, iv);
  decipher.setAAD(associatedData);
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(sealed.subarray(37)), decipher.final()]);
  } catch {
    throw new UnsealError('sealed value failed authentication');
  }
};
