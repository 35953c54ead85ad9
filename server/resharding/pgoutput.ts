// Decodes the messages of PostgreSQL's built-in logical decoding plugin, pgoutput (protocol version
// 1, with `messages`), as documented in "Logical Replication Message Formats". Column values stay the
// text Postgres sent: the applier writes them back as they are, so nothing is lost to a JS type.
// Written here because the one package that decodes pgoutput (pg-logical-replication) needs node-postgres
// and converts every value with its type parsers (a timestamp loses its microseconds on the way).
import type { Lsn } from "./lsn.js";

export interface RelationColumn { name: string; typeOid: number; isKey: boolean }
export interface Relation { oid: number; schema: string; name: string; replicaIdentity: string; columns: RelationColumn[] }

/** A column's value: its text, null, or "unchanged" (a TOASTed value an UPDATE did not touch). */
export type Cell = string | null | typeof unchanged;
export const unchanged: unique symbol = Symbol("unchanged TOAST value");

export type Change =
  | { tag: "begin"; finalLsn: Lsn; xid: number }
  | { tag: "commit"; commitLsn: Lsn; endLsn: Lsn }
  | { tag: "relation"; relation: Relation }
  | { tag: "insert"; relation: Relation; row: Cell[] }
  /** `old` is the old key (or whole old row) when the key changed or the identity is FULL. */
  | { tag: "update"; relation: Relation; old: Cell[] | undefined; row: Cell[] }
  | { tag: "delete"; relation: Relation; old: Cell[] }
  | { tag: "truncate"; relations: Relation[] }
  | { tag: "message"; lsn: Lsn; transactional: boolean; prefix: string; content: Buffer }
  | { tag: "other" };

/** Keeps the relations announced so far: a change names its table by OID only. */
export class PgoutputDecoder {
  private readonly relations = new Map<number, Relation>();

  decode(buf: Buffer): Change {
    const r = new Reader(buf);
    switch (r.byte()) {
      case 0x42: { // B
        const finalLsn = r.u64();
        r.u64(); // commit time
        return { tag: "begin", finalLsn, xid: r.u32() };
      }
      case 0x43: { // C
        r.byte(); // flags
        const commitLsn = r.u64();
        return { tag: "commit", commitLsn, endLsn: r.u64() };
      }
      case 0x52: { // R
        const oid = r.u32();
        const schema = r.cstring() || "pg_catalog";
        const name = r.cstring();
        const replicaIdentity = String.fromCharCode(r.byte());
        const n = r.u16();
        const columns: RelationColumn[] = [];
        for (let i = 0; i < n; i++) {
          const isKey = (r.byte() & 1) === 1;
          const colName = r.cstring();
          const typeOid = r.u32();
          r.u32(); // type modifier
          columns.push({ name: colName, typeOid, isKey });
        }
        const relation = { oid, schema, name, replicaIdentity, columns };
        this.relations.set(oid, relation);
        return { tag: "relation", relation };
      }
      case 0x49: { // I
        const relation = this.relation(r.u32());
        r.expect(0x4e); // N
        return { tag: "insert", relation, row: r.tuple() };
      }
      case 0x55: { // U
        const relation = this.relation(r.u32());
        let kind = r.byte();
        let old: Cell[] | undefined;
        if (kind === 0x4b || kind === 0x4f) { // K (old key) or O (old row)
          old = r.tuple();
          kind = r.byte();
        }
        if (kind !== 0x4e) throw new Error(`pgoutput: UPDATE without a new row (got ${kind})`);
        return { tag: "update", relation, old, row: r.tuple() };
      }
      case 0x44: { // D
        const relation = this.relation(r.u32());
        r.byte(); // K or O
        return { tag: "delete", relation, old: r.tuple() };
      }
      case 0x54: { // T
        const n = r.u32();
        r.byte(); // options
        const relations: Relation[] = [];
        for (let i = 0; i < n; i++) relations.push(this.relation(r.u32()));
        return { tag: "truncate", relations };
      }
      case 0x4d: { // M
        const transactional = (r.byte() & 1) === 1;
        const lsn = r.u64();
        const prefix = r.cstring();
        const length = r.u32();
        return { tag: "message", lsn, transactional, prefix, content: r.bytes(length) };
      }
      default: // O (origin), Y (type): nothing the applier needs
        return { tag: "other" };
    }
  }

  private relation(oid: number): Relation {
    const relation = this.relations.get(oid);
    if (!relation) throw new Error(`pgoutput: a change for relation ${oid}, which was never announced`);
    return relation;
  }
}

class Reader {
  private at = 0;
  constructor(private readonly buf: Buffer) {}
  byte(): number { return this.buf[this.at++]; }
  expect(b: number): void {
    const got = this.byte();
    if (got !== b) throw new Error(`pgoutput: expected ${String.fromCharCode(b)}, got ${String.fromCharCode(got)}`);
  }
  u16(): number { const v = this.buf.readUInt16BE(this.at); this.at += 2; return v; }
  u32(): number { const v = this.buf.readUInt32BE(this.at); this.at += 4; return v; }
  u64(): bigint { const v = this.buf.readBigUInt64BE(this.at); this.at += 8; return v; }
  bytes(n: number): Buffer { const v = this.buf.subarray(this.at, this.at + n); this.at += n; return v; }
  cstring(): string {
    const end = this.buf.indexOf(0, this.at);
    const v = this.buf.toString("utf8", this.at, end);
    this.at = end + 1;
    return v;
  }
  tuple(): Cell[] {
    const n = this.u16();
    const cells: Cell[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const kind = this.byte();
      if (kind === 0x6e) cells[i] = null; // n
      else if (kind === 0x75) cells[i] = unchanged; // u
      else if (kind === 0x74) cells[i] = this.bytes(this.u32()).toString("utf8"); // t
      else throw new Error(`pgoutput: column value of kind ${String.fromCharCode(kind)} (binary is never asked for)`);
    }
    return cells;
  }
}
