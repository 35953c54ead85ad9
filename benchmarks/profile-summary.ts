// Summarises a V8 CPU profile (`node --cpu-prof`, e.g. the router's from `npm run bench -- --profile DIR`):
// where the busy time went by area (a package, a router folder, node internals, GC) and the top
// functions by self and by total time. With --requests N it also divides the busy time by N (µs/request);
// --from/--to (CLOCK_MONOTONIC µs, as process.hrtime.bigint() / 1000n) keep only the samples of that time.
//   node --import tsx benchmarks/profile-summary.ts FILE.cpuprofile [--requests N] [--top 25] [--from US --to US]
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[]; startTime: number }

const { values: args, positionals } = parseArgs({
  options: { requests: { type: "string" }, top: { type: "string" }, from: { type: "string" }, to: { type: "string" } }, allowPositionals: true,
});
if (positionals.length !== 1) throw new Error("usage: profile-summary.ts FILE.cpuprofile [--requests N] [--top N]");
const profile = JSON.parse(readFileSync(positionals[0], "utf8")) as Profile;
const top = Number(args.top ?? 25);
const requests = args.requests ? Number(args.requests) : undefined;

/** Where a function lives: a package, a folder of ours, node's internals, or V8's own buckets. */
function area(url: string, name: string): string {
  if (!url) return name.startsWith("(") ? name : "(native)";
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1];
  if (url.startsWith("node:internal/")) return `node:internal/${url.slice(14).split("/")[0].replace(/\.js$/, "")}`;
  if (url.startsWith("node:")) return url;
  const ours = /\/(server|gen|sdk|benchmarks|test)\/(?:([^/]+)\/)?/.exec(url);
  if (ours) return ours[2] && !ours[2].includes(".") ? `${ours[1]}/${ours[2]}` : ours[1];
  return url;
}

const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const self = new Map<number, number>();
const from = Number(args.from ?? -Infinity);
const to = Number(args.to ?? Infinity);
let t = profile.startTime;
profile.samples.forEach((id, i) => {
  t += profile.timeDeltas[i] ?? 0;
  if (t >= from && t <= to) self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
});

const file = (url: string) => url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*?\/(server|gen|sdk|benchmarks|test)\//, "$1/");
const key = (n: ProfileNode) => `${n.callFrame.functionName || "(anonymous)"} ${file(n.callFrame.url) || "(native)"}:${n.callFrame.lineNumber + 1}`;
const selfBy = new Map<string, number>();
const totalBy = new Map<string, number>();
const areaBy = new Map<string, number>();
let busy = 0;
let idle = 0;
for (const [id, us] of self) {
  const n = byId.get(id)!;
  if (n.callFrame.functionName === "(idle)") { idle += us; continue; }
  busy += us;
  selfBy.set(key(n), (selfBy.get(key(n)) ?? 0) + us);
  const a = area(n.callFrame.url, n.callFrame.functionName);
  areaBy.set(a, (areaBy.get(a) ?? 0) + us);
  // Total time: once per distinct function on the stack (recursion counts once).
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const k = key(byId.get(cur)!);
    if (!seen.has(k)) { seen.add(k); totalBy.set(k, (totalBy.get(k) ?? 0) + us); }
  }
}

const ms = (us: number) => (us / 1000).toFixed(0).padStart(7);
const share = (us: number) => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
const perRequest = (us: number) => (requests ? ` ${(us / requests).toFixed(1).padStart(7)} µs/req` : "");
const list = (title: string, m: Map<string, number>) => {
  console.log(`\n${title}`);
  for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${ms(us)} ms ${share(us)}${perRequest(us)}  ${k}`);
};
console.log(`busy ${ms(busy)} ms, idle ${ms(idle)} ms${perRequest(busy)}`);
list("by area (self time)", areaBy);
list("functions by self time", selfBy);
list("functions by total time (self + callees)", totalBy);
