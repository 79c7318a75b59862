import Router from '@koa/router';
import Koa from 'koa';
import type { Config } from '../config/index.js';
import type { Logger } from '../logger.js';
import { accessLog, bodySizeGuard, corsAllowlist, errorEnvelope, requestContext, secureHeaders } from './middleware.js';
import { mountRoutes, type AnyRoute, type AppState } from './route.js';

/**
 * The Koa application: the platform middleware in contract order, then the routes.
 */
export const createHttpApp = (options: { config: Config; logger: Logger; routes: readonly AnyRoute[] }): Koa<AppState> => {
  const { config, logger, routes } = options;
  const app = new Koa<AppState>({ proxy: config.http.trustProxy });
  // Errors are rendered by errorEnvelope and logged there with the request id; Koa's default
  // handler would print stacks to stderr.
  app.silent = true;

  const router = new Router<AppState>();
  mountRoutes(router, routes, { maxBodyBytes: config.http.maxRequestBodyBytes });

  app
    .use(requestContext(config, logger))
    .use(accessLog())
    .use(errorEnvelope())
    .use(secureHeaders())
    .use(corsAllowlist(config.http.corsAllowedOrigins))
    .use(bodySizeGuard(config.http.maxRequestBodyBytes))
    .use(router.routes())
    .use(router.allowedMethods());
  return app;
};
