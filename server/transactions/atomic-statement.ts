// One statement that writes on several shards (Execute: a multi-row INSERT whose rows belong to
// several shards, a write to a reference table, an UPDATE or DELETE over every shard) runs as one
// transaction of the coordinator: each shard gets its part, and all commit or none do.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { type ExecuteRequest, ExecuteRequestSchema, type ExecuteResponse, ExecuteResponseSchema } from "../../gen/shardrouter/v1/router_pb.js";
import type { ResultSet } from "../../gen/shardrouter/v1/value_pb.js";
import type { Planner } from "../execution/planner.js";
import type { ShardMap } from "../placement/shard-map.js";
import type { RawParam } from "../shards/node-pool.js";
import type { Budget } from "../execution/shard-executor.js";
import type { Coordinator, TxCaller } from "./coordinator.js";
import { requestFingerprint } from "./request-log.js";

export interface StatementPart { shard: string; sql: string; params: RawParam[] }

export interface AtomicStatement {
  req: ExecuteRequest;
  /** The request id (the caller's, or one made up for this call). */
  requestId: string;
  /** The statement each shard runs, in shard map order. */
  parts: StatementPart[];
  isolated: boolean;
  /** The keys the statement pins (none: one made from the request id keeps its record). */
  keys: readonly string[];
  map: ShardMap;
  /** The shards' results as one (merged or concatenated), and the response's other fields. */
  respond(results: ResultSet[], outcome: { twoPhase: boolean; transactionId: string }): ExecuteResponse;
  signal: AbortSignal;
  budget: Budget;
  caller?: TxCaller;
}

export async function runAtomically(s: AtomicStatement, deps: { planner: Planner; coordinator: Coordinator }): Promise<ExecuteResponse> {
  // The request record lives under the least key (a retry names the same one) on that key's shard,
  // which is one of the parts' shards: so a reshard moves the record with the rows.
  const homeKey = s.keys.reduce<string | undefined>((least, k) => (least === undefined || k < least ? k : least), undefined) ?? s.requestId;
  const home = await deps.planner.route(homeKey, s.map);
  const parts = s.parts.some((p) => p.shard === home.shard.name) ? s.parts : [...s.parts, { shard: home.shard.name, sql: "select", params: [] }];
  const statements = parts.map((p) => ({ shard: deps.planner.shards.shard(p.shard), sql: p.sql, params: p.params, isolated: s.isolated }));
  const own = (results: ResultSet[]) => results.slice(0, s.parts.length); // not the home's no-op, if added
  const result = await deps.coordinator.run({
    requestId: s.requestId,
    home: { key: homeKey, shard: home.shard },
    requestHash: requestFingerprint(toBinary(ExecuteRequestSchema, { ...s.req, requestId: "" }), s.caller),
    loginFor: s.caller?.loginFor,
    statements,
    encodeResponse: (o) => toBinary(ExecuteResponseSchema, s.respond(own(o.results), o)),
    signal: s.signal,
    budget: s.budget,
  });
  if (result.replayed) return create(ExecuteResponseSchema, { ...fromBinary(ExecuteResponseSchema, result.response), replayed: true });
  return s.respond(own(result.outcome.results), result.outcome);
}
