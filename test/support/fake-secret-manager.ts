/**
 * A local fake of Secret Manager's gRPC surface (AccessSecretVersion only), built from the
 * service definition shipped inside `@google-cloud/secret-manager`, so that the real client can
 * be exercised end to end: point it here with SECRET_MANAGER_EMULATOR_HOST=<host>.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { crc32c } from '../../app/config/secret-manager.js';

const require = createRequire(import.meta.url);

export type FakeSecretManagerOptions = {
  /** Version name (`projects/P/secrets/S/versions/V`) → payload (text is sent as UTF-8). */
  versions?: Record<string, string | Uint8Array>;
  /** Version names answered with PERMISSION_DENIED. */
  denied?: readonly string[];
  /**
   * Version names whose response carries a wrong data_crc32c (to prove the client checks it).
   */
  corrupt?: readonly string[];
  /** Version names whose response carries no data_crc32c at all. */
  withoutChecksum?: readonly string[];
};

export type FakeSecretManager = {
  /** `127.0.0.1:<port>`, the value for SECRET_MANAGER_EMULATOR_HOST. */
  host: string;
  /** Every version name requested, in arrival order. */
  requests: string[];
  /** Adds or replaces a version while running. */
  setVersion: (name: string, payload: string | Uint8Array) => void;
  close: () => Promise<void>;
};

type AccessRequest = { name?: string };
type AccessResponse = { name: string; payload: { data: Buffer; dataCrc32c?: string } };

let packageDefinition: protoLoader.PackageDefinition | undefined;

const loadDefinition = (): protoLoader.PackageDefinition => {
  if (packageDefinition === undefined) {
    // build/protos/protos.json is the self-contained descriptor the client itself is built from.
    const root = join(dirname(require.resolve('@google-cloud/secret-manager')), '..', 'protos');
    const json = JSON.parse(readFileSync(join(root, 'protos.json'), 'utf8')) as Parameters<typeof protoLoader.fromJSON>[0];
    packageDefinition = protoLoader.fromJSON(json, { keepCase: false, longs: String, defaults: false, oneofs: true });
  }
  return packageDefinition;
};

const serviceName = 'google.cloud.secretmanager.v1.SecretManagerService';

export const startFakeSecretManager = async (options: FakeSecretManagerOptions = {}): Promise<FakeSecretManager> => {
  const definition = loadDefinition();
  const service = definition[serviceName];
  if (service === undefined || !('AccessSecretVersion' in service)) {
    throw new Error(`${serviceName} is missing from the shipped protos`);
  }
  const versions = new Map<string, Buffer>(
    Object.entries(options.versions ?? {}).map(([name, payload]) => [name, Buffer.from(payload)]),
  );
  const denied = new Set(options.denied);
  const corrupt = new Set(options.corrupt);
  const withoutChecksum = new Set(options.withoutChecksum);
  const requests: string[] = [];

  const accessSecretVersion: grpc.handleUnaryCall<AccessRequest, AccessResponse> = (call, callback) => {
    const name = call.request.name ?? '';
    requests.push(name);
    if (denied.has(name)) {
      callback({ code: grpc.status.PERMISSION_DENIED, details: `Permission denied on resource ${name}` });
      return;
    }
    const data = versions.get(name);
    if (data === undefined) {
      callback({ code: grpc.status.NOT_FOUND, details: `Secret Version [${name}] not found.` });
      return;
    }
    const checksum = corrupt.has(name) ? (crc32c(data) ^ 1) >>> 0 : crc32c(data);
    const payload: AccessResponse['payload'] = withoutChecksum.has(name)
      ? { data }
      : { data, dataCrc32c: String(checksum) };
    callback(null, { name, payload });
  };

  const server = new grpc.Server();
  server.addService(service as grpc.ServiceDefinition, {
    AccessSecretVersion: accessSecretVersion as grpc.UntypedHandleCall,
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    );
  });

  return {
    host: `127.0.0.1:${port}`,
    requests,
    setVersion: (name, payload) => void versions.set(name, Buffer.from(payload)),
    close: () =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2_000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
};
