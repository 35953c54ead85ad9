// Turns what postgres.js throws into a ConnectError a caller can act on: the right code, a message a
// person understands, and the SQLSTATE (with Postgres' detail and hint) as a typed error detail.
// Messages name the shard and node by name and host:port only: never a DSN, user or password.
import { Code, ConnectError } from "@connectrpc/connect";
import { PostgresErrorDetailSchema } from "../../gen/shardrouter/v1/errors_pb.js";
import { tlsFailure } from "../config/postgres-tls.js";
import { NodeUnreachableError } from "../shards/node-unreachable.js";

export interface Where { shard: string; node: string; address: string }

interface PgError {
  name?: string; code?: string; message?: string; detail?: string; hint?: string;
  constraint_name?: string; table_name?: string; column_name?: string;
}

const connectionCodes = new Set([
  "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EPIPE",
  "CONNECT_TIMEOUT", "CONNECTION_CLOSED", "CONNECTION_ENDED", "CONNECTION_DESTROYED",
]);

/** The Connect code for a SQLSTATE (exact codes first, then the class). */
export function codeForSqlstate(sqlstate: string): Code {
  switch (sqlstate) {
    case "23505": return Code.AlreadyExists;
    case "42501": return Code.PermissionDenied;
    case "57014": return Code.DeadlineExceeded;
    case "40001": case "40P01": case "55P03": return Code.Aborted;
    case "25006": return Code.FailedPrecondition; // read-only transaction: a write reached a replica
    case "08P01": return Code.InvalidArgument; // e.g. "bind message supplies 1 parameters, but ... requires 2"
    case "SR001": return Code.Unavailable; // a fenced source refused a router whose shard map is old: retry
  }
  switch (sqlstate.slice(0, 2)) {
    case "22": case "42": case "0A": case "54": case "26": case "34": return Code.InvalidArgument;
    case "23": case "2B": case "P0": case "25": case "55": return Code.FailedPrecondition;
    case "53": return Code.ResourceExhausted;
    case "08": case "57": case "58": case "28": case "3D": return Code.Unavailable;
    case "XX": return Code.Internal;
  }
  return Code.Unknown;
}

/** The SQLSTATE a ConnectError of toConnectError carries, if Postgres gave one. */
export function sqlstateOf(err: unknown): string | undefined {
  if (!(err instanceof ConnectError)) return undefined;
  return err.findDetails(PostgresErrorDetailSchema)[0]?.sqlstate;
}

export function isConnectionError(err: unknown): boolean {
  const code = (err as PgError)?.code;
  return (typeof code === "string" && connectionCodes.has(code)) || tlsFailure(err) !== undefined;
}

// PostgreSQL (17 and before) can fail a write with this internal error when a publication on the
// written table is dropped at that moment (a reshard job's cleanup drops its publication while clients
// write; seen in test/resharding/add-fifth-shard). The statement failed and its transaction rolled
// back, so it is a retryable conflict (ABORTED), not a router bug (INTERNAL).
const droppedPublication = /^cache lookup failed for publication \d+$/;

/** Maps any failure of a statement on a node to a ConnectError. */
export function toConnectError(err: unknown, where: Where): ConnectError {
  if (err instanceof ConnectError) return err;
  const e = (err ?? {}) as PgError;
  const on = `shard ${where.shard} (node ${where.node} at ${where.address})`;
  if (e.name === "PostgresError" && typeof e.code === "string" && e.code.length === 5) {
    const code = e.code === "XX000" && droppedPublication.test(e.message ?? "") ? Code.Aborted : codeForSqlstate(e.code);
    const message = `${e.message} (SQLSTATE ${e.code}) on ${on}`;
    return new ConnectError(message, code, undefined, [{
      desc: PostgresErrorDetailSchema,
      value: {
        sqlstate: e.code, message: e.message ?? "", detail: e.detail ?? "", hint: e.hint ?? "",
        shard: where.shard, node: where.node, constraint: e.constraint_name ?? "",
        table: e.table_name ?? "", column: e.column_name ?? "",
      },
    }]);
  }
  if (isConnectionError(err)) {
    const tls = tlsFailure(err);
    return new NodeUnreachableError(`${on} is unavailable: ${tls ? `TLS failed: ${tls}` : describeConnectionCode(e.code!)}`, where.node);
  }
  // postgres.js' own generic errors (e.g. MAX_PARAMETERS_EXCEEDED) carry no credentials, only a reason.
  if (typeof e.code === "string" && e.message) {
    return new ConnectError(`${e.message} on ${on}`, Code.Internal);
  }
  return new ConnectError(`unexpected failure on ${on}`, Code.Internal, undefined, undefined, err);
}

function describeConnectionCode(code: string): string {
  switch (code) {
    case "ECONNREFUSED": return "connection refused";
    case "CONNECT_TIMEOUT": case "ETIMEDOUT": return "connection timed out";
    case "ECONNRESET": case "CONNECTION_CLOSED": case "EPIPE": return "connection lost";
    default: return code.toLowerCase().replace(/_/g, " ");
  }
}
