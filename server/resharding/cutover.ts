// The switch from the map in force (version V) to the job's map (V+1), across every router, with
// writes to the moving keys paused for as short a time as the stream's lag allows:
//   1. raise the fence in the catalog; routers hold new writes to moving keys, drain what they have
//      in flight and acknowledge (fence-follower.ts, write-fence.ts);
//   2. on every source, raise the minimum write epoch (a router that did not acknowledge can no
//      longer write there), then take a SHARE lock on the moving tables, which waits for every write
//      still open, prepared two-phase transactions included, and write a marker into the WAL;
//   3. wait until each source's stream has applied its marker: the targets then hold every write the
//      sources took;
//   4. commit V+1 (with a directory map's moved entries) and lift the fence in one catalog
//      transaction; held writes go to the new owners.
// Anything that fails or outlasts the time limit aborts: the sources' epochs are set back, the fence
// is aborted, and the sources serve as before.
import type postgres from "postgres";
import type { FenceStore } from "../catalog/fence-store.js";
import type { ShardMapStore, StoredShard } from "../catalog/shard-map-store.js";
import type { PlacementConfig } from "../placement/placement-config.js";
import { minimumEpoch, setMinimumEpoch } from "./epoch-guard.js";
import { type Lsn, parseLsn } from "./lsn.js";
import type { TableShape } from "./table-schema.js";

export interface CutoverSource { name: string; sql: postgres.Sql; shapes: TableShape[] }

export interface CutoverSpec {
  job: string;
  fences: FenceStore;
  maps: ShardMapStore;
  /** This router's id (recorded as the new version's author). */
  router: string;
  fromVersion: number;
  to: { placement: PlacementConfig; shards: StoredShard[] };
  /** Directory entries that change with the new map (key → shard), committed with it. */
  directoryEntries?: Record<string, string>;
  sources: CutoverSource[];
  /** How far each source's stream has applied, on every one of its targets. */
  appliedThrough(source: string): Lsn;
  /** The whole cutover at most, from the fence to the new version (default 5 s). */
  timeoutMs?: number;
  /**
   * How long to wait for routers' acknowledgements before relying on the sources' guard (default
   * 150 ms: a router that hears the catalog acknowledges in a few; one that does not is fenced).
   */
  ackTimeoutMs?: number;
  /** Routers seen this recently are expected to acknowledge (default 3 s). */
  liveWithinMs?: number;
}

export interface CutoverResult {
  version: number;
  /** The new version's write epoch, now the sources' minimum. */
  epoch: number;
  /** From raising the fence to lifting it: the longest a held write could have waited. */
  fencedMs: number;
  acknowledged: string[];
  /** Live routers that did not acknowledge in time: the sources' guard fenced them. */
  unacknowledged: string[];
  /** Milliseconds spent in each step. */
  steps: { acknowledge: number; settle: number; catchUp: number; commit: number };
}

export class CutoverError extends Error {}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function cutOver(spec: CutoverSpec): Promise<CutoverResult> {
  const timeoutMs = spec.timeoutMs ?? 5000;
  const live = await spec.fences.liveRouters(spec.liveWithinMs ?? 3000);
  const started = performance.now();
  const deadline = started + timeoutMs;
  const left = () => deadline - performance.now();
  const previous = new Map<string, number>();
  let committed = false;
  const epoch = await spec.fences.raise(spec.job, spec.fromVersion, spec.to.placement, spec.to.shards);
  try {
    // 1. Acknowledgements.
    let acked = new Set<string>();
    const ackBy = performance.now() + Math.min(spec.ackTimeoutMs ?? 150, timeoutMs / 2);
    for (;;) {
      acked = await spec.fences.acknowledged(spec.job);
      if (live.every((r) => acked.has(r)) || performance.now() >= ackBy) break;
      await sleep(2);
    }
    const t1 = performance.now();

    // 2. Fence the sources in the database, settle what is open on them, mark the WAL.
    const markers = new Map<string, Lsn>();
    await Promise.all(spec.sources.map(async (s) => {
      previous.set(s.name, await minimumEpoch(s.sql));
      await setMinimumEpoch(s.sql, epoch);
      const marker = await s.sql.begin(async (tx) => {
        await tx.unsafe(`set local lock_timeout = ${Math.max(1, Math.floor(left()))}`);
        if (s.shapes.length) await tx.unsafe(`lock table ${s.shapes.map((t) => t.qualified).join(", ")} in share mode`);
        const [{ lsn }] = await tx.unsafe<{ lsn: string }[]>("select pg_logical_emit_message(true, 'shardrouter', $1)::text as lsn", [`cutover ${spec.job}`]);
        return parseLsn(lsn);
      }).catch((err) => {
        if ((err as { code?: string }).code === "55P03") {
          throw new CutoverError(`${s.name}: writes (or prepared two-phase transactions) on the moving tables did not finish within the cutover's ${timeoutMs} ms`);
        }
        throw err;
      });
      markers.set(s.name, marker);
    }));
    const t2 = performance.now();

    // 3. The streams catch up with the markers.
    for (const s of spec.sources) {
      while (spec.appliedThrough(s.name) < markers.get(s.name)!) {
        if (left() <= 0) throw new CutoverError(`${s.name}'s stream did not apply the last writes within the cutover's ${timeoutMs} ms`);
        await sleep(1);
      }
    }
    const t3 = performance.now();

    // 4. The new version, and the fence lifted with it.
    if (left() <= 0) throw new CutoverError(`the cutover took longer than ${timeoutMs} ms`);
    const lifted = await spec.fences.lift(spec.job, spec.fromVersion, spec.router, spec.directoryEntries).catch(async (err) => {
      // The answer may be lost after the commit: the catalog says what happened.
      const fence = (await spec.fences.all()).find((f) => f.job === spec.job);
      if (fence?.state === "lifted" && fence.toVersion === spec.fromVersion + 1 && fence.epoch === epoch) {
        return { version: fence.toVersion, epoch: (await spec.maps.latest())?.epoch ?? 0 };
      }
      throw err;
    });
    if (lifted === null) throw new CutoverError(`the shard map is no longer version ${spec.fromVersion}: another change came first`);
    committed = true;
    // From now on the sources take only routers on the new map: one still on the old map (even one
    // that acknowledged, then lost the catalog) would write a moved key where nobody streams it.
    await Promise.all(spec.sources.map((s) => setMinimumEpoch(s.sql, lifted.epoch)));
    const t4 = performance.now();
    return {
      version: lifted.version, epoch: lifted.epoch, fencedMs: t4 - started,
      acknowledged: [...acked], unacknowledged: live.filter((r) => !acked.has(r)),
      steps: { acknowledge: t1 - started, settle: t2 - t1, catchUp: t3 - t2, commit: t4 - t3 },
    };
  } catch (err) {
    if (committed) throw err; // the new map is in force: raising the sources' epoch is for the job to finish
    // Serve from the sources again: routers write there under the old map, with the epoch they had.
    await Promise.all([...previous].map(([name, v]) => setMinimumEpoch(spec.sources.find((s) => s.name === name)!.sql, v).catch(() => {})));
    await spec.fences.abort(spec.job).catch(() => {});
    throw err;
  }
}
