/**
 * After a forced update, an outdated client holding a still-valid access token cannot get a
 * websocket ticket (and so cannot reconnect its socket around the drain).
 */
import test from 'ava';
import { createApi, type ErrorBody } from './support/api.js';
import { useSharedService } from './support/service.js';

const shared = useSharedService();

test('ws tickets are gated by the active release policy like login and refresh', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const ops = service.config.secrets.opsApiToken;
  const old = { 'x-client-platform': 'android', 'x-client-version': '1.4.0' };
  const current = { 'x-client-platform': 'android', 'x-client-version': '2.0.0' };
  const pair = await api.login(await api.register(), old);

  t.is((await api.post('/auth/ws-ticket', undefined, pair.accessToken, old)).status, 201, 'no policy yet');

  const created = await api.post<{ policy: { id: string } }>(
    '/ops/release/policies',
    { platform: 'android', minSupportedVersion: '2.0.0', latestVersion: '2.0.0', forceUpdate: true, loginGate: true },
    ops,
  );
  t.is(created.status, 201);
  t.is((await api.post(`/ops/release/policies/${created.body.policy.id}/activate`, undefined, ops)).status, 200);

  // The gate reads a cache that is at most a second old.
  await new Promise((resolve) => setTimeout(resolve, 1_100));
  const gated = await api.post<ErrorBody>('/auth/ws-ticket', undefined, pair.accessToken, old);
  t.is(gated.status, 426);
  t.is(gated.body.error.code, 'client_update_required');
  t.is((await api.post('/auth/ws-ticket', undefined, pair.accessToken, current)).status, 201, 'an updated client passes');
});
