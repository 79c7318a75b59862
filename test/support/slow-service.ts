/**
 * A child-process entry for lifecycle tests: the real service, configured from its environment
 * and wired to signals exactly like `app/main.ts`, plus `GET /test/slow`, which logs
 * "slow request accepted" with a running count and answers 200 after KARAXAS_TEST_SLOW_MS
 * (default 1500). Prints `{"event":"listening","url":…}` as one line on stdout once it listens.
 */
import { z } from 'zod';
import { loadConfig, processEnvironment } from '../../app/config/index.js';
import { defineRoute } from '../../app/http/route.js';
import { exitOnBootFailure, stopOnSignals } from '../../app/lifecycle.js';
import { createLogger } from '../../app/logger.js';
import { startService } from '../../app/server.js';

const main = async () => {
  const environment = processEnvironment();
  const delayMs = Number(environment.KARAXAS_TEST_SLOW_MS ?? 1_500);
  const config = await loadConfig(environment);
  const logger = createLogger(config);

  let accepted = 0;
  const slowRoute = defineRoute({
    method: 'get',
    path: '/test/slow',
    summary: 'Answers after a delay (lifecycle tests only)',
    tags: ['test'],
    responses: { 200: { description: 'Done', body: z.object({ n: z.number().int() }) } },
    errors: [],
    handler: async ({ ctx }) => {
      const n = ++accepted;
      ctx.state.log.info({ accepted: n }, 'slow request accepted');
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      return { status: 200, body: { n } };
    },
  });

  const service = await startService({ config, logger, extraRoutes: [slowRoute] });
  stopOnSignals(service, logger, config.shutdownTimeoutMs);
  process.stdout.write(`${JSON.stringify({ event: 'listening', url: service.url })}\n`);
};

main().catch(exitOnBootFailure);
