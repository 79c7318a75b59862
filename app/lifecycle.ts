/**
 * Process-level wiring shared by the production and local entry points: signals, fatal errors,
 * and the one-line boot failure message.
 */
import { ConfigError } from './config/index.js';
import type { Logger } from './logger.js';
import { BootError, type Service } from './server.js';

/** EX_CONFIG from sysexits.h: the configuration is wrong, restarting will not help. */
export const EXIT_CONFIG = 78;

/**
 * Prints a boot failure as one line (no stack, no secret) and exits.
 */
export const exitOnBootFailure = (error: unknown): never => {
  if (error instanceof ConfigError) {
    process.stderr.write(`${error.message}\n`);
    process.exit(EXIT_CONFIG);
  }
  if (error instanceof BootError || (error instanceof Error && error.name === 'EmbeddedDatabaseError')) {
    process.stderr.write(`${error.message.split('\n')[0]}\n`);
    process.exit(error.message.startsWith('Invalid configuration') ? EXIT_CONFIG : 1);
  }
  process.stderr.write(`Boot failed: ${error instanceof Error ? error.name : 'unknown error'}\n`);
  process.exit(1);
};

/**
 * Stops gracefully on SIGTERM (Cloud Run) and SIGINT (a terminal), then runs `after` and exits 0.
 * A second signal, or a shutdown that overruns `timeoutMs` by a second, exits 1 at once.
 */
export const stopOnSignals = (service: Service, logger: Logger, timeoutMs: number, after?: () => Promise<void>) => {
  let signalled = false;
  const stop = (signal: NodeJS.Signals) => {
    if (signalled) process.exit(1);
    signalled = true;
    setTimeout(() => {
      logger.error('shutdown overran its deadline');
      process.exit(1);
    }, timeoutMs + 1_000).unref();
    service
      .shutdown(signal)
      .then(() => after?.())
      .then(
        () => process.exit(0),
        (error: unknown) => {
          logger.error({ err: error }, 'shutdown failed');
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('unhandledRejection', (reason) => {
    logger.fatal({ err: reason }, 'unhandled promise rejection');
    process.exit(1);
  });
  process.on('uncaughtException', (error) => {
    logger.fatal({ err: error }, 'uncaught exception');
    process.exit(1);
  });
};
