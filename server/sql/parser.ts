// The real PostgreSQL parser (libpg-query: PostgreSQL 17's own grammar compiled to WASM), so the router
// reads a statement as the server will: quoted and U&"…" identifiers, comments anywhere, nested
// dollar quotes. Loaded once at start; a router that cannot load it refuses to start rather than guess.
import { Code, ConnectError } from "@connectrpc/connect";
import { loadModule, parseSync } from "libpg-query";
import { PostgresErrorDetailSchema } from "../../gen/shardrouter/v1/errors_pb.js";

/** One node of the parse tree as libpg-query gives it: `{ NodeTag: { field: … } }`. */
export type ParseNode = Record<string, unknown>;
export interface ParseTree { stmts: { stmt: ParseNode }[] }

let loaded: Promise<void> | undefined;
let ready = false;

/** Loads the parser (idempotent). Rejects with a message that says what failed. */
export function loadParser(): Promise<void> {
  loaded ??= loadModule().then(() => { ready = true; }, (err: unknown) => {
    loaded = undefined;
    throw new Error(`the PostgreSQL parser (libpg-query) could not be loaded: ${(err as Error)?.message ?? err}`);
  });
  return loaded;
}

/**
 * The statements of `sql`. A syntax error is the caller's: INVALID_ARGUMENT with SQLSTATE 42601, as
 * Postgres would answer it.
 */
export function parse(sql: string): ParseTree {
  if (!ready) throw new ConnectError("the SQL parser is not loaded yet (startRouter loads it)", Code.Unavailable);
  if (sql.length === 0) return { stmts: [] }; // libpg-query throws on ""; the guard says what is missing
  try {
    const tree = parseSync(sql) as { stmts?: { stmt: ParseNode }[] };
    return { stmts: tree.stmts ?? [] };
  } catch (err) {
    const message = (err as Error)?.message || "syntax error";
    throw new ConnectError(`${message} (SQLSTATE 42601)`, Code.InvalidArgument, undefined, [{
      desc: PostgresErrorDetailSchema,
      value: { sqlstate: "42601", message },
    }]);
  }
}
