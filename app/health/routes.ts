import { z } from 'zod';
import { AppError } from '../http/errors.js';
import { defineRoute, type AnyRoute } from '../http/route.js';

export type HealthDeps = {
  /** Resolves when the database answers a trivial query; rejects otherwise. */
  pingDatabase: () => Promise<void>;
  /** True once shutdown has begun: the load balancer should stop sending traffic. */
  isDraining: () => boolean;
  openApiDocument: () => unknown;
};

export const createHealthRoutes = (deps: HealthDeps): AnyRoute[] => [
  defineRoute({
    method: 'get',
    path: '/healthz',
    summary: 'Liveness: the process is up',
    tags: ['health'],
    responses: { 200: { description: 'Up', body: z.object({ status: z.literal('ok') }) } },
    errors: [],
    handler: () => ({ status: 200, body: { status: 'ok' } }),
  }),
  defineRoute({
    method: 'get',
    path: '/readyz',
    summary: 'Readiness: the database answers and the instance is not shutting down',
    tags: ['health'],
    responses: { 200: { description: 'Ready', body: z.object({ status: z.literal('ready') }) } },
    errors: ['not_ready'],
    handler: async () => {
      if (deps.isDraining()) throw new AppError('not_ready', { message: 'The service is shutting down.' });
      try {
        await deps.pingDatabase();
      } catch (error) {
        throw new AppError('not_ready', { cause: error });
      }
      return { status: 200, body: { status: 'ready' } };
    },
  }),
  defineRoute({
    method: 'get',
    path: '/openapi.json',
    summary: 'The OpenAPI 3.1 document of every HTTP route',
    tags: ['health'],
    responses: { 200: { description: 'The document', body: z.record(z.unknown()) } },
    errors: [],
    handler: () => ({ status: 200, body: deps.openApiDocument() }),
  }),
];
