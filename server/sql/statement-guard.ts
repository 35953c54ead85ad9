// Pooled connections are shared by every caller, so a statement must leave no session state behind
// (an open transaction, a setting, a LISTEN, a prepared statement, a temp table, a session advisory
// lock) for the next caller to inherit. The guard reads the statement with PostgreSQL's own parser and
// gives one of three answers:
//   refused   it would change the session, and the router cannot carry that for the caller;
//   isolated  it runs code whose effects nobody can read off its text (a DO block, a CALL, a function
//             or operator that is not built in): it runs on a connection of its own, closed after it;
//   shared    anything else: any pooled connection.
// Known limit: code that runs without being named in the statement (a trigger, a column default, a
// view, a rule, a domain check, a policy, a user-defined cast, or a user function that overloads a
// built-in's name) is not seen here. Who may create such code is a matter of grants
// (docs/configuration.md › The router's PostgreSQL role).
import { Code, ConnectError } from "@connectrpc/connect";
import { type ParseNode, parse } from "./parser.js";
import { builtinFunctions, builtinOperators } from "./pg-builtins.js";

export type Containment = "shared" | "isolated";

/** Statement kinds that change the session; the reason names what would outlive the statement. */
const refusedStatements = new Map<string, string>([
  ["TransactionStmt", "transactions"],
  ["VariableSetStmt", "session settings"], ["DiscardStmt", "session settings"], ["LoadStmt", "session settings"],
  ["AlterRoleSetStmt", "settings of later sessions"], ["AlterDatabaseSetStmt", "settings of later sessions"],
  ["AlterSystemStmt", "settings of later sessions"],
  ["ListenStmt", "notifications"], ["UnlistenStmt", "notifications"],
  ["PrepareStmt", "prepared statements"], ["ExecuteStmt", "prepared statements"], ["DeallocateStmt", "prepared statements"],
  ["DeclareCursorStmt", "cursors"], ["FetchStmt", "cursors"], ["ClosePortalStmt", "cursors"],
  ["CopyStmt", "COPY"],
]);

/** Statement kinds that run code nobody can read off the text (extension scripts included). */
const isolatedStatements = new Set(["DoStmt", "CallStmt", "CreateExtensionStmt", "AlterExtensionStmt"]);

/** Built-in functions with session effects. */
const refusedFunctions = new Map<string, string>([
  ["set_config", "session settings"], ["setseed", "session settings"],
  ["pg_advisory_lock", "session advisory locks"], ["pg_advisory_lock_shared", "session advisory locks"],
  ["pg_try_advisory_lock", "session advisory locks"], ["pg_try_advisory_lock_shared", "session advisory locks"],
  ["pg_replication_origin_session_setup", "replication origin sessions"],
  // They read the session's last nextval(), which on a shared connection may be another caller's.
  ["currval", "the session's sequence values (use RETURNING)"], ["lastval", "the session's sequence values (use RETURNING)"],
]);

/** Built-in functions that run SQL given to them as text, which the guard cannot read. */
const sqlTextFunctions = new Set([
  "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema",
  "cursor_to_xml", "cursor_to_xmlschema", "ts_stat", "ts_rewrite",
]);

class Refusal extends Error {
  constructor(readonly what: string, readonly reason: string) { super(reason); }
}

/**
 * Throws INVALID_ARGUMENT for an empty or unparsable statement, several statements, or one that
 * would leave session state; otherwise says whether it may run on a shared connection.
 */
export function checkStatement(sql: string): Containment {
  const known = verdicts.get(sql);
  if (known) return known;
  const verdict = judge(sql);
  if (sql.length <= maxRememberedLength) {
    if (verdicts.size >= maxRemembered) verdicts.clear();
    verdicts.set(sql, verdict);
  }
  return verdict;
}

/**
 * Statements a service sends are few and repeated: verdicts are remembered by text (bounded, cleared
 * when full), so the hot path parses each text once. Refusals are not remembered: they are rare.
 */
const verdicts = new Map<string, Containment>();
const maxRemembered = 4096;
const maxRememberedLength = 4096;

function judge(sql: string): Containment {
  const { stmts } = parse(sql);
  if (stmts.length === 0) throw new ConnectError("sql must contain a statement", Code.InvalidArgument);
  if (stmts.length > 1) throw new ConnectError("one statement per call: remove everything after the first ';'", Code.InvalidArgument);
  try {
    return visit(stmts[0].stmt) ? "isolated" : "shared";
  } catch (err) {
    if (!(err instanceof Refusal)) throw err;
    throw new ConnectError(
      `${err.what} is not allowed: ${err.reason} would outlive this statement on a shared connection`,
      Code.InvalidArgument,
    );
  }
}

