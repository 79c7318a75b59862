/**
 * The password reset of an account with MFA on needs the second factor too.
 */
import test from 'ava';
import { createApi, type ErrorBody } from './support/api.js';
import { withAdminClient } from './support/database.js';
import { useSharedService } from './support/service.js';
import { settledStep, stepAt, totpForStep } from './support/totp.js';

const shared = useSharedService();

test('an MFA user resets the password only with a valid, unused second factor', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const account = await api.register();
  const pair = await api.login(account);
  const { secret } = (await api.post<{ secret: string }>('/auth/mfa/totp/enroll', undefined, pair.accessToken)).body;
  // Activate with the previous step's code so the current step stays usable for the reset.
  const activated = await api.post<{ recoveryCodes: string[] }>(
    '/auth/mfa/totp/activate',
    { code: totpForStep(secret, (await settledStep()) - 1) },
    pair.accessToken,
  );
  t.is(activated.status, 200);
  await withAdminClient((client) => client.query('UPDATE users SET password_reset_required = true WHERE id = $1', [account.id]), service.database.name);

  const reset = (extra: Record<string, string>) =>
    api.post<ErrorBody>('/auth/password/reset', {
      email: account.email,
      currentPassword: account.password,
      newPassword: 'an entirely new passphrase',
      ...extra,
    });

  const withoutCode = await reset({});
  t.is(withoutCode.status, 401);
  t.is(withoutCode.body.error.code, 'invalid_mfa_code');
  const wrongCode = await reset({ code: '000000' === totpForStep(secret, stepAt()) ? '111111' : '000000' });
  t.is(wrongCode.body.error.code, 'invalid_mfa_code');

  const code = totpForStep(secret, stepAt());
  const done = await reset({ code });
  t.is(done.status, 200, JSON.stringify(done.body));

  const flag = await withAdminClient(
    (client) => client.query<{ password_reset_required: boolean }>('SELECT password_reset_required FROM users WHERE id = $1', [account.id]),
    service.database.name,
  );
  t.false(flag.rows[0]!.password_reset_required);
  // The code that authorised the reset is spent: it cannot be replayed to sign in.
  const login = await api.post<{ mfaToken: string }>('/auth/login', { email: account.email, password: 'an entirely new passphrase' });
  const replay = await api.post<ErrorBody>('/auth/mfa/verify', { mfaToken: login.body.mfaToken, code });
  t.is(replay.status, 401);
  t.is(replay.body.error.code, 'invalid_mfa_code');
});
