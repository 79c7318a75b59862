/**
 * The service under test: started exactly as app/main.ts starts it (configuration from the
 * environment, the same logger, startService), plus the bench's IPC channel for event-loop
 * delay and memory readings. Not a production entry point.
 */
import { loadConfig, processEnvironment } from '../app/config/index.js';
import { createLogger } from '../app/logger.js';
import { startService } from '../app/server.js';
import { serveBenchIpc } from './lib/child.js';

const main = async () => {
  const config = await loadConfig(processEnvironment());
  const logger = createLogger(config);
  const service = await startService({ config, logger });
  serveBenchIpc({ url: service.url, stop: () => service.shutdown('bench finished') });
};

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
