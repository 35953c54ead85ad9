// What a reshard moves: for every source shard of the map in force, the targets its rows go to under
// the new map. A row moves when its key's owner in the new map is another shard; a source's rows all
// belong to it under the map in force, so the new map alone decides where each goes.
import type { ShardMap } from "../placement/shard-map.js";

export interface SourcePlan {
  source: string;
  /** Shards that receive rows from this source. */
  targets: string[];
  /** The shard that owns `key` under the new map, or undefined when it stays on `source`. */
  destination(key: string): string | undefined;
  /** `key` belongs to `source` under the map in force (a target also holds other sources' keys). */
  fromSource(key: string): boolean;
}

export class ReshardPlanError extends Error {}

/** Directory maps: each moving key, with its owner when the job was planned and its new one. */
export type KeyMoves = Record<string, { from: string; to: string }>;

export function planMoves(from: ShardMap, to: ShardMap, keyMoves?: KeyMoves): SourcePlan[] {
  if (keyMoves) return planKeyMoves(keyMoves);
  for (const map of [from, to]) {
    // A directory lookup is asynchronous (it may ask the catalog): its keys move one by one (keyMoves).
    if (map.strategy.name === "directory") throw new ReshardPlanError("a directory map's keys move one by one: give directory_moves");
  }
  const owner = (key: string) => (to.strategy.place(key) as { shard: string }).shard;
  const ownerBefore = (key: string) => (from.strategy.place(key) as { shard: string }).shard;
  const toNames = new Set(to.shards.map((s) => s.name));
  const plans: SourcePlan[] = [];
  for (const { name: source } of from.shards) {
    // Which shards can receive from this source: every shard of the new map but itself.
    const targets = [...toNames].filter((t) => t !== source);
    if (targets.length === 0) continue;
    plans.push({
      source,
      targets,
      // An empty key is no shard key (every strategy refuses it), so such a row has no other owner:
      // it stays. The request log's records from before it kept home keys have one.
      destination: (key) => {
        if (key === "") return undefined;
        const next = owner(key);
        return next === source ? undefined : next;
      },
      fromSource: (key) => key === "" || ownerBefore(key) === source,
    });
  }
  return plans;
}

/**
 * A directory job moves the listed keys alone: each from the shard that owned it when the job was
 * planned (kept with the job: after the cutover the directory names the new owner) to its new one.
 */
function planKeyMoves(keyMoves: KeyMoves): SourcePlan[] {
  const moves = new Map(Object.entries(keyMoves).filter(([, m]) => m.from !== m.to));
  const sources = [...new Set([...moves.values()].map((m) => m.from))].sort();
  return sources.map((source) => ({
    source,
    targets: [...new Set([...moves.values()].filter((m) => m.from === source).map((m) => m.to))].sort(),
    destination: (key) => {
      const m = moves.get(key);
      return m && m.from === source ? m.to : undefined;
    },
    fromSource: (key) => moves.get(key)?.from === source,
  }));
}
