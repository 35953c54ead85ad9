// Global transaction ids: "<prefix>_<router>_<run>_<sequence>", only [a-z0-9_], so one can be
// written into PREPARE TRANSACTION / COMMIT PREPARED, which take no bind parameters. The prefix
// lets recovery find our prepared transactions among others'; the router part tells whose they are.
import { randomBytes } from "node:crypto";

const safe = /^[a-z][a-z0-9_]{0,190}$/;

export function newRouterId(): string {
  return randomBytes(5).toString("hex");
}

export class TransactionIds {
  private sequence = 0;
  /**
   * Random per process: a router restarted with the same configured id starts its sequence again,
   * and must not reuse the gid of a transaction it left prepared before. Drawn once, not per id.
   */
  private readonly run = randomBytes(4).toString("hex");

  constructor(readonly prefix: string, readonly routerId: string) {
    assertSafeGid(`${prefix}_${routerId}_${this.run}_0`);
  }

  /**
   * A new id. With `home` (a transaction over several shards), the id names the shard whose local
   * commit decides the transaction, hex-encoded (shard names may hold '.', '-' and capitals):
   * recovery, finding the id prepared on another shard, asks that one (see homeOf).
   */
  next(home?: string): string {
    const id = `${this.prefix}_${this.routerId}_${this.run}_${(this.sequence++).toString(36)}`;
    return home === undefined ? id : assertSafeGid(`${id}_h${Buffer.from(home).toString("hex")}`);
  }

  /** The LIKE pattern matching every id of this prefix (any router). */
  get pattern(): string {
    return `${this.prefix}\\_%`;
  }
}

/**
 * The home shard a transaction id names, if it names one (ids of routers before home decisions do not:
 * their decision is in the catalog). The caller checks the name against the shards it knows.
 */
export function homeOf(gid: string): string | undefined {
  const m = /_h((?:[0-9a-f]{2})+)$/.exec(gid);
  const name = m ? Buffer.from(m[1], "hex").toString() : undefined;
  // An older id can end in "_h" and hex by chance (its counter is base 36): no shard name, then.
  return name !== undefined && /^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name) ? name : undefined;
}

/** Throws unless the gid is safe to write into SQL text. */
export function assertSafeGid(gid: string): string {
  if (!safe.test(gid)) throw new Error(`unsafe transaction id ${JSON.stringify(gid)}`);
  return gid;
}
