import { readFileSync } from 'node:fs';
import test from 'ava';
import { configurationReference, schemaVariables, variableDescriptions } from '../app/config/reference.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

test('the README quick start is exactly the two commands', (t) => {
  t.regex(readme, /## Quick start\n\n```sh\nnpm ci && npm start\nnpm test\n```/);
});

test('the README configuration table is the one generated from the schema', (t) => {
  const section = /<!-- config-reference:start -->\n([\s\S]*?)\n<!-- config-reference:end -->/.exec(readme)?.[1];
  t.is(section, configurationReference(), 'run `npm run config:reference` and paste its output into the README');
});

test('every configuration variable is described, and nothing else is', (t) => {
  t.deepEqual(Object.keys(variableDescriptions).sort(), schemaVariables().sort());
});
