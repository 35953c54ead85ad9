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

  next(): string {
    return `${this.prefix}_${this.routerId}_${this.run}_${(this.sequence++).toString(36)}`;
  }

  /** The LIKE pattern matching every id of this prefix (any router). */
  get pattern(): string {
    return `${this.prefix}\\_%`;
  }
}

/** Throws unless the gid is safe to write into SQL text. */
export function assertSafeGid(gid: string): string {
  if (!safe.test(gid)) throw new Error(`unsafe transaction id ${JSON.stringify(gid)}`);
  return gid;
}
