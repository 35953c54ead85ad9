// The tagged template `scope.sql\`… ${value} …\``: the literal text becomes the statement with $1, $2 …
// where the values were, and the values become bound parameters. Nothing a caller passes is ever
// spliced into the SQL text; a plain string (not a template literal) is refused, so a string built
// by concatenation cannot reach the router through this door.
import { Code, ConnectError } from "@connectrpc/connect";
import type { SqlParam } from "./values.ts";

export interface TemplateStatement { sql: string; params: SqlParam[] }

/** `stringForm`: the call to name for a statement held in a string. */
export function fromTemplate(strings: TemplateStringsArray, values: readonly SqlParam[], stringForm = "query(sql, params)"): TemplateStatement {
  if (!Array.isArray(strings) || !Array.isArray((strings as { raw?: unknown }).raw)) {
    throw new ConnectError(`sql is a tagged template (sql\`select … where id = \${id}\`); to send a statement held in a string, use ${stringForm}`, Code.InvalidArgument);
  }
  let sql = strings[0];
  for (let i = 1; i < strings.length; i++) sql += `$${i}${strings[i]}`;
  return { sql, params: [...values] };
}
