/**
 * `tsx bench/profile.ts <scenario> [seconds]`: the service alone under one scenario's load with
 * --cpu-prof (written to a temporary folder; BENCH_KEEP_PROFILES=1 keeps it), and a summary of where the
 * non-idle time went — for finding out why a target is missed.
 * Scenarios: healthz, me, refresh, login, metrics; baseline:koa-hello, baseline:node-http, baseline:koa-pg-me.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { summariseProfile } from './lib/profile-summary.js';
import { runScenarioAlone } from './lib/scenarios.js';

const scenario = process.argv[2] ?? 'healthz';
const seconds = Number(process.argv[3] ?? 10);
const directory = join(tmpdir(), `karaxas-profile-${scenario.replace(/[^a-z0-9-]/gi, '-')}-${Date.now().toString(36)}`);

const main = async () => {
  const stats = await runScenarioAlone(scenario, seconds, directory);
  console.log(`${scenario}: ${stats.rate.toFixed(0)} req/s, p50 ${stats.p50.toFixed(1)} ms, p99 ${stats.p99.toFixed(1)} ms`);
  const files = (await readdir(directory)).filter((file) => file.endsWith('.cpuprofile'));
  for (const file of files) {
    const text = summariseProfile(JSON.parse(await readFile(join(directory, file), 'utf8')) as never);
    console.log(`\n${join(directory, file)}\n${text}`);
  }
  if (process.env.BENCH_KEEP_PROFILES !== '1') await rm(directory, { recursive: true, force: true });
};

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
