// Global transaction ids: "<prefix>_<router>_<sequence><random>", only [a-z0-9_], so one can be
// written into PREPARE TRANSACTION / COMMIT PREPARED, which take no bind parameters. The prefix
// lets recovery find our prepared transactions among others'; the router part tells whose they are.
import { randomBytes } from "node:crypto";

const safe = /^[a-z][a-z0-9_]{0,190}$/;

export function newRouterId(): string {
  return randomBytes(5).toString("hex");
}

export class TransactionIds {
  private sequence = 0;

  constructor(readonly prefix: string, readonly routerId: string) {}

  next(): string {
    const id = `${this.prefix}_${this.routerId}_${(this.sequence++).toString(36)}${randomBytes(4).toString("hex")}`;
    return assertSafeGid(id);
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