/** Walks every node of the tree; true when some part must be isolated, throws a Refusal for refused parts. */
function visit(value: unknown): boolean {
  if (Array.isArray(value)) {
    if (isTempQualified(value)) throw new Refusal(qualifiedName(value), "temporary objects");
    let isolate = false;
    for (const item of value) if (visit(item)) isolate = true;
    return isolate;
  }
  if (value === null || typeof value !== "object") return false;
  const node = value as ParseNode;
  if (typeof node.relname === "string" && "relpersistence" in node) rangeVar(node);
  let isolate = false;
  for (const key in node) {
    const child = node[key];
    if (typeof child !== "object" || child === null) continue;
    // A function's own SET clause (CREATE FUNCTION … SET x = y) holds only while it runs.
    if (key === "DefElem" && (child as ParseNode).defname === "set") continue;
    // Node tags are capitalised (SelectStmt, FuncCall); field names are not.
    if (key.charCodeAt(0) <= 90 && inspect(key, child as ParseNode)) isolate = true;
    if (visit(child)) isolate = true;
  }
  return isolate;
}

/** The rule for one node, by its tag; true when it must be isolated. */
function inspect(tag: string, node: ParseNode): boolean {
  const refused = refusedStatements.get(tag);
  if (refused) throw new Refusal(statementName(tag, node), refused);
  if (isolatedStatements.has(tag)) return true;
  switch (tag) {
    case "FuncCall": return funcCall(node);
    case "A_Expr": return opExpression(node);
    case "SubLink": return node.operName !== undefined && !isBuiltinOperator(node.operName); // x OPERATOR(s.op) ANY (…)
    case "SortBy": return node.useOp !== undefined && !isBuiltinOperator(node.useOp); // ORDER BY x USING op
    case "Constraint": return exclusionOperators(node).some((op) => !isBuiltinOperator(op)); // EXCLUDE (x WITH op)
    case "UpdateStmt": case "InsertStmt": case "DeleteStmt": case "MergeStmt": writeTarget(node); return false;
  }
  return false;
}

/** UPDATE pg_settings … is set_config() in another form. */
function writeTarget(node: ParseNode): void {
  const target = node.relation as ParseNode | undefined;
  if (target?.relname !== "pg_settings") return;
  if (target.schemaname !== undefined && target.schemaname !== "pg_catalog") return;
  throw new Refusal(`writing to ${target.relname}`, "session settings");
}

/** A table, view or sequence by name: refused when temporary. */
function rangeVar(node: ParseNode): void {
  if (node.relpersistence === "t") throw new Refusal(`TEMP ${String(node.relname)}`, "temporary tables");
  if (isTempSchema(node.schemaname)) throw new Refusal(`${String(node.schemaname)}.${String(node.relname)}`, "temporary tables");
}

function funcCall(node: ParseNode): boolean {
  const names = stringList(node.funcname);
  if (!names) return true;
  const name = names[names.length - 1];
  const schema = names.length > 1 ? names[names.length - 2] : undefined;
  if (isTempSchema(schema)) throw new Refusal(names.join("."), "temporary objects");
  if (schema !== undefined && schema !== "pg_catalog") return true;
  if (!builtinFunctions.has(name) || sqlTextFunctions.has(name)) return true;
  const refused = refusedFunctions.get(name);
  if (name === "set_config") {
    const setting = constantText((node.args as ParseNode[] | undefined)?.[0]);
    // Who the session is, and the router's own settings (the write epoch), are never the caller's to
    // change, not even for its transaction: a role switched before PREPARE TRANSACTION would own the
    // prepared transaction, and neither its caller's login nor recovery could finish it.
    if (setting === undefined) throw new Refusal("set_config() of a setting named by an expression", "session settings");
    if (protectedSetting(setting)) throw new Refusal(`set_config('${setting}')`, "who the session is, or the router's own settings");
    if (!isLocalSetConfig(node)) throw new Refusal(`${name}()`, refused!);
    return false;
  }
  if (refused) throw new Refusal(`${name}()`, refused);
  return false;
}

/** Settings no caller may change, even for one transaction. */
function protectedSetting(name: string): boolean {
  const n = name.trim().toLowerCase();
  return n === "role" || n === "session_authorization" || n.startsWith("shardrouter.");
}

/** A string constant's text; undefined for anything else. */
function constantText(node: ParseNode | undefined): string | undefined {
  const sval = ((node?.A_Const as ParseNode | undefined)?.sval as ParseNode | undefined)?.sval;
  return typeof sval === "string" ? sval : undefined;
}

/** set_config(name, value, true) changes the setting for the current transaction only. */
function isLocalSetConfig(node: ParseNode): boolean {
  const args = node.args as ParseNode[] | undefined;
  const third = (args?.[2]?.A_Const as ParseNode | undefined)?.boolval as ParseNode | undefined;
  return args?.length === 3 && third?.boolval === true;
}

