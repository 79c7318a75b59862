/**
 * The local profile behind `npm start`: an embedded PostgreSQL under `.data/` and local-only
 * secrets generated once into `.data/local-secrets.json` (mode 0600), both kept across runs.
 * Refused wherever the service is deployed.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from './index.js';

export type LocalProfile = {
  /** The environment to hand to loadConfig. */
  environment: Record<string, string | undefined>;
  /** True when no database is configured and the embedded one must be started. */
  needsEmbeddedDatabase: boolean;
  secretsFile: string;
};

const generatedSecrets = () => ({
  JWT_SECRET: randomBytes(48).toString('base64url'),
  OPS_API_TOKEN: randomBytes(32).toString('base64url'),
  TOTP_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
});

type LocalSecrets = ReturnType<typeof generatedSecrets>;

/**
 * @throws {ConfigError} when run with NODE_ENV=production or on Cloud Run, or when `.data/` is unusable.
 */
export const prepareLocalProfile = async (
  environment: Record<string, string | undefined>,
  dataDirectory: string,
): Promise<LocalProfile> => {
  if (environment.NODE_ENV === 'production') {
    throw new ConfigError('NODE_ENV', 'is production; `npm start` is the local profile (run `node dist/app/main.js` instead)');
  }
  if (environment.K_SERVICE) {
    throw new ConfigError('K_SERVICE', 'is set (Cloud Run); `npm start` is the local profile and refuses to run there');
  }
  const secretsFile = join(dataDirectory, 'local-secrets.json');
  let secrets: LocalSecrets;
  try {
    // o+x only: the embedded server's OS user must pass through; listing and reading stay private.
    await mkdir(dataDirectory, { recursive: true, mode: 0o711 });
    await chmod(dataDirectory, 0o711);
    let stored: string | undefined;
    try {
      stored = await readFile(secretsFile, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    if (stored !== undefined && stored.trim() !== '') {
      try {
        secrets = JSON.parse(stored) as LocalSecrets;
      } catch {
        throw new ConfigError('KARAXAS_DATA_DIR', `(${dataDirectory}) holds a corrupt local-secrets.json; delete it to generate new local secrets`);
      }
    } else {
      // An empty file is what a write cut short by a full disk leaves: it never held secrets.
      if (stored !== undefined) await rm(secretsFile, { force: true });
      secrets = generatedSecrets();
      try {
        await writeFile(secretsFile, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
      } catch (error) {
        // Never leave a partial file behind (it would fail every later start), unless another start wrote it.
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') await rm(secretsFile, { force: true }).catch(() => undefined);
        throw error;
      }
    }
    await chmod(secretsFile, 0o600);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const code = (error as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new ConfigError('KARAXAS_DATA_DIR', `(${dataDirectory}) is not writable or is full (${code})`);
  }

  const merged: Record<string, string | undefined> = { NODE_ENV: 'development', ...environment };
  const given = (name: string) => merged[name] !== undefined || merged[`${name}_SECRET_REF`] !== undefined;
  let usesGenerated = false;
  for (const [name, value] of Object.entries(secrets)) {
    if (!given(name)) {
      merged[name] = value;
      usesGenerated = true;
    }
  }
  if (usesGenerated) merged.ALLOW_PLAIN_ENV_SECRETS = 'true';

  const needsEmbeddedDatabase = merged.DATABASE_URL === undefined && merged.DB_HOST === undefined;
  // The embedded server listens on loopback only and has no certificate.
  if (needsEmbeddedDatabase) merged.DB_SSLMODE = 'disable';
  return { environment: merged, needsEmbeddedDatabase, secretsFile };
};
