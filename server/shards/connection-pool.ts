// One generation of connections to a node: idle connections kept for reuse, opened on demand.
// It has no queue and no limit of its own: the node's admission control (admission.ts) lets at most
// `max` statements or transactions hold a connection, so a caller that got a slot always gets a
// connection here, reused or new. A shard map change (setEpoch) retires a generation: its idle
// connections close at once, busy ones when they are handed back.
import { type ConnectOptions, PgConnection } from "./pg-connection.js";

export class ConnectionPool {
  private readonly idle: PgConnection[] = [];
  private readonly idleTimers = new Map<PgConnection, NodeJS.Timeout>();
  private readonly open = new Set<PgConnection>();
  private retired = false;

  constructor(readonly options: ConnectOptions, private readonly idleTimeoutMs: number) {}

  /** Connections open now, busy or idle (for tests and metrics). */
  get size(): number {
    return this.open.size;
  }

  /** The most recently used idle connection, or a new one. */
  async acquire(signal?: AbortSignal): Promise<PgConnection> {
    for (let conn = this.idle.pop(); conn; conn = this.idle.pop()) {
      clearTimeout(this.idleTimers.get(conn));
      this.idleTimers.delete(conn);
      if (conn.reusable) return conn;
      conn.destroy();
    }
    const conn = await PgConnection.open(this.options, signal);
    this.open.add(conn);
    conn.closed.then(() => this.open.delete(conn));
    return conn;
  }

  /**
   * Takes a connection back. One that a caller could not leave clean (still in a transaction, a
   * cancel sent on it, a statement pending) is closed instead: Postgres rolls back what it held.
   */
  release(conn: PgConnection): void {
    if (conn.isClosed) return;
    if (!conn.reusable) return conn.destroy();
    if (this.retired) return conn.end();
    this.idle.push(conn);
    if (this.idleTimeoutMs > 0) {
      const timer = setTimeout(() => {
        const at = this.idle.indexOf(conn);
        if (at >= 0) this.idle.splice(at, 1);
        this.idleTimers.delete(conn);
        conn.end();
      }, this.idleTimeoutMs);
      timer.unref();
      this.idleTimers.set(conn, timer);
    }
  }

  /**
   * No new connections are kept: idle ones close now, busy ones when released. Settles when all are
   * closed, or after `graceMs`, when the stragglers are closed by force.
   */
  async retire(graceMs: number): Promise<void> {
    this.retired = true;
    for (const conn of this.idle.splice(0)) {
      clearTimeout(this.idleTimers.get(conn));
      conn.end();
    }
    this.idleTimers.clear();
    const all = Promise.all([...this.open].map((c) => c.closed));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => { timer = setTimeout(resolve, graceMs); timer.unref(); });
    await Promise.race([all, late]);
    clearTimeout(timer);
    for (const conn of this.open) conn.destroy();
    await Promise.all([...this.open].map((c) => c.closed));
  }
}
