#!/usr/bin/env node
// karaxas-ops — the package bin. Runs the compiled CLI (dist/app/cli/main.js, what `npm run build`
// produces) when it is present and not older than the TypeScript sources; otherwise loads
// app/cli/main.ts through tsx's programmatic API (tsx is a devDependency: a checkout after
// `npm ci`). Plain JavaScript on purpose: it must run before anything is compiled.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const compiled = join(root, 'dist', 'app', 'cli', 'main.js');
const source = join(root, 'app', 'cli', 'main.ts');

/** Newest modification time of the .ts files under app/ (0 when there are none, as in the image). */
const newestSource = (directory) => {
  let newest = 0;
  let entries;
  try {
    entries = readdirSync(directory, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
};

const useCompiled = existsSync(compiled) && (!existsSync(source) || statSync(compiled).mtimeMs >= newestSource(join(root, 'app')));

let cli;
if (useCompiled) {
  cli = await import(new URL('../dist/app/cli/main.js', import.meta.url).href);
} else {
  let tsImport;
  try {
    ({ tsImport } = await import('tsx/esm/api'));
  } catch {
    process.stderr.write(
      'karaxas-ops: dist/app/cli/main.js is missing (run `npm run build`) and tsx is not installed to run the sources (run `npm ci`)\n',
    );
    process.exit(2);
  }
  cli = await tsImport('../app/cli/main.ts', import.meta.url);
}
await cli.main();
