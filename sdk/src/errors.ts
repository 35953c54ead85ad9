// Every failure of an SDK call is a ConnectError (code + message); the client throws the subclass
// ShardRouterError, which adds the Postgres SQLSTATE and error fields when the router sent them as a
// shardrouter.v1.PostgresErrorDetail.
import { Code, ConnectError } from "@connectrpc/connect";
import { type PostgresErrorDetail, PostgresErrorDetailSchema } from "./gen/shardrouter/v1/errors_pb.ts";

/** What Postgres said when it rejected a statement (sqlstate, message, detail, hint, constraint, table, column), and where (shard, node). */
export type PostgresError = Omit<PostgresErrorDetail, "$typeName">;

export class ShardRouterError extends ConnectError {
  // ConnectError's own instanceof accepts any ConnectError (and, across copies of the library, anything
  // named "ConnectError" — so `name` stays that). This class only claims its own instances.
  static override [Symbol.hasInstance](v: unknown): boolean {
    return typeof v === "object" && v !== null && Object.prototype.isPrototypeOf.call(ShardRouterError.prototype, v);
  }

  /** The five-character SQLSTATE ("23505") when Postgres rejected the statement. */
  readonly sqlstate: string | undefined;
  readonly postgres: PostgresError | undefined;

  constructor(from: ConnectError) {
    super(from.rawMessage, from.code, from.metadata, undefined, from.cause);
    this.details.push(...from.details); // keeps findDetails() working on this error
    this.postgres = postgresErrorOf(from);
    this.sqlstate = this.postgres?.sqlstate;
  }
}

/** The Postgres error carried by any error from the router (ShardRouterError or a plain ConnectError). */
export function postgresErrorOf(err: unknown): PostgresError | undefined {
  if (!(err instanceof ConnectError)) return undefined;
  const [detail] = err.findDetails(PostgresErrorDetailSchema);
  if (!detail) return undefined;
  const { $typeName: _, ...fields } = detail;
  return fields;
}

export function sqlstateOf(err: unknown): string | undefined {
  return postgresErrorOf(err)?.sqlstate;
}

/** Converts whatever a call threw. fetch reports an unreachable server as a TypeError: that is UNAVAILABLE. */
export function toShardRouterError(err: unknown): ShardRouterError {
  if (err instanceof ShardRouterError) return err;
  let e = ConnectError.from(err);
  if (e.code === Code.Unknown && e.cause instanceof TypeError) {
    e = new ConnectError(`router unreachable: ${describeCause(e.cause)}`, Code.Unavailable, e.metadata, undefined, e.cause);
  }
  return new ShardRouterError(e);
}

function describeCause(err: TypeError): string {
  const inner = (err as { cause?: { code?: string; message?: string } }).cause;
  return [err.message, inner?.code ?? inner?.message].filter(Boolean).join(": ");
}
