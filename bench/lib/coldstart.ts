/**
 * Cold start of the production entry point: app/ is compiled to JavaScript the way the
 * container image has it (dist/app/main.js, SQL migrations alongside), then `node main.js` is
 * spawned against the running, migrated database and timed from spawn to the first /readyz 200.
 *
 * The compile is a per-file transpile (TypeScript's transpileModule, no type check): the
 * output is what `tsc` emits for these files, and it takes seconds instead of a full build.
 */
import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import ts from 'typescript';
import { nodeCommand } from './proc.js';

const repositoryRoot = resolve(import.meta.dirname, '..', '..');

const walk = async (directory: string): Promise<string[]> => {
  const entries = await readdir(directory, { withFileTypes: true });
  const files = await Promise.all(
    entries.map((entry) => (entry.isDirectory() ? walk(join(directory, entry.name)) : Promise.resolve([join(directory, entry.name)]))),
  );
  return files.flat();
};

/** Compiles app/ into a temporary folder shaped like the image (package.json, node_modules, app/). */
export const buildProductionTree = async (): Promise<{ root: string; entry: string; remove: () => Promise<void> }> => {
  const root = await mkdtemp(join(tmpdir(), 'karaxas-bench-dist-'));
  const source = join(repositoryRoot, 'app');
  for (const file of await walk(source)) {
    const target = join(root, 'app', relative(source, file));
    await mkdir(dirname(target), { recursive: true });
    if (file.endsWith('.ts') && !file.endsWith('.d.ts')) {
      if (file.endsWith('.test.ts')) continue;
      const output = ts.transpileModule(await readFile(file, 'utf8'), {
        compilerOptions: {
          target: ts.ScriptTarget.ES2023,
          // What NodeNext emits for a "type": "module" package (transpileModule cannot see package.json).
          module: ts.ModuleKind.ESNext,
          esModuleInterop: true,
          verbatimModuleSyntax: true,
          isolatedModules: true,
        },
        fileName: file,
      });
      await writeFile(target.replace(/\.ts$/, '.js'), output.outputText);
    } else {
      await copyFile(file, target);
    }
  }
  await copyFile(join(repositoryRoot, 'package.json'), join(root, 'package.json'));
  await symlink(join(repositoryRoot, 'node_modules'), join(root, 'node_modules'), 'dir');
  return { root, entry: join(root, 'app', 'main.js'), remove: () => rm(root, { recursive: true, force: true }) };
};

const pollReady = async (url: string, deadline: number): Promise<number> => {
  for (;;) {
    try {
      const response = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1_000) });
      await response.arrayBuffer();
      if (response.status === 200) return performance.now();
    } catch {
      // not listening yet
    }
    if (performance.now() > deadline) throw new Error(`no /readyz 200 from ${url} within the deadline`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
};

/** Spawns the production entry `runs` times; returns every spawn → /readyz 200 time in ms. */
export const measureColdStarts = async (options: {
  entry: string;
  env: Record<string, string | undefined>;
  port: number;
  runs: number;
  core?: number;
  nodeFlags?: string[];
}): Promise<number[]> => {
  const times: number[] = [];
  for (let run = 0; run < options.runs; run += 1) {
    const { command, args } = nodeCommand({ entry: options.entry, plainNode: true, core: options.core, nodeFlags: options.nodeFlags });
    let stderr = '';
    const started = performance.now();
    const child = spawn(command, args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...options.env, PORT: String(options.port) } as NodeJS.ProcessEnv,
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString('utf8')).slice(-4000);
    });
    const exited = new Promise<number | null>((resolveExit) => child.on('exit', (code) => resolveExit(code)));
    try {
      const ready = await Promise.race([
        pollReady(`http://127.0.0.1:${options.port}`, started + 20_000),
        exited.then((code) => {
          throw new Error(`production entry exited (${String(code)}) before it was ready\n${stderr}`);
        }),
      ]);
      times.push(ready - started);
    } finally {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
  }
  return times;
};
