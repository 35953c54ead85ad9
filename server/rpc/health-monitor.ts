// Whether this router can serve at all: it is SERVING while at least one shard primary answers a
// `select 1`, NOT_SERVING when none does. Probes run through the normal execution path (admission,
// pools), so they also keep each primary's status in GetTopology fresh. Nothing runs in the
// background unless a Watch stream is open: a Check probes when the last result is older than freshMs.
import { Code, ConnectError } from "@connectrpc/connect";
import { executeStatement, newBudget } from "../execution/shard-executor.js";
import { type ShardSet, writerOf } from "../shards/shard-set.js";

export type Serving = "serving" | "not_serving";

export interface HealthMonitorOptions {
  /** A Check reuses a probe younger than this. */
  freshMs?: number;
  /** How often open Watch streams re-probe. */
  watchIntervalMs?: number;
  /** A primary that has not answered within this is unreachable. */
  probeTimeoutMs?: number;
}

// Codes meaning "the node did not answer"; any other outcome (even a Postgres error or a full
// admission queue) means it is up and serving someone.
const unreachable = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Canceled]);

export class HealthMonitor {
  private last: { at: number; serving: Serving } | undefined;
  private inFlight: Promise<Serving> | undefined;
  private closed = false;
  private readonly wakeups = new Set<() => void>();
  private readonly freshMs: number;
  private readonly watchIntervalMs: number;
  private readonly probeTimeoutMs: number;

  constructor(private readonly shards: ShardSet, opts: HealthMonitorOptions = {}) {
    this.freshMs = opts.freshMs ?? 1000;
    this.watchIntervalMs = opts.watchIntervalMs ?? 2000;
    this.probeTimeoutMs = opts.probeTimeoutMs ?? 2000;
  }

  async status(): Promise<Serving> {
    if (this.last && Date.now() - this.last.at < this.freshMs) return this.last.serving;
    this.inFlight ??= this.probe().finally(() => { this.inFlight = undefined; });
    return this.inFlight;
  }

  /** The current status at once, then every change, until `signal` aborts or the monitor closes. */
  async *watch(signal: AbortSignal): AsyncGenerator<Serving> {
    let previous: Serving | undefined;
    while (!signal.aborted && !this.closed) {
      const serving = await this.status();
      if (serving !== previous) yield (previous = serving);
      await this.pause(signal);
    }
  }

  /** Ends every Watch stream (so the listener can close without waiting for them). */
  close(): void {
    this.closed = true;
    for (const wake of this.wakeups) wake();
  }

  private pause(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", wake);
        this.wakeups.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, this.watchIntervalMs);
      signal.addEventListener("abort", wake, { once: true });
      this.wakeups.add(wake);
    });
  }

  private async probe(): Promise<Serving> {
    const answers = await Promise.all(this.shards.shards.map(async (shard) => {
      try {
        await executeStatement({
          shard: shard.name, pool: writerOf(shard), sql: "select 1", params: [],
          signal: AbortSignal.timeout(this.probeTimeoutMs), budget: newBudget(1, 1024),
        });
        return true;
      } catch (err) {
        return !unreachable.has(ConnectError.from(err).code);
      }
    }));
    const serving: Serving = answers.some(Boolean) ? "serving" : "not_serving";
    this.last = { at: Date.now(), serving };
    return serving;
  }
}
