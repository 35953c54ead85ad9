// Transfer: debit one account, credit another, atomically. A thin case of a transaction: two
// UPDATE … RETURNING statements whose rows are locked in one global order, (shard, key), so
// transfers in opposite directions queue behind each other instead of deadlocking.
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { PostgresErrorDetailSchema } from "../../gen/shardrouter/v1/errors_pb.js";
import {
  type TransferRequest, TransferRequestSchema, type TransferResponse, TransferResponseSchema, TransactionOutcome,
} from "../../gen/shardrouter/v1/transactions_pb.js";
import type { ResultSet } from "../../gen/shardrouter/v1/value_pb.js";
import type { Config } from "../config/config.js";
import type { Planner } from "../execution/planner.js";
import { Oid } from "../execution/pg-types.js";
import { newBudget } from "../execution/shard-executor.js";
import type { Coordinator, TxCaller, TxOutcome, TxStatement } from "./coordinator.js";
import { requestFingerprint, text } from "./request-log.js";

export interface TransferDeps { planner: Planner; coordinator: Coordinator; table: Config["transfer"] }

export async function transfer(req: TransferRequest, deps: TransferDeps, signal: AbortSignal, caller?: TxCaller): Promise<TransferResponse> {
  validate(req);
  const map = deps.planner.map; // both keys on one shard map version
  const [from, to] = await Promise.all([deps.planner.route(req.fromKey, map), deps.planner.route(req.toKey, map)]);
  const { table, keyColumn, balanceColumn } = deps.table;
  const [t, k, b] = [identifier(table), identifier(keyColumn), identifier(balanceColumn)];
  const amount = { text: req.amount.toString(), oid: Oid.int8 };
  const debit: TxStatement = {
    shard: from.shard, sql: `update ${t} set ${b} = ${b} - $1 where ${k} = $2 returning ${b}`,
    params: [amount, text(req.fromKey)], check: mustExist(req.fromKey),
  };
  const credit: TxStatement = {
    shard: to.shard, sql: `update ${t} set ${b} = ${b} + $1 where ${k} = $2 returning ${b}`,
    params: [amount, text(req.toKey)], check: mustExist(req.toKey),
  };
  const debitFirst = compare([from.shard.name, req.fromKey], [to.shard.name, req.toKey]) < 0;
  const statements = debitFirst ? [debit, credit] : [credit, debit];
  const response = (o: TxOutcome): TransferResponse => {
    const [d, c] = debitFirst ? o.results : [o.results[1], o.results[0]];
    return {
      $typeName: "shardrouter.v1.TransferResponse",
      outcome: TransactionOutcome.COMMITTED, fromShard: from.shard.name, toShard: to.shard.name, twoPhase: o.twoPhase,
      fromBalance: balanceOf(d), toBalance: balanceOf(c), transactionId: o.transactionId, replayed: false,
    };
  };
  try {
    const result = await deps.coordinator.run({
      requestId: req.requestId,
      home: req.fromKey < req.toKey ? { key: req.fromKey, shard: from.shard } : { key: req.toKey, shard: to.shard },
      requestHash: requestFingerprint(toBinary(TransferRequestSchema, { ...req, requestId: "" }), caller),
      loginFor: caller?.loginFor,
      statements,
      encodeResponse: (o) => toBinary(TransferResponseSchema, response(o)),
      signal,
      budget: newBudget(10, 1 << 20),
    });
    if (result.replayed) return { ...fromBinary(TransferResponseSchema, result.response), replayed: true };
    return response(result.outcome);
  } catch (err) {
    throw explainCheckViolation(err, req.fromKey);
  }
}

function validate(req: TransferRequest): void {
  const problems: string[] = [];
  if (!req.fromKey) problems.push("from_key must not be empty");
  if (!req.toKey) problems.push("to_key must not be empty");
  if (req.fromKey && req.fromKey === req.toKey) problems.push("from_key and to_key must differ");
  if (req.amount <= 0n) problems.push(`amount must be positive (got ${req.amount})`);
  if (!req.requestId) problems.push("request_id is required (it makes a retry safe)");
  if (problems.length) throw new ConnectError(problems.join("; "), Code.InvalidArgument);
}

function mustExist(key: string): (r: ResultSet) => void {
  return (r) => {
    if (r.rows.length === 0) throw new ConnectError(`account '${key}' does not exist`, Code.NotFound);
  };
}

/** The balance check (balance >= 0) failing on the debit means: not enough money. */
function explainCheckViolation(err: unknown, fromKey: string): unknown {
  if (!(err instanceof ConnectError)) return err;
  const detail = err.findDetails(PostgresErrorDetailSchema)[0];
  if (detail?.sqlstate !== "23514") return err;
  return new ConnectError(`insufficient funds in account '${fromKey}'`, Code.FailedPrecondition, undefined, err.details as never, err);
}

function balanceOf(r: ResultSet): bigint {
  return r.rows[0].values[0].kind.value as bigint;
}

function compare(a: string[], b: string[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  return 0;
}

/** A configured name as a quoted identifier ("schema.table" allowed); never a value. */
function identifier(name: string): string {
  return name.split(".").map((part) => `"${part.replace(/"/g, '""')}"`).join(".");
}
