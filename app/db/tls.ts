import type { ConnectionOptions } from 'node:tls';
import type { Config } from '../config/index.js';

/**
 * Node TLS options for a libpq-style `sslmode`.
 *
 * `require` encrypts without verifying the server certificate (libpq semantics; Cloud SQL's
 * server certificates are signed by a per-instance CA, so public-root verification would fail),
 * `verify-ca` checks the chain against DB_SSL_ROOT_CERT, `verify-full` also checks the host name.
 * Returns `false` for `disable`.
 */
export const tlsOptionsFor = (database: Config['database']): ConnectionOptions | false => {
  switch (database.sslMode) {
    case 'disable':
      return false;
    case 'require':
      return { rejectUnauthorized: false };
    case 'verify-ca':
      return { ca: database.sslRootCert, rejectUnauthorized: true, checkServerIdentity: () => undefined };
    case 'verify-full':
      return { ca: database.sslRootCert, rejectUnauthorized: true };
  }
};