/** An operator a user may have defined runs that user's function. */
function opExpression(node: ParseNode): boolean {
  if (node.kind !== "AEXPR_OP" && node.kind !== "AEXPR_OP_ANY" && node.kind !== "AEXPR_OP_ALL") return false;
  return !isBuiltinOperator(node.name);
}

/** An operator name (a list of String nodes, maybe schema-qualified) that is PostgreSQL's own. */
function isBuiltinOperator(name: unknown): boolean {
  const names = stringList(name);
  if (!names) return false;
  if (names.length > 1 && names[names.length - 2] !== "pg_catalog") return false;
  return builtinOperators.has(names[names.length - 1]);
}

/** The operator names of an EXCLUDE constraint: each element is [IndexElem, [operator name]]. */
function exclusionOperators(node: ParseNode): unknown[] {
  if (!Array.isArray(node.exclusions)) return [];
  return node.exclusions.map((pair) => {
    const items = ((pair as ParseNode).List as ParseNode | undefined)?.items as ParseNode[] | undefined;
    return ((items?.[1]?.List as ParseNode | undefined)?.items) ?? null;
  });
}

/** A list of String nodes (a qualified name) as its strings; undefined for anything else. */
function stringList(value: unknown): string[] | undefined {
  if (!Array.isArray(value) || value.length === 0) return undefined;
  const out: string[] = [];
  for (const item of value) {
    const s = (item as ParseNode)?.String as ParseNode | undefined;
    if (!s || Object.keys(item as object).length !== 1) return undefined;
    out.push(typeof s.sval === "string" ? s.sval : "");
  }
  return out;
}

/** pg_temp (or the backend's own pg_temp_N) named as the schema of a qualified name. */
function isTempQualified(list: unknown[]): boolean {
  if (list.length < 2) return false;
  const names = stringList(list);
  return !!names && names.slice(0, -1).some(isTempSchema);
}

function isTempSchema(name: unknown): boolean {
  return typeof name === "string" && /^pg_temp(_\d+)?$/.test(name);
}

function qualifiedName(list: unknown[]): string {
  return (stringList(list) ?? []).join(".");
}

/** The statement as a person typed it: "SET", "BEGIN", "LISTEN" … */
function statementName(tag: string, node: ParseNode): string {
  switch (tag) {
    case "TransactionStmt": return String(node.kind ?? "TRANS_STMT_BEGIN").replace(/^TRANS_STMT_/, "").replace(/_/g, " ");
    case "VariableSetStmt": return node.kind === "VAR_RESET" || node.kind === "VAR_RESET_ALL" ? "RESET" : "SET";
    case "DiscardStmt": return "DISCARD";
    case "LoadStmt": return "LOAD";
    case "AlterRoleSetStmt": return "ALTER ROLE … SET";
    case "AlterDatabaseSetStmt": return "ALTER DATABASE … SET";
    case "AlterSystemStmt": return "ALTER SYSTEM";
    case "ListenStmt": return "LISTEN";
    case "UnlistenStmt": return "UNLISTEN";
    case "PrepareStmt": return "PREPARE";
    case "ExecuteStmt": return "EXECUTE";
    case "DeallocateStmt": return "DEALLOCATE";
    case "DeclareCursorStmt": return "DECLARE";
    case "FetchStmt": return node.ismove ? "MOVE" : "FETCH";
    case "ClosePortalStmt": return "CLOSE";
    case "CopyStmt": return "COPY";
  }
  return tag;
}

/**
 * Savepoints end with the transaction that holds them, so inside an interactive transaction (a
 * connection reserved until COMMIT or ROLLBACK) they leave nothing behind; they are what lets a
 * caller recover from a failed statement without losing the whole transaction, and what ORMs use for
 * nested transactions. Everything else that controls the transaction belongs to the router.
 */
const savepointKinds = new Set(["TRANS_STMT_SAVEPOINT", "TRANS_STMT_RELEASE", "TRANS_STMT_ROLLBACK_TO"]);

/**
 * The guard for a statement of an interactive transaction: the same answers as checkStatement, but
 * SAVEPOINT, RELEASE and ROLLBACK TO are allowed, and any other transaction control (BEGIN, COMMIT,
 * ROLLBACK, PREPARE TRANSACTION …) is refused with a message that says what to call instead.
 */
export function checkTransactionStatement(sql: string): Containment {
  try {
    return checkStatement(sql);
  } catch (err) {
    const { stmts } = parse(sql); // parses: the refusal was no syntax error, so this one parses too
    const control = stmts.length === 1 ? (stmts[0].stmt.TransactionStmt as ParseNode | undefined) : undefined;
    if (!control) throw err;
    if (savepointKinds.has(String(control.kind))) return "shared";
    throw new ConnectError(
      `${statementName("TransactionStmt", control)} is not allowed inside an interactive transaction: end it with CommitTransaction or RollbackTransaction`,
      Code.InvalidArgument,
    );
  }
}
