// The router's side of a cutover's fence: while a fence holds, a write to a key that changes owner
// waits (within its caller's deadline, in a bounded buffer) instead of reaching the old owner; the
// writes already in flight are tracked, so the router can acknowledge the fence once they are done.
// When the new map is in force (or the cutover aborted) the held writes go on, routed afresh.
// Writes with no fence around cost a Set insert and delete.
import { Code, ConnectError } from "@connectrpc/connect";
import type { FenceState } from "../catalog/fence-store.js";
import type { ShardMap } from "../placement/shard-map.js";
import { abortError } from "../shards/admission.js";

/** The keys a write touches, or "all" for one that runs on every shard. */
export type WriteKeys = readonly string[] | "all";

export interface FenceView {
  job: string;
  fromVersion: number;
  state: FenceState;
  /** The map after the cutover; undefined when it cannot be built here (then every key is held). */
  to: ShardMap | undefined;
}

interface ActiveFence extends FenceView {
  /** Until when this router holds for it at most (a job router that died must not stall writes). */
  holdUntil: number;
  from: ShardMap;
}

interface InFlight { keys: WriteKeys; done: Promise<void>; finish(): void }

export interface WriteFenceOptions {
  /** The map in force on this router now. */
  map(): ShardMap;
  /** Writes held at once at most; beyond it, resource_exhausted. */
  maxHeld: number;
  /**
   * How long one fence holds writes here at most. Past it they go on under the old map: safe, since
   * a source whose cutover went ahead refuses them (epoch-guard.ts) and the caller retries.
   */
  holdAtMostMs: number;
}

export class WriteFence {
  private readonly fences = new Map<string, ActiveFence>();
  private readonly inflight = new Set<InFlight>();
  private waiters = new Set<() => void>();
  private readonly holdListeners: ((moves: (key: string) => boolean) => void)[] = [];
  private held = 0;
  /** Reshard jobs at work (from the catalog), with the shards of their new maps: schema changes are refused meanwhile. */
  activeJobs: readonly { id: string; shards: readonly { name: string; state: string }[] }[] = [];

  constructor(private readonly opts: WriteFenceOptions) {}

  /**
   * Tells `listener` when a fence starts holding on this router, with which keys it moves: what
   * holds a connection with writes on a moving key across calls (an interactive transaction) must
   * let go, or the cutover's lock on the moving tables would wait for it.
   */
  onHold(listener: (moves: (key: string) => boolean) => void): void {
    this.holdListeners.push(listener);
  }

  /** Waits while a fence holds `keys`, then counts the write as in flight until the returned release. */
  async admit(keys: WriteKeys, signal: AbortSignal): Promise<() => void> {
    if (this.fences.size > 0 && this.blocking(keys)) await this.hold(keys, signal);
    let finish!: () => void;
    const done = new Promise<void>((resolve) => { finish = resolve; });
    const entry: InFlight = { keys, done, finish };
    this.inflight.add(entry);
    return () => {
      if (this.inflight.delete(entry)) finish();
    };
  }

  /**
   * A fence appeared or changed state. Resolves true once the writes that were in flight are done
   * (then the router may acknowledge), false if that took longer than `drainMs` or it does not hold.
   */
  async update(view: FenceView, drainMs: number): Promise<boolean> {
    const known = this.fences.get(view.job);
    const from = this.opts.map();
    // Lifted: the new map is committed but may not be in force here yet; until it is, the moving
    // keys stay held (under the old map they would reach the old owner, where nobody streams).
    if (view.state === "aborted" || from.version !== view.fromVersion) {
      if (known) {
        this.fences.delete(view.job);
        this.wake();
      }
      return false;
    }
    if (view.state === "lifted" && !known) return false; // never held here: nothing to release
    const active: ActiveFence = known
      ? { ...known, state: view.state, to: view.to ?? known.to }
      : { ...view, from, holdUntil: Date.now() + this.opts.holdAtMostMs };
    this.fences.set(view.job, active);
    if (view.state === "lifted") return false;
    if (!known) {
      const timer = setTimeout(() => this.wake(), this.opts.holdAtMostMs + 1);
      timer.unref();
      for (const listener of this.holdListeners) {
        try {
          listener((key) => touches([key], active));
        } catch {
          // a listener's failure must not keep this router from acknowledging
        }
      }
    }
    // Every write in flight, not only those it holds: one that began on a connection of the old
    // epoch would be refused by the source once the cutover raises it.
    const touching = [...this.inflight];
    if (touching.length === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      Promise.all(touching.map((w) => w.done)).then(() => true),
      new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), drainMs); }),
    ]);
    clearTimeout(timer);
    return drained;
  }

  /** Something changed (a new map is in force, a fence moved on): held writes look again. */
  wake(): void {
    const waiters = this.waiters;
    this.waiters = new Set();
    for (const w of waiters) w();
  }

  forget(job: string): void {
    if (this.fences.delete(job)) this.wake();
  }

  private blocking(keys: WriteKeys): boolean {
    const now = Date.now();
    const version = this.opts.map().version;
    for (const f of this.fences.values()) {
      if (f.fromVersion === version && now < f.holdUntil && touches(keys, f)) return true;
    }
    return false;
  }

  private async hold(keys: WriteKeys, signal: AbortSignal): Promise<void> {
    if (this.held >= this.opts.maxHeld) {
      throw new ConnectError(`${this.held} writes are already waiting for a resharding cutover to finish: try again shortly`, Code.ResourceExhausted);
    }
    this.held++;
    try {
      while (this.blocking(keys)) {
        if (signal.aborted) throw abortError(signal);
        await new Promise<void>((resolve, reject) => {
          const onAbort = () => { this.waiters.delete(wake); reject(abortError(signal)); };
          const wake = () => { signal.removeEventListener("abort", onAbort); resolve(); };
          this.waiters.add(wake);
          signal.addEventListener("abort", onAbort, { once: true });
        });
      }
    } finally {
      this.held--;
    }
  }
}

/** A write touches a fence when one of its keys changes owner between the fence's two maps. */
function touches(keys: WriteKeys, fence: ActiveFence): boolean {
  if (keys === "all" || !fence.to) return true;
  for (const key of keys) {
    const before = ownerOf(fence.from, key);
    if (before === undefined || before !== ownerOf(fence.to, key)) return true;
  }
  return false;
}

function ownerOf(map: ShardMap, key: string): string | undefined {
  const placed = map.strategy.place(key);
  if (!(placed instanceof Promise)) return placed.shard;
  // A directory lookup is asynchronous: such a map's keys all count as moving.
  placed.catch(() => {});
  return undefined;
}
