/** Where a V8 .cpuprofile spent its non-idle time: self time by package and by function, and inclusive time. */

type CallFrame = { functionName: string; url: string; lineNumber: number };
type ProfileNode = { id: number; callFrame: CallFrame; children?: number[] };
export type CpuProfile = { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };

const shortUrl = (url: string) =>
  url
    .replace(/^.*node_modules\//, 'nm:')
    .replace(/^file:\/\/.*?\/(app|bench)\//, '$1/')
    .replace(/^node:internal\//, 'node:');

const packageOf = (frame: CallFrame) => {
  const url = shortUrl(frame.url);
  if (url === '') return frame.functionName;
  if (url.startsWith('nm:')) return url.split('/').slice(0, url.startsWith('nm:@') ? 2 : 1).join('/');
  if (url.startsWith('app/') || url.startsWith('bench/')) return url;
  return url.split(':')[0] === 'node' ? url.split('/')[0]! : url;
};

const keyOf = (frame: CallFrame) => `${frame.functionName || '(anonymous)'} ${shortUrl(frame.url)}:${frame.lineNumber + 1}`;

export const summariseProfile = (profile: CpuProfile, limit = 30): string => {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const selfTime = new Map<number, number>();
  profile.samples.forEach((id, index) => selfTime.set(id, (selfTime.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0)));

  let busy = 0;
  let idle = 0;
  const byPackage = new Map<string, number>();
  const byFunction = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const add = (map: Map<string, number>, key: string, value: number) => map.set(key, (map.get(key) ?? 0) + value);
  for (const [id, time] of selfTime) {
    const node = nodes.get(id)!;
    if (node.callFrame.functionName === '(idle)') {
      idle += time;
      continue;
    }
    busy += time;
    add(byPackage, packageOf(node.callFrame), time);
    add(byFunction, keyOf(node.callFrame), time);
    const seen = new Set<string>();
    for (let current: number | undefined = id; current !== undefined; current = parent.get(current)) {
      const key = keyOf(nodes.get(current)!.callFrame);
      if (seen.has(key)) continue;
      seen.add(key);
      add(inclusive, key, time);
    }
  }
  const top = (map: Map<string, number>, count: number) =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, count)
      .map(([key, time]) => `${((100 * time) / busy).toFixed(1).padStart(5)}%  ${key}`)
      .join('\n');
  return [
    `busy ${(busy / 1000).toFixed(0)} ms, idle ${(idle / 1000).toFixed(0)} ms (percentages are of busy time)`,
    '--- self time by package / file',
    top(byPackage, limit),
    '--- self time by function',
    top(byFunction, limit),
    '--- inclusive time',
    top(inclusive, limit * 2),
  ].join('\n');
};
