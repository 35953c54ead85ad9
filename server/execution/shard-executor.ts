// Runs one statement on one node: waits for an admission slot, streams rows into typed values under a
// row and byte budget, and cancels the statement on Postgres when the caller's deadline passes.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { type Column, ColumnSchema, type ResultSet, ResultSetSchema, type Row, RowSchema } from "../../gen/shardrouter/v1/value_pb.js";
import { abortError } from "../shards/admission.js";
import type { NodePool, RawColumn, RawParam, RunningStatement } from "../shards/node-pool.js";
import { type Where, isConnectionError, toConnectError } from "./postgres-errors.js";
import { knownTypeName } from "./pg-types.js";
import { type CellDecoder, decoderFor } from "./value-codec.js";

/** What a request may still hold in memory; shared by all shards of one ExecuteOnAll. */
export interface Budget { rows: number; bytes: number; readonly maxRows: number; readonly maxBytes: number }

export function newBudget(maxRows: number, maxBytes: number): Budget {
  return { rows: maxRows, bytes: maxBytes, maxRows, maxBytes };
}

export interface ShardStatement {
  shard: string;
  pool: NodePool;
  sql: string;
  params: RawParam[];
  signal: AbortSignal;
  budget: Budget;
}

export async function executeStatement(s: ShardStatement): Promise<ResultSet> {
  const where: Where = { shard: s.shard, node: s.pool.name, address: s.pool.address };
  const admission = s.pool.admission;
  const waiting = admission.acquire(s.signal);
  if (waiting) await waiting;
  let running: RunningStatement | undefined;
  const slot = { releaseLater: false };
  let exceeded: string | undefined;
  const tooLarge = () => new ConnectError(`result too large: more than ${exceeded} (narrow the statement or add LIMIT)`, Code.ResourceExhausted);
  try {
    if (s.signal.aborted) throw abortError(s.signal);
    const rows: Row[] = [];
    let decoders: CellDecoder[] | undefined;
    running = s.pool.start(s.sql, s.params, (cells, columns) => {
      if (exceeded) return;
      decoders ??= columns.map((c) => decoderFor(c.type));
      const values = new Array(cells.length);
      let bytes = 0;
      for (let i = 0; i < cells.length; i++) {
        const cell = cells[i];
        bytes += typeof cell === "string" ? cell.length : 16;
        values[i] = decoders[i](cell);
      }
      s.budget.rows -= 1;
      s.budget.bytes -= bytes;
      if (s.budget.rows < 0 || s.budget.bytes < 0) {
        exceeded = s.budget.rows < 0 ? `${s.budget.maxRows} rows` : `${s.budget.maxBytes} bytes`;
        running?.cancel(); // stop the server producing rows nobody will keep
        return;
      }
      rows.push(create(RowSchema, { values }));
    });
    const result = await untilDoneOrAborted(running, s.signal, admission, slot);
    if (exceeded) throw tooLarge();
    s.pool.status = "up";
    return create(ResultSetSchema, {
      columns: await describeColumns(s.pool, result.columns),
      rows,
      rowsAffected: BigInt(result.count),
      command: result.command,
    });
  } catch (err) {
    if (isConnectionError(err)) s.pool.status = "down";
    if (s.signal.aborted) throw abortError(s.signal);
    if (exceeded) throw tooLarge();
    throw toConnectError(err, where);
  } finally {
    // A statement still running after an abort keeps its slot until Postgres confirms the cancel.
    if (!slot.releaseLater) admission.release();
  }
}

/** Resolves with the result, or rejects as soon as the signal aborts (then the slot is released later). */
function untilDoneOrAborted(
  running: { done: Promise<{ command: string; count: number; columns: RawColumn[] }>; cancel(): void },
  signal: AbortSignal,
  admission: { release(): void },
  slot: { releaseLater: boolean },
): Promise<{ command: string; count: number; columns: RawColumn[] }> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const onAbort = () => {
      if (settled) return;
      settled = true;
      slot.releaseLater = true;
      running.cancel();
      running.done.then(() => admission.release(), () => admission.release());
      reject(abortError(signal));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    running.done.then(
      (r) => { if (settled) return; settled = true; signal.removeEventListener("abort", onAbort); resolve(r); },
      (e) => { if (settled) return; settled = true; signal.removeEventListener("abort", onAbort); reject(e); },
    );
  });
}

async function describeColumns(pool: NodePool, raw: RawColumn[]): Promise<Column[]> {
  const unknown = raw.filter((c) => knownTypeName(c.type) === undefined).map((c) => c.type);
  const looked = unknown.length ? await pool.typeNamesFor(unknown) : undefined;
  return raw.map((c) => create(ColumnSchema, {
    name: c.name,
    type: knownTypeName(c.type) ?? looked?.get(c.type) ?? `oid:${c.type}`,
    typeOid: c.type,
  }));
}
