/**
 * The production path for `*_SECRET_REF`: the official Secret Manager client
 * (`@google-cloud/secret-manager`, gRPC transport), authenticated with Application Default
 * Credentials (the Cloud Run service account). Loaded lazily by `./index.js` only when a
 * reference is configured, and closed once boot has resolved the secrets.
 *
 * Nothing here ever puts a payload into an error message or a log line.
 */
import type { SecretAccessor } from './index.js';

export type SecretManagerAccessorOptions = {
  /**
   * `host:port` of a plaintext Secret Manager gRPC endpoint (a local emulator or the test fake).
   * Absent in production, where the default endpoint and ADC are used.
   */
  emulatorHost?: string | undefined;
  /** Total time for one access, retries included (the generated default is 10 minutes). */
  timeoutMs?: number;
};

/** A {@link SecretAccessor} that holds a gRPC channel until {@link close} is called. */
export type SecretManagerAccessor = SecretAccessor & {
  /** Ends the client's channel. Further accesses fail. Idempotent. */
  close: () => Promise<void>;
};

const grpcStatusNames = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;

/**
 * A failed access. `code` is the gRPC status code when the failure came from the call, so
 * callers can tell NOT_FOUND from PERMISSION_DENIED. The message names the version and the
 * status only: neither the server's detail text nor any payload is carried along.
 */
export class SecretAccessError extends Error {
  constructor(
    readonly versionName: string,
    readonly code: number | undefined,
    reason: string,
  ) {
    super(`Secret Manager access to ${versionName} failed: ${reason}`);
    this.name = 'SecretAccessError';
  }
}

const describeStatus = (code: number): string => `gRPC ${grpcStatusNames[code] ?? 'status'} (${code})`;

/** CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum Secret Manager reports. */
const crc32cTable = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n += 1) {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export const crc32c = (data: Uint8Array): number => {
  let crc = 0xffffffff;
  for (const byte of data) crc = crc32cTable[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
};

/** protobufjs hands an int64 over as a number, a string or a Long, depending on the build. */
const int64ToNumber = (value: unknown): number | undefined => {
  if (value === null || value === undefined) return undefined;
  const number = Number(typeof value === 'object' ? String(value) : value);
  return Number.isSafeInteger(number) ? number : Number.NaN;
};

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Minimal logger shape of google-logging-utils, used to silence the generated client's logging. */
const silentLogger = Object.assign(() => undefined, {
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  debug: () => undefined,
  sublog: () => silentLogger,
  on: () => silentLogger,
});

/**
 * Creates an accessor backed by `SecretManagerServiceClient`.
 *
 * Production: the default endpoint over TLS with ADC. With `emulatorHost`: that endpoint over an
 * insecure channel and without Google credentials (for local emulators and tests only; the
 * config schema refuses the emulator when deployed).
 */
export const createSecretManagerAccessor = async (
  options: SecretManagerAccessorOptions = {},
): Promise<SecretManagerAccessor> => {
  const { SecretManagerServiceClient } = await import('@google-cloud/secret-manager');
  const timeout = options.timeoutMs ?? 20_000;

  let client: InstanceType<typeof SecretManagerServiceClient>;
  if (options.emulatorHost === undefined) {
    client = new SecretManagerServiceClient();
  } else {
    const { host, port } = splitHostPort(options.emulatorHost);
    const grpc = await import('@grpc/grpc-js');
    client = new SecretManagerServiceClient({
      apiEndpoint: host,
      port,
      // The channel credentials must come from the very grpc-js instance that builds the stub,
      // so hand that instance to google-gax as well.
      grpc,
      sslCreds: grpc.credentials.createInsecure(),
      // google-gax skips Google credentials when sslCreds is given, but still asks the auth
      // object for the universe domain; stating it keeps ADC discovery (and its metadata-server
      // probe) out of local runs.
      universeDomain: 'googleapis.com',
    });
  }
  // The generated client logs whole responses (payloads included) when GOOGLE_SDK_NODE_LOGGING
  // is set; a secret must never reach a log, so that logger is replaced when present.
  const internals = client as unknown as { _log?: unknown };
  if ('_log' in internals) internals._log = silentLogger;

  let closed = false;
  const access = async (versionName: string): Promise<string> => {
    if (closed) throw new SecretAccessError(versionName, undefined, 'the client is closed');
    let response;
    try {
      // google-gax applies `timeout` to its retry loop but can overrun it while the channel is
      // (re)connecting; the race keeps the documented bound on boot time.
      [response] = await withDeadline(client.accessSecretVersion({ name: versionName }, { timeout }), timeout);
    } catch (error: unknown) {
      const code = (error as { code?: unknown } | null)?.code;
      if (typeof code === 'number') throw new SecretAccessError(versionName, code, describeStatus(code));
      // Not a gRPC status (e.g. no Application Default Credentials): keep the message out, it is
      // not ours to vouch for.
      throw new SecretAccessError(versionName, undefined, `${error instanceof Error ? error.name : 'error'} before a response`);
    }

    const data = response.payload?.data;
    if (data === null || data === undefined) {
      throw new SecretAccessError(versionName, undefined, 'the response has no payload');
    }
    const bytes = typeof data === 'string' ? Buffer.from(data, 'base64') : data;
    const expected = int64ToNumber(response.payload?.dataCrc32c);
    if (expected !== undefined && crc32c(bytes) !== expected) {
      throw new SecretAccessError(versionName, undefined, 'the payload does not match its data_crc32c checksum');
    }
    try {
      return utf8.decode(bytes);
    } catch {
      throw new SecretAccessError(versionName, undefined, 'the payload is not valid UTF-8 text');
    }
  };

  return Object.assign(access, {
    close: async () => {
      if (closed) return;
      closed = true;
      await client.close();
    },
  });
};

const deadlineExceeded = 4;

const withDeadline = async <T>(promise: Promise<T>, ms: number): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error('deadline exceeded'), { code: deadlineExceeded })), ms);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
};

const splitHostPort = (value: string): { host: string; port: number } => {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:[\]\s]+):(\d{1,5})$/.exec(value.trim());
  const port = Number(match?.[2]);
  if (!match || port < 1 || port > 65_535) {
    throw new SecretAccessError('(emulator)', undefined, 'SECRET_MANAGER_EMULATOR_HOST must be host:port');
  }
  // An IPv6 literal keeps its brackets: google-gax joins host and port with a colon.
  return { host: match[1]!, port };
};
