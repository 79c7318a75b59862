/**
 * The OpenAPI 3.1 document, generated from the same route definitions that serve requests.
 */
import { extendZodWithOpenApi, OpenAPIRegistry, OpenApiGeneratorV31, type RouteConfig } from '@asteasolutions/zod-to-openapi';
import { z, type AnyZodObject } from 'zod';
import { errorRegistry } from './errors.js';
import { errorEnvelopeSchema, openApiPath, type AnyRoute } from './route.js';

// The generator reads metadata through `.openapi()`, which this adds to zod's prototypes.
extendZodWithOpenApi(z);

const json = (schema: Parameters<OpenAPIRegistry['register']>[1]) => ({ 'application/json': { schema } });

export const buildOpenApiDocument = (routes: readonly AnyRoute[], info: { version: string }) => {
  const registry = new OpenAPIRegistry();
  const envelope = registry.register('ErrorEnvelope', errorEnvelopeSchema);
  registry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' });
  registry.registerComponent('securitySchemes', 'ops', {
    type: 'http',
    scheme: 'bearer',
    description: 'OPS_API_TOKEN, or an admin access token whose amr includes otp',
  });

  for (const route of routes) {
    const responses: RouteConfig['responses'] = {};
    for (const [status, response] of Object.entries(route.responses)) {
      responses[status] = response.body
        ? { description: response.description, content: json(response.body) }
        : { description: response.description };
    }
    const errorStatuses = new Map<number, string[]>();
    for (const code of [...route.errors, 'internal_error' as const]) {
      const { status } = errorRegistry[code];
      errorStatuses.set(status, [...(errorStatuses.get(status) ?? []), code]);
    }
    for (const [status, codes] of errorStatuses) {
      responses[String(status)] = { description: `Error: ${codes.join(', ')}`, content: json(envelope) };
    }
    const request: RouteConfig['request'] = {};
    if (route.request?.body) request.body = { required: !route.request.body.safeParse(undefined).success, content: json(route.request.body) };
    if (route.request?.query) request.query = route.request.query as AnyZodObject;
    if (route.request?.params) request.params = route.request.params as AnyZodObject;

    registry.registerPath({
      method: route.method,
      path: openApiPath(route.path),
      summary: route.summary,
      tags: route.tags,
      ...(route.security ? { security: [{ [route.security]: [] }] } : {}),
      request,
      responses,
    });
  }

  return new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'Karaxas backend API',
      version: info.version,
      description: 'Every error body is the ErrorEnvelope; every response carries X-Request-ID.',
    },
  });
};
