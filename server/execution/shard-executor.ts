// Runs one statement on one node: streams rows into typed values under a row and byte budget, and
// cancels the statement on Postgres when the caller's deadline passes. Pooled statements take an
// admission slot first; statements of a transaction run on a connection reserved for it.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { type Column, ColumnSchema, type ResultSet, ResultSetSchema, type Row, RowSchema } from "../../gen/shardrouter/v1/value_pb.js";
import { isBrokenCircuitError } from "cockatiel";
import { abortError } from "../shards/admission.js";
import { NodeUnreachableError } from "../shards/node-unreachable.js";
import type { IsolatedStatement, Login, NodePool, RawColumn, RawParam, RawResult, ReservedConnection, RowSink, RunningStatement } from "../shards/node-pool.js";
import { knownTypeName } from "./pg-types.js";
import { type Where, isConnectionError, toConnectError } from "./postgres-errors.js";
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
  /** Run on a connection of its own, closed afterwards (the statement guard's "isolated"). */
  isolated?: boolean;
  /** On a reserved connection: a text used once (it names a transaction), so never a prepared statement. */
  once?: boolean;
  /** The caller's login on this shard (auth); default: the router's own. */
  login?: Login;
}

/** A statement on the node's pool, under its circuit breaker and admission control. */
export async function executeStatement(s: ShardStatement): Promise<ResultSet> {
  try {
    return await s.pool.breaker.execute(() => (s.isolated ? isolated(s) : pooled(s)));
  } catch (err) {
    if (isBrokenCircuitError(err)) throw brokenCircuit(s.shard, s.pool);
    throw err;
  }
}

function brokenCircuit(shard: string, pool: NodePool): NodeUnreachableError {
  return new NodeUnreachableError(
    `shard ${shard}: node ${pool.name} (${pool.address}) is failing fast: its circuit breaker is open after repeated failures`,
    pool.name,
  );
}

async function pooled(s: ShardStatement): Promise<ResultSet> {
  const waiting = s.pool.admission.acquire(s.signal);
  if (waiting) await waiting;
  let releaseNow = true;
  try {
    if (s.signal.aborted) throw abortError(s.signal);
    return await run(s, (onRow) => s.pool.start(s.sql, s.params, onRow, s.login), (settled) => {
      // The caller is answered at once; the slot comes back when the statement has ended and the
      // cancel request is out, so the connection is never handed to someone else while still busy.
      // It always ends: a statement that ignores its cancel has its connection closed (NodePool.cancelOn).
      releaseNow = false;
      settled.then(() => s.pool.admission.release());
    });
  } finally {
    if (releaseNow) s.pool.admission.release();
  }
}

/**
 * A statement on a connection opened for it (see NodePool.startIsolated), under the node's isolation
 * slots. The caller is answered as soon as the statement ends; the slot comes back when the
 * connection is closed.
 */
async function isolated(s: ShardStatement): Promise<ResultSet> {
  const waiting = s.pool.isolation.acquire(s.signal);
  if (waiting) await waiting;
  let statement: IsolatedStatement | undefined;
  try {
    if (s.signal.aborted) throw abortError(s.signal);
    return await run(s, (onRow) => (statement = s.pool.startIsolated(s.sql, s.params, onRow, s.login)), () => {});
  } finally {
    const release = () => s.pool.isolation.release();
    if (statement) statement.closed.then(release, release);
    else release();
  }
}

/**
 * A connection reserved on a node for one transaction, under its circuit breaker. Reserving opens a
 * connection when none is idle, so it fails as a statement does when the node is gone: UNAVAILABLE
 * naming the shard and node, never a raw driver error (which a caller would see as INTERNAL).
 */
export async function reserveOn(pool: NodePool, shard: string, signal: AbortSignal, opts: { isolated?: boolean; login?: Login } = {}): Promise<ReservedConnection> {
  try {
    return await pool.breaker.execute(async () => {
      try {
        return await pool.reserve(signal, opts);
      } catch (err) {
        if (isConnectionError(err)) pool.status = "down";
        throw toConnectError(err, { shard, node: pool.name, address: pool.address });
      }
    });
  } catch (err) {
    if (isBrokenCircuitError(err)) throw brokenCircuit(shard, pool);
    throw err;
  }
}

/** A statement inside a transaction: after an abort it waits for Postgres, so the caller can roll back. */
export function executeOnReserved(conn: ReservedConnection, s: Omit<ShardStatement, "pool">): Promise<ResultSet> {
  return run({ ...s, pool: conn.node }, (onRow) => conn.start(s.sql, s.params, onRow, { once: s.once }), undefined);
}

async function run(
  s: ShardStatement,
  start: (onRow: RowSink) => RunningStatement,
  onAbandoned: ((settled: Promise<unknown>) => void) | undefined,
): Promise<ResultSet> {
  const where: Where = { shard: s.shard, node: s.pool.name, address: s.pool.address };
  let exceeded: string | undefined;
  const tooLarge = () => new ConnectError(`result too large: more than ${exceeded} (narrow the statement or add LIMIT)`, Code.ResourceExhausted);
  const rows: Row[] = [];
  let decoders: CellDecoder[] | undefined;
  let running: RunningStatement | undefined;
  let cancelling: Promise<void> | undefined;
  try {
    if (s.signal.aborted) throw abortError(s.signal); // e.g. a sibling failed while this waited for its slot
    running = start((cells, columns) => {
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
        cancelling = running?.cancel(); // stop the server producing rows nobody will keep
        return;
      }
      rows.push(create(RowSchema, { values }));
    });
    const result = await settleOrAbort(running, s.signal, onAbandoned).finally(() => cancelling);
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
  }
}

/**
 * The statement's result; on abort the statement is cancelled on Postgres and either abandoned
 * (onAbandoned gets the promise of its end, the caller is answered now) or awaited first.
 */
async function settleOrAbort(
  running: RunningStatement,
  signal: AbortSignal,
  onAbandoned: ((settled: Promise<unknown>) => void) | undefined,
): Promise<RawResult> {
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => {
      // The connection is free again only once the statement ended AND the cancel request arrived:
      // a request that lands after the statement ended would cancel the connection's next one.
      const delivered = running.cancel();
      const settled = Promise.all([running.done.then(() => undefined, () => undefined), delivered]).then(() => undefined);
      if (onAbandoned) {
        onAbandoned(settled);
        reject(abortError(signal));
      } else {
        settled.then(() => reject(abortError(signal)));
      }
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([running.done, aborted]);
  } finally {
    signal.removeEventListener("abort", onAbort!);
    aborted.catch(() => {}); // the race's loser must not become an unhandled rejection
  }
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
