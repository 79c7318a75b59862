/**
 * `npm start`: the API on this machine, with no set-up. Starts the embedded PostgreSQL under
 * `.data/` unless a database is configured, generates local-only secrets once, applies the
 * migrations and prints the URL.
 */
import { resolve } from 'node:path';
import { loadConfig, processEnvironment } from './config/index.js';
import { prepareLocalProfile } from './config/local-profile.js';
import { startEmbeddedDatabase, type EmbeddedDatabase } from './db/embedded.js';
import { exitOnBootFailure, stopOnSignals } from './lifecycle.js';
import { createLogger } from './logger.js';
import { startService } from './server.js';

/** Fixed so that `.data/` keeps working across runs; override with KARAXAS_LOCAL_PG_PORT. */
const DEFAULT_EMBEDDED_PORT = 54329;

const main = async () => {
  const environment = processEnvironment();
  const dataDirectory = resolve(environment.KARAXAS_DATA_DIR ?? '.data');
  const profile = await prepareLocalProfile(environment, dataDirectory);

  let embedded: EmbeddedDatabase | undefined;
  if (profile.needsEmbeddedDatabase) {
    embedded = await startEmbeddedDatabase({
      directory: resolve(dataDirectory, 'postgres'),
      port: Number(environment.KARAXAS_LOCAL_PG_PORT ?? DEFAULT_EMBEDDED_PORT),
      persistent: true,
    });
  }
  try {
    const config = await loadConfig(profile.environment, { fallbackDatabaseUrl: embedded?.url('postgres') });
    const logger = createLogger(config);
    const service = await startService({ config, logger });
    stopOnSignals(service, logger, config.shutdownTimeoutMs, async () => embedded?.stop());
    // For the person at the terminal, not the structured log: the banner goes straight to stdout.
    process.stdout.write(
      [
        `Karaxas API listening on ${service.url}`,
        embedded
          ? `  database: embedded PostgreSQL on 127.0.0.1:${embedded.port}, data in ${embedded.dataDirectory}`
          : '  database: as configured',
        `  local-only secrets: ${profile.secretsFile} (the ops API token is OPS_API_TOKEN there)`,
        `  API document: ${service.url}/openapi.json`,
        '',
      ].join('\n'),
    );
  } catch (error) {
    await embedded?.stop().catch(() => undefined);
    throw error;
  }
};

main().catch(exitOnBootFailure);
