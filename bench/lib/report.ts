/** The bench's one table and bench/results.json. */
import { writeFile } from 'node:fs/promises';

export type ScenarioResult = {
  scenario: string;
  /** req/s, msg/s, upgrades/s … (what `rate` counts). */
  unit: string;
  rate: number | null;
  /** Milliseconds. */
  p50: number | null;
  p99: number | null;
  baseline: string;
  baselineRate: number | null;
  baselineP99?: number | null;
  ratio: number | null;
  /** Baseline CPU per request ÷ scenario CPU per request (server process): the ratio without the machine's noise. */
  cpuRatio?: number | null;
  target: string;
  pass: boolean | null;
  /** Anything else worth keeping (event-loop delay, memory, every cold-start time). */
  details?: Record<string, unknown>;
};

const fixed = (value: number | null | undefined, digits: number) =>
  value === null || value === undefined || Number.isNaN(value) ? '—' : value.toFixed(digits);

const rateText = (value: number | null, unit: string) => (value === null ? '—' : `${value >= 100 ? value.toFixed(0) : value.toFixed(1)} ${unit}`);

export const renderTable = (results: readonly ScenarioResult[]): string => {
  const header = ['scenario', 'rate', 'p50 ms', 'p99 ms', 'baseline', 'baseline rate', 'ratio', 'CPU ratio', 'target', 'result'];
  const rows = results.map((result) => [
    result.scenario,
    rateText(result.rate, result.unit),
    fixed(result.p50, 1),
    fixed(result.p99, 1),
    result.baseline,
    rateText(result.baselineRate, result.unit),
    result.ratio === null ? '—' : `${(result.ratio * 100).toFixed(0)}%`,
    result.cpuRatio === null || result.cpuRatio === undefined ? '—' : `${(result.cpuRatio * 100).toFixed(0)}%`,
    result.target,
    result.pass === null ? 'info' : result.pass ? 'PASS' : 'FAIL',
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) => `| ${cells.map((cell, column) => cell.padEnd(widths[column]!)).join(' | ')} |`;
  return [line(header), `|${widths.map((width) => '-'.repeat(width + 2)).join('|')}|`, ...rows.map(line)].join('\n');
};

export const writeResults = (path: string, body: unknown) => writeFile(path, `${JSON.stringify(body, null, 2)}\n`);
