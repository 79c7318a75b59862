import test from 'ava';
import { startTestService } from './support/service.js';

test('the real server answers health, readiness and the OpenAPI document', async (t) => {
  const service = await startTestService(t);
  const health = await fetch(`${service.url}/healthz`);
  t.is(health.status, 200);
  t.deepEqual(await health.json(), { status: 'ok' });
  const ready = await fetch(`${service.url}/readyz`);
  t.deepEqual(await ready.json(), { status: 'ready' });
  const document = (await (await fetch(`${service.url}/openapi.json`)).json()) as { openapi: string; paths: Record<string, unknown> };
  t.is(document.openapi, '3.1.0');
  t.truthy(document.paths['/readyz']);
});
