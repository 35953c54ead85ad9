// Whether this router can serve at all: it is SERVING while at least one shard has a writable node
// that is up, NOT_SERVING when none does. The node states come from the router's HealthChecker (one
// probe per node per interval, on a connection of its own), so health answers add no database work.
import { type ShardSet, writerOf } from "../shards/shard-set.js";

export type Serving = "serving" | "not_serving";

export interface HealthMonitorOptions {
  /** A Check reuses a probe younger than this. */
  freshMs?: number;
  /** How often open Watch streams re-probe. */
  watchIntervalMs?: number;
}

export class HealthMonitor {
  private last: { at: number; serving: Serving } | undefined;
  private inFlight: Promise<Serving> | undefined;
  private closed = false;
  private readonly wakeups = new Set<() => void>();
  private readonly freshMs: number;
  private readonly watchIntervalMs: number;

  constructor(private readonly shards: ShardSet, opts: HealthMonitorOptions = {}) {
    this.freshMs = opts.freshMs ?? 1000;
    this.watchIntervalMs = opts.watchIntervalMs ?? 2000;
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

  /** Reads what the router's HealthChecker last learned; it asks every node on its own interval. */
  private async probe(): Promise<Serving> {
    const up = this.shards.shards.some((shard) => {
      try {
        return writerOf(shard).health.status === "up";
      } catch {
        return false; // no writable node
      }
    });
    const serving: Serving = up ? "serving" : "not_serving";
    this.last = { at: Date.now(), serving };
    return serving;
  }

}
