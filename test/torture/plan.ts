// What one run does to the system, chosen from its seed before anything starts (so it can be printed,
// and `--seed` brings it back). Faults fire at a point of the load's progress (a fraction of all
// transfers settled) rather than at a clock time: on a slow, shared machine a clock schedule would
// fire before the load starts or after it ends.
import { failpointNames } from "../../server/transactions/failpoints.js";
import { Random } from "./random.js";

export type Fault =
  /** A shard's primary postmaster SIGKILLed (a crash: no checkpoint, backends orphaned), then started again. */
  | { kind: "shard-kill"; at: number; shard: number; downMs: number }
  /** A shard's primary stopped cleanly (fast shutdown: sessions ended, prepared transactions kept), then started again. */
  | { kind: "shard-stop"; at: number; shard: number; downMs: number }
  /** A node's postgres processes SIGSTOPped (a stalled machine: TCP accepts, nothing answers), SIGCONTed after pauseMs. */
  | { kind: "pause"; at: number; node: number | "catalog"; pauseMs: number }
  /** The serving router SIGKILLed from outside, jitterMs after the progress point (a random moment mid-call). */
  | { kind: "router-kill"; at: number; jitterMs: number };

export interface Plan {
  seed: number;
  /** One per router incarnation, in order, each "name@N": the incarnation SIGKILLs itself at the Nth hit. */
  failpoints: string[];
  /** In the order they fire (one after another: each ends before the next starts). */
  faults: Fault[];
}

export function makePlan(seed: number, shards: number): Plan {
  const r = new Random(seed);
  const at = () => 0.05 + r.int(86) / 100; // 5 % … 90 % of the transfers settled
  const failpoints: string[] = [];
  const faults: Fault[] = [];
  for (let tries = 0; failpoints.length + faults.length === 0; tries++) {
    if (r.chance(0.7)) {
      for (let i = r.between(1, 2); i > 0; i--) failpoints.push(`${r.pick(failpointNames)}@${r.between(1, 15)}`);
    }
    if (r.chance(0.7)) {
      for (let i = r.between(1, 2); i > 0; i--) {
        faults.push({ kind: r.chance(0.5) ? "shard-kill" : "shard-stop", at: at(), shard: r.int(shards), downMs: r.chance(0.5) ? 0 : r.between(50, 1500) });
      }
    }
    if (r.chance(0.7)) {
      // The catalog too, now and then: the coordinator records its commit decisions there.
      for (let i = r.between(1, 3); i > 0; i--) faults.push({ kind: "pause", at: at(), node: r.chance(0.2) ? "catalog" : r.int(shards), pauseMs: r.between(100, 3000) });
    }
    if (r.chance(0.6)) {
      for (let i = r.between(1, 2); i > 0; i--) faults.push({ kind: "router-kill", at: at(), jitterMs: r.int(300) });
    }
  }
  faults.sort((a, b) => a.at - b.at);
  return { seed, failpoints, faults };
}

/** `shardName(i)`: the name of shard i (its primary is what the shard faults hit). */
export function describeFault(f: Fault, shardName: (i: number) => string): string {
  const pct = `${Math.round(f.at * 100)}%`;
  switch (f.kind) {
    case "shard-kill": return `${pct}: ${shardName(f.shard)} primary SIGKILLed, restarted after ${f.downMs} ms`;
    case "shard-stop": return `${pct}: ${shardName(f.shard)} primary stopped cleanly, restarted after ${f.downMs} ms`;
    case "pause": return `${pct}: ${f.node === "catalog" ? "catalog" : `${shardName(f.node)} primary`} SIGSTOPped for ${f.pauseMs} ms`;
    case "router-kill": return `${pct}: router SIGKILLed (+${f.jitterMs} ms)`;
  }
}
