// The worker id of a router's global ids (snowflake.ts), leased from the catalog so that no two
// routers on one catalog use the same one at the same time.
//
// Table shardrouter.id_workers: one row per worker id ever claimed, with its owner (a router id), the
// lease's end (catalog clock) and `issued_until_ms`, the highest millisecond the owner may put in an
// id. A router:
// - claims a worker id no one holds (never claimed, or its lease ended more than `marginMs` ago) under
//   an advisory lock, so two routers never claim the same one;
// - renews it every leaseMs / 3 (only while it is still the owner), each time reserving the
//   milliseconds up to its clock + leaseMs; it uses a renewal only once the catalog has stored it;
// - stops issuing ids once leaseMs has passed (by its own monotonic clock, counted from before the
//   renewal it sent) without a renewal, or at once when it learns another router took the id over;
// - taking a worker id over, issues ids only above the previous owner's `issued_until_ms`: even with
//   clocks that disagree, the two routers' ids cannot meet.
// A router that closes ends its lease at once (the floor stays in the row).
import { Code, ConnectError } from "@connectrpc/connect";
import type { Catalog } from "../catalog/catalog.js";
import type { WorkerGrant, WorkerSource } from "./snowflake.js";

/** The catalog side of the lease (a test may put a failing one in front of it). */
export interface WorkerStore {
  /** Claims a free worker id below `maxWorkers` for `owner`; undefined when none is free. */
  claim(owner: string, opts: { leaseMs: number; marginMs: number; maxWorkers: number; ceilingMs: number }): Promise<{ workerId: number; floorMs: number; ceilingMs: number } | undefined>;
  /** Extends the lease; the stored ceiling, or undefined when `owner` no longer holds it. */
  renew(workerId: number, owner: string, opts: { leaseMs: number; ceilingMs: number }): Promise<number | undefined>;
  /** Ends the lease now (another router may take the id at once, above its floor). */
  release(workerId: number, owner: string): Promise<void>;
}

export class CatalogWorkerStore implements WorkerStore {
  constructor(private readonly catalog: Catalog) {}

