// The copy phase for one table on one source: every row of the table, read in COPY text format at
// the slot's snapshot, goes to the target that now owns its key (or nowhere, when its key stays).
// COPY text round-trips every type exactly; the router only reads the key field of each line, since
// the keyspace id (murmur3) is computed here, not in SQL.
import { once } from "node:events";
import type { Readable, Writable } from "node:stream";
import type postgres from "postgres";
import { type TableShape, quoteIdent } from "./table-schema.js";

/** Copies `shape` from `source` (inside the snapshot transaction) into each target's open transaction. */
export async function copyTable(
  source: postgres.ReservedSql,
  shape: TableShape,
  destination: (key: string) => string | undefined,
  targets: ReadonlyMap<string, postgres.ReservedSql>,
): Promise<Map<string, number>> {
  const columns = shape.columns.map((c) => quoteIdent(c.name)).join(", ");
  const copied = new Map<string, number>();
  const sinks = new Map<string, Writable>();
  const sinkFor = async (target: string): Promise<Writable> => {
    let sink = sinks.get(target);
    if (!sink) {
      const sql = targets.get(target);
      if (!sql) throw new Error(`row of ${shape.name} belongs to ${target}, which is not a target of this job`);
      sink = await sql.unsafe(`copy ${shape.qualified} (${columns}) from stdin`).writable();
      sink.on("error", () => {}); // seen by the COPY's own promise and the transaction's COMMIT
      sinks.set(target, sink);
      copied.set(target, 0);
    }
    return sink;
  };
  const rows = await source.unsafe(`copy ${shape.qualified} (${columns}) to stdout`).readable() as Readable;
  const failure = await pump(rows, shape, destination, sinkFor, copied);
  if (failure) {
    for (const sink of sinks.values()) sink.destroy(failure as Error); // CopyFail: the targets' transactions abort
    throw failure;
  }
  await Promise.all([...sinks.values()].map(async (sink) => {
    sink.end();
    await once(sink, "finish");
  }));
  return copied;
}

/**
 * Routes every line to its target. After a failure it reads the rest without using it: a COPY TO can
 * only be stopped by closing its connection, and a stream left unread never lets go of its socket.
 */
async function pump(
  rows: Readable, shape: TableShape, destination: (key: string) => string | undefined,
  sinkFor: (target: string) => Promise<Writable>, copied: Map<string, number>,
): Promise<unknown> {
  let carry = "";
  let failure: unknown;
  for await (const chunk of rows as AsyncIterable<Buffer>) {
    if (failure) continue;
    try {
      const text = carry + chunk.toString("utf8");
      let start = 0;
      for (let end = text.indexOf("\n", start); end >= 0; end = text.indexOf("\n", start)) {
        const line = text.slice(start, end + 1);
        start = end + 1;
        const target = destination(copyField(line, shape.keyIndex));
        if (target === undefined) continue;
        const sink = await sinkFor(target);
        copied.set(target, copied.get(target)! + 1);
        if (!sink.write(line)) await once(sink, "drain");
      }
      carry = text.slice(start);
    } catch (err) {
      failure = err;
    }
  }
  if (!failure && carry) failure = new Error(`COPY of ${shape.name} ended inside a row`);
  return failure;
}

/** Field `index` of a COPY text line, unescaped. */
export function copyField(line: string, index: number): string {
  let start = 0;
  for (let i = 0; i < index; i++) {
    start = line.indexOf("\t", start) + 1;
    if (start === 0) throw new Error(`COPY line has no field ${index}`);
  }
  let end = line.indexOf("\t", start);
  if (end < 0) end = line.endsWith("\n") ? line.length - 1 : line.length;
  const raw = line.slice(start, end);
  if (raw === "\\N") throw new Error("a shard key is NULL");
  return raw.includes("\\") ? unescapeCopy(raw) : raw;
}

const simpleEscapes: Record<string, string> = { b: "\b", f: "\f", n: "\n", r: "\r", t: "\t", v: "\v" };

function unescapeCopy(raw: string): string {
  return raw.replace(/\\(x[0-9A-Fa-f]{1,2}|[0-7]{1,3}|.)/g, (_, e: string) => {
    if (e[0] === "x") return String.fromCharCode(parseInt(e.slice(1), 16));
    if (/^[0-7]/.test(e)) return String.fromCharCode(parseInt(e, 8));
    return simpleEscapes[e] ?? e;
  });
}
