/**
 * Child processes of the bench: the service under test and the baselines, each pinned to the
 * server core with `taskset` when it exists, talking to the bench over an IPC channel (a `ready`
 * message with the URL, then request/reply commands such as event-loop delay or memory).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';

export const hasTaskset = (() => {
  try {
    return spawnSync('taskset', ['-V'], { stdio: 'ignore' }).status === 0;
  } catch {
    return false;
  }
})();

/** Pins this process (every thread) to `core`; returns false when taskset is missing. */
export const pinSelf = (core: number): boolean => {
  if (!hasTaskset) return false;
  return spawnSync('taskset', ['-a', '-p', '-c', String(core), String(process.pid)], { stdio: 'ignore' }).status === 0;
};

export type ChildMessage = { type: string; [key: string]: unknown };

export type BenchChild = {
  process: ChildProcess;
  url: string;
  /** Sends a command and resolves with the first reply of type `${cmd}:reply`. */
  request: <T extends ChildMessage>(cmd: string, extra?: Record<string, unknown>) => Promise<T>;
  /** Asks the child to stop gracefully; kills it after a deadline. */
  stop: () => Promise<void>;
};

export type SpawnOptions = {
  /** Script run by node (TypeScript through tsx unless `plainNode`). */
  entry: string;
  args?: string[];
  env: Record<string, string | undefined>;
  /** Core to pin to (when taskset exists). */
  core?: number;
  plainNode?: boolean;
  nodeFlags?: string[];
  readyTimeoutMs?: number;
  label: string;
};

export const nodeCommand = (options: { entry: string; args?: string[]; core?: number; plainNode?: boolean; nodeFlags?: string[] }) => {
  const nodeArgs = [...(options.nodeFlags ?? []), ...(options.plainNode ? [] : ['--import', 'tsx']), options.entry, ...(options.args ?? [])];
  return hasTaskset && options.core !== undefined
    ? { command: 'taskset', args: ['-c', String(options.core), process.execPath, ...nodeArgs] }
    : { command: process.execPath, args: nodeArgs };
};

export const spawnChild = async (options: SpawnOptions): Promise<BenchChild> => {
  const { command, args } = nodeCommand(options);
  const child = spawn(command, args, {
    stdio: ['ignore', process.env.BENCH_CHILD_STDOUT === '1' ? 'inherit' : 'ignore', 'pipe', 'ipc'],
    env: options.env as NodeJS.ProcessEnv,
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-4000);
  });
  const exited = once(child, 'exit');

  const ready = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${options.label}: not ready after ${options.readyTimeoutMs ?? 60_000} ms\n${stderr}`)),
      options.readyTimeoutMs ?? 60_000,
    );
    child.on('message', (message: ChildMessage) => {
      if (message.type === 'ready') {
        clearTimeout(timer);
        resolve(String(message.url));
      }
    });
    void exited.then(([code]) => {
      clearTimeout(timer);
      reject(new Error(`${options.label} exited (${String(code)}) before it was ready\n${stderr}`));
    });
  });
  let url: string;
  try {
    url = await ready;
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }

  const request = <T extends ChildMessage>(cmd: string, extra: Record<string, unknown> = {}) =>
    new Promise<T>((resolve, reject) => {
      const onMessage = (message: ChildMessage) => {
        if (message.type !== `${cmd}:reply`) return;
        child.off('message', onMessage);
        resolve(message as T);
      };
      child.on('message', onMessage);
      child.send({ cmd, ...extra }, (error) => {
        if (error) {
          child.off('message', onMessage);
          reject(error);
        }
      });
    });

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      if (child.connected) child.send({ cmd: 'stop' });
      else child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    })());

  return { process: child, url, request, stop };
};
