// @shardrouter/sdk: the client for Node >= 20, Deno 2 and browsers (fetch; Connect or gRPC-Web).
// In Node, "@shardrouter/sdk/node" is the same on Node's own HTTP stack (far less CPU per call), plus gRPC over HTTP/2.
import { ShardRouterClient } from "./client.ts";
import { type TransportOptions, fetchTransport } from "./transports.ts";
import type { DecodeOptions } from "./values.ts";

export interface ClientOptions extends TransportOptions {
  /** How result cells become JS (timestamps as Date or text, json parsed or text). */
  decode?: DecodeOptions;
}

/** A client over fetch. Throws a TypeError at once for a configuration it cannot serve (e.g. protocol "grpc"). */
export function createClient(options: ClientOptions): ShardRouterClient {
  return new ShardRouterClient(fetchTransport(options), { decode: options.decode });
}

export { ShardRouterClient } from "./client.ts";
export type {
  AllOptions, AllResult, BeginOptions, CallOptions, ExecuteOptions, ExecuteResult, IsolationLevelName, ShardTransaction, TransactionQueryOptions, NodeInfo, Outcome, QueryOptions, ReadPreferenceName, RouteInfo, ShardKey,
  ShardOutcome, ShardResult, ShardScope, ShardTopology, Topology, TransactionOptions, TransactionResult,
  TransactionStatement, TransferOptions, TransferResult,
} from "./client.ts";
export { type PostgresError, ShardRouterError, postgresErrorOf, sqlstateOf } from "./errors.ts";
export type { ExplainedStatement, ExplainedTable, ExplainResult } from "./explain.ts";
export type { AggregateSpec, DerivedMerge, MergeOptions, OrderKey } from "./merge-spec.ts";
export type { Column, Field, QueryResult, Row, RowMode } from "./results.ts";
export type { Protocol, TransportOptions } from "./transports.ts";
export { type DecodeOptions, type JsonObject, type SqlParam, type TypedParam, type TypeParser, date, float, json, numeric, timestamp, uuid } from "./values.ts";
export { Code, ConnectError } from "@connectrpc/connect";
