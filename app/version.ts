import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The nearest package.json above this file (the source tree and dist/ sit at different depths). */
const findPackageJson = (): string => {
  for (let folder = dirname(fileURLToPath(import.meta.url)); ; folder = dirname(folder)) {
    const candidate = join(folder, 'package.json');
    if (existsSync(candidate)) return candidate;
    if (folder === dirname(folder)) throw new Error('package.json not found');
  }
};

/** The package version, for the OpenAPI document and logs. */
export const version: string = (JSON.parse(readFileSync(findPackageJson(), 'utf8')) as { version: string }).version;
