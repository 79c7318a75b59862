/**
 * Production entry point (the container runs `node dist/app/main.js`).
 * Configuration comes only from the environment and Secret Manager.
 */
import { loadConfig, processEnvironment } from './config/index.js';
import { exitOnBootFailure, stopOnSignals } from './lifecycle.js';
import { createLogger } from './logger.js';
import { startService } from './server.js';

const main = async () => {
  const config = await loadConfig(processEnvironment());
  const logger = createLogger(config);
  const service = await startService({ config, logger });
  stopOnSignals(service, logger, config.shutdownTimeoutMs);
  logger.info({ url: service.url, nodeEnv: config.nodeEnv }, 'listening');
};

main().catch(exitOnBootFailure);