  async claim(owner: string, opts: { leaseMs: number; marginMs: number; maxWorkers: number; ceilingMs: number }) {
    return this.catalog.sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(hashtext('shardrouter.id_workers'))`;
      // Never-claimed ids first, then the one whose lease ended longest ago.
      const [free] = await tx<{ worker_id: number; issued_until_ms: string | null }[]>`
        select w.id as worker_id, i.issued_until_ms::text
          from generate_series(0, ${opts.maxWorkers - 1}::int) as w(id)
          left join shardrouter.id_workers i on i.worker_id = w.id
         where i.worker_id is null or i.owner = ${owner}
            or i.lease_until < now() - make_interval(secs => ${opts.marginMs / 1000})
         order by i.worker_id is not null, i.lease_until, w.id
         limit 1`;
      if (!free) return undefined;
      const [row] = await tx<{ issued_until_ms: string }[]>`
        insert into shardrouter.id_workers (worker_id, owner, lease_until, issued_until_ms)
        values (${free.worker_id}, ${owner}, now() + make_interval(secs => ${opts.leaseMs / 1000}), ${opts.ceilingMs})
        on conflict (worker_id) do update set owner = excluded.owner, lease_until = excluded.lease_until,
          issued_until_ms = greatest(shardrouter.id_workers.issued_until_ms, excluded.issued_until_ms), claimed_at = now()
        returning issued_until_ms::text`;
      return { workerId: free.worker_id, floorMs: free.issued_until_ms === null ? -1 : Number(free.issued_until_ms), ceilingMs: Number(row.issued_until_ms) };
    });
  }

  async renew(workerId: number, owner: string, opts: { leaseMs: number; ceilingMs: number }) {
    const [row] = await this.catalog.sql<{ issued_until_ms: string }[]>`
      update shardrouter.id_workers set lease_until = now() + make_interval(secs => ${opts.leaseMs / 1000}),
        issued_until_ms = greatest(issued_until_ms, ${opts.ceilingMs})
       where worker_id = ${workerId} and owner = ${owner}
      returning issued_until_ms::text`;
    return row && Number(row.issued_until_ms);
  }

  async release(workerId: number, owner: string) {
    await this.catalog.sql`update shardrouter.id_workers set lease_until = '-infinity' where worker_id = ${workerId} and owner = ${owner}`;
  }
}

export interface WorkerLeaseOptions {
  store: WorkerStore;
  /** This router's id (the row's owner). */
  owner: string;
  leaseMs: number;
  marginMs: number;
  maxWorkers: number;
  /** Monotonic ms (default performance.now): when the lease runs out here. */
  monotonic?: () => number;
  /** Wall clock, Unix ms (default Date.now): the milliseconds a renewal reserves. */
  wall?: () => number;
  /** Told when the lease changes hands or cannot be renewed. */
  log?: (line: string) => void;
}

interface Held extends WorkerGrant {
  /** Monotonic ms after which the lease may have ended in the catalog. */
  validUntil: number;
}

export class WorkerLease implements WorkerSource {
  private held: Held | undefined;
  private reason = "this router has not claimed a worker id in the catalog yet";
  private readonly monotonic: () => number;
  private readonly wall: () => number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly opts: WorkerLeaseOptions) {
    this.monotonic = opts.monotonic ?? (() => performance.now());
    this.wall = opts.wall ?? Date.now;
  }

  /** The worker id held now, if any (expired or not). */
  get workerId(): number | undefined {
    return this.held?.workerId;
  }

  current(): WorkerGrant {
    const held = this.held;
    if (held && this.monotonic() < held.validUntil) return held;
    const why = held ? `the lease on worker id ${held.workerId} ran out without a renewal (${this.reason})` : this.reason;
    throw new ConnectError(`no ids: ${why}`, Code.Unavailable);
  }

  /** Renews the lease held, or claims one; never throws (the reason is kept for current()). */
  renew(): Promise<void> {
    this.running ??= this.renewOnce().finally(() => { this.running = undefined; });
    return this.running;
  }

  private async renewOnce(): Promise<void> {
    const { store, owner, leaseMs } = this.opts;
    const sentAt = this.monotonic();
    const ceilingMs = Math.floor(this.wall()) + leaseMs;
    try {
      const held = this.held;
      if (held) {
        const stored = await store.renew(held.workerId, owner, { leaseMs, ceilingMs });
        if (this.held !== held) return;
        if (stored !== undefined) {
          this.held = { ...held, ceilingMs: stored, validUntil: sentAt + leaseMs };
          this.reason = "the catalog could not be reached to renew it";
          return;
        }
        this.held = undefined;
        this.reason = `worker id ${held.workerId} was taken over by another router after this router's lease on it ended`;
        this.opts.log?.(`lost worker id ${held.workerId}: another router holds it now; claiming another`);
      }
      const claimed = await store.claim(owner, { leaseMs, marginMs: this.opts.marginMs, maxWorkers: this.opts.maxWorkers, ceilingMs });
      if (!claimed) {
        const none = `every worker id (ids.maxWorkers = ${this.opts.maxWorkers}) is leased by another router`;
        this.reason = held ? `${this.reason}, and ${none}` : none;
        this.opts.log?.(`no free worker id for global ids: ${this.reason}`);
        return;
      }
      this.held = { ...claimed, validUntil: sentAt + leaseMs };
      this.reason = "the catalog could not be reached to renew it";
    } catch (err) {
      const message = `the catalog did not answer the worker id lease: ${(err as Error).message}`;
      this.reason = message;
      this.opts.log?.(message);
    }
  }

  /** Claims now and renews every leaseMs / 3 until stop(). */
  async start(): Promise<void> {
    await this.renew();
    const tick = () => {
      if (this.stopped) return;
      this.timer = setTimeout(() => void this.renew().then(tick), Math.max(10, Math.floor(this.opts.leaseMs / 3)));
    };
    tick();
  }

  /** Stops renewing and ends the lease in the catalog (best effort). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    const held = this.held;
    this.held = undefined;
    this.reason = "the router is closing";
    if (held) await this.opts.store.release(held.workerId, this.opts.owner).catch(() => {});
  }
}
