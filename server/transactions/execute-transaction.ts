// ExecuteTransaction: statements routed by their keys, run in request order, all committed or none.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type ExecuteTransactionRequest, ExecuteTransactionRequestSchema, type ExecuteTransactionResponse,
  ExecuteTransactionResponseSchema, StatementResultSchema, TransactionOutcome,
} from "../../gen/shardrouter/v1/transactions_pb.js";
import type { Planner } from "../execution/planner.js";
import { newBudget } from "../execution/shard-executor.js";
import { checkStatement } from "../sql/statement-guard.js";
import { encodeParam } from "../execution/value-codec.js";
import type { Coordinator, TxCaller, TxOutcome, TxStatement } from "./coordinator.js";
import { requestFingerprint } from "./request-log.js";

export const maxStatements = 1000;

export interface TransactionDeps { planner: Planner; coordinator: Coordinator; limits: { maxRows: number; maxBytes: number } }

export async function executeTransaction(req: ExecuteTransactionRequest, deps: TransactionDeps, signal: AbortSignal, caller?: TxCaller): Promise<ExecuteTransactionResponse> {
  if (!req.requestId) throw new ConnectError("request_id is required (it makes a retry safe)", Code.InvalidArgument);
  if (req.statements.length === 0) throw new ConnectError("statements must not be empty", Code.InvalidArgument);
  if (req.statements.length > maxStatements) throw new ConnectError(`at most ${maxStatements} statements per transaction`, Code.InvalidArgument);
  const statements: TxStatement[] = [];
  let home: { key: string; shard: TxStatement["shard"] } | undefined;
  const map = deps.planner.map; // one shard map version for the whole transaction
  for (const [i, s] of req.statements.entries()) {
    try {
      const isolated = checkStatement(s.sql) === "isolated";
      const params = s.params.map((v, j) => encodeParam(v, j + 1));
      const { shard } = await deps.planner.route(s.key, map);
      statements.push({ shard, sql: s.sql, params, isolated });
      if (!home || s.key < home.key) home = { key: s.key, shard };
    } catch (err) {
      const e = ConnectError.from(err);
      throw new ConnectError(`statements[${i}]: ${e.rawMessage}`, e.code, undefined, e.details as never, err);
    }
  }
  const response = (o: TxOutcome): ExecuteTransactionResponse => create(ExecuteTransactionResponseSchema, {
    outcome: TransactionOutcome.COMMITTED,
    results: o.results.map((result, i) => create(StatementResultSchema, { shard: statements[i].shard.name, result })),
    twoPhase: o.twoPhase, transactionId: o.transactionId, shards: o.shards,
  });
  const result = await deps.coordinator.run({
    requestId: req.requestId,
    home: home!,
    requestHash: requestFingerprint(toBinary(ExecuteTransactionRequestSchema, { ...req, requestId: "" }), caller),
    loginFor: caller?.loginFor,
    statements,
    encodeResponse: (o) => toBinary(ExecuteTransactionResponseSchema, response(o)),
    signal,
    budget: newBudget(deps.limits.maxRows, deps.limits.maxBytes),
  });
  if (result.replayed) return { ...fromBinary(ExecuteTransactionResponseSchema, result.response), replayed: true };
  return response(result.outcome);
}
