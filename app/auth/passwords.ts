/**
 * Password hashing with argon2id. Hashing runs on libuv's thread pool, so it never blocks the
 * event loop.
 */
import argon2 from 'argon2';
import type { Config } from '../config/index.js';

export type PasswordHasher = {
  hash: (password: string) => Promise<string>;
  /** True when `password` matches. Always spends one verification, even without a stored hash. */
  verify: (storedHash: string | undefined, password: string) => Promise<boolean>;
  /** True when the stored hash used weaker parameters than configured now. */
  needsRehash: (storedHash: string) => boolean;
};

export const createPasswordHasher = (parameters: Config['passwordHashing']): PasswordHasher => {
  const options = {
    type: argon2.argon2id,
    memoryCost: parameters.memoryKib,
    timeCost: parameters.timeCost,
    parallelism: parameters.parallelism,
  } as const;
  // A hash of a random password with the live parameters: verifying against it for unknown
  // e-mail addresses costs the same as a real verification, so timing does not tell them apart.
  let dummy: Promise<string> | undefined;
  const dummyHash = () => (dummy ??= argon2.hash(crypto.randomUUID(), options));

  return {
    hash: (password) => argon2.hash(password, options),
    verify: async (storedHash, password) => {
      if (storedHash === undefined) {
        await argon2.verify(await dummyHash(), password).catch(() => false);
        return false;
      }
      try {
        return await argon2.verify(storedHash, password);
      } catch {
        return false;
      }
    },
    needsRehash: (storedHash) => argon2.needsRehash(storedHash, options),
  };
};
