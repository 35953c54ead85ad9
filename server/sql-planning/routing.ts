// Which shards a statement needs, read off its tree with the tables config. The static part (which
// tables, which key columns, where the key values come from) is computed once per statement text;
// `routeAnalysis` turns it into shards per call, with that call's parameters and shard map.
//
// Sharded tables joined on their shard keys (a.id = b.account_id) are one "co-located group": their
// matching rows live on one shard. A key pinned for any member (`= value`, `IN (…)`, `= ANY(…)` in
// WHERE or an inner join's ON, an INSERT's VALUES) pins the group. Two groups (sharded tables joined
// on anything else) are answered only when both are pinned to one shard; otherwise refused.
//
// A subquery, CTE or sublink is read the same way, as its own level. Its sharded tables are answered
// by the statement's shard only when their keys are pinned to that shard (decided per call), or when
// they are joined on the key to a sharded table of an enclosing level (its rows' keys are the shard's).
import { Code, ConnectError } from "@connectrpc/connect";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import type { ShardMap } from "../placement/shard-map.js";
import { canonicalKey } from "./key-canonical.js";
import { keyText, keyTexts } from "./key-values.js";
import { type Refusal, refusal } from "./refusals.js";
import { type ColumnsOf, relationName } from "./table-schemas.js";
import { arrayKeySources, columnRef, conjuncts, field, funcName, isBinaryOp, type KeySource, keySource, type ParseNode, type PinKey, unwrap, walk } from "./tree.js";

export interface TablesConfig {
  sharded: Record<string, string>;
  reference: string[];
}

export interface TableUse {
  /** As the statement names it (schema-qualified when it was). */
  name: string;
  /** The alias, or the table's own name. */
  alias: string;
  /** The name as to_regclass reads it (each part quoted): how its columns are looked up. */
  relation: string;
  role: "sharded" | "reference" | "unknown";
  keyColumn?: string;
  /** Sharded tables: its co-located group. */
  group?: number;
  /** Its columns renamed by the alias (`accounts a(x, y)`): the key cannot be told by name. */
  keyRenamed?: boolean;
}

/** The keys that pin a co-located group; `any`: given as `= ANY(…)` (said so in the reason). */
export interface Pin { keys: PinKey[]; any: boolean }

/** A co-located group of a subquery or CTE, pinned by its own keys. */
export interface NestedPin { table: string; relation: string; column: string; pin: Pin }

export interface RoutingAnalysis {
  statementKind: string;
  write: boolean;
  tables: TableUse[];
  /** Per co-located group: the key values that pin it (undefined: not pinned). */
  pins: (Pin | undefined)[];
  /** Per co-located group of a subquery level: the enclosing level's key it is joined on ("a.id"). */
  correlated: (string | undefined)[];
  /** INSERT into a sharded table: each VALUES row's key. */
  insertKeys?: KeySource[];
  /** Pinned groups of the subqueries and CTEs, at any depth: their keys' shard must be the statement's. */
  nested: NestedPin[];
  /** Groups of subqueries joined on the key to an enclosing level's table, in words (nothing to check). */
  correlations: string[];
  refusals: Refusal[];
  /** Resolves a column reference to the sharded table use whose key it is (merge planning asks). */
  keyOf(names: string[]): number | undefined;
}

export function lookupRole(tables: TablesConfig, schema: string | undefined, rel: string): { role: TableUse["role"]; keyColumn?: string } {
  const names = schema ? [`${schema}.${rel}`, rel] : [rel];
  for (const n of names) {
    if (Object.hasOwn(tables.sharded, n)) return { role: "sharded", keyColumn: tables.sharded[n] };
    if (tables.reference.includes(n)) return { role: "reference" };
  }
  return { role: "unknown" };
}

export function analyzeRouting(stmt: ParseNode, tables: TablesConfig, write: boolean): RoutingAnalysis {
  return analyzeScope(stmt, tables, write, { ctes: new Set() });
}

/** One query level: the names its FROM items are referenced by, its tables, the level around it. */
interface Scope {
  names: Set<string>;
  uses: TableUse[];
  parent?: Scope;
}

/** What a query level sees from around it: the CTE names in force, the enclosing level (correlation). */
interface Context {
  ctes: ReadonlySet<string>;
  parent?: Scope;
}

function analyzeScope(stmt: ParseNode, tables: TablesConfig, write: boolean, ctx: Context): RoutingAnalysis {
  const [kind, node] = unwrap(stmt)!;
  const uses: TableUse[] = [];
  const refusals: Refusal[] = [];
  const scope: Scope = { names: new Set(), uses, parent: ctx.parent };
  const topLevel = new Set<ParseNode>();
  const equalities: [unknown, unknown][] = [];
  const pinTerms: unknown[] = [];
  const withClause = node.withClause as ParseNode | undefined;
  const cteList = ((withClause?.ctes as ParseNode[] | undefined) ?? []).map((c) => c.CommonTableExpr as ParseNode);
  const cteNames = cteList.map((c) => String(c.ctename));
  const ctes = new Set([...ctx.ctes, ...cteNames]);

  const addTable = (rv: ParseNode): void => {
    topLevel.add(rv);
    const rel = String(rv.relname);
    const aliasNode = rv.alias as ParseNode | undefined;
    const alias = (aliasNode?.aliasname as string | undefined) ?? rel;
    scope.names.add(alias);
    if (!rv.schemaname && ctes.has(rel)) return; // a CTE: its own tables are read below
    const { role, keyColumn } = lookupRole(tables, rv.schemaname as string | undefined, rel);
    const name = rv.schemaname ? `${String(rv.schemaname)}.${rel}` : rel;
    const relation = relationName(rv.schemaname as string | undefined, rel);
    const use: TableUse = keyColumn ? { name, alias, relation, role, keyColumn } : { name, alias, relation, role };
    // `accounts a(x, y)` renames columns by position: which one is the key is not known here.
    if (keyColumn && aliasNode?.colnames) use.keyRenamed = true;
    uses.push(use);
  };
  /** FROM items; `inner`: every join above is an inner join, so its ON terms restrict the result. */
  const fromItem = (item: unknown, inner: boolean): void => {
    const rv = field(item, "RangeVar");
    if (rv) return addTable(rv);
    const join = field(item, "JoinExpr");
    if (!join) return fromNames(item, scope.names); // a subquery or function: subqueries are read below
    const aliasName = (join.alias as ParseNode | undefined)?.aliasname;
    if (aliasName) scope.names.add(String(aliasName));
    const innerHere = inner && join.jointype === "JOIN_INNER";
    fromItem(join.larg, innerHere);
    fromItem(join.rarg, innerHere);
    for (const term of conjuncts(join.quals)) {
      collectEquality(term, equalities);
      if (innerHere) pinTerms.push(term);
    }
    for (const u of (join.usingClause as ParseNode[] | undefined) ?? []) {
      const col = String((u.String as ParseNode).sval);
      equalities.push([{ using: col }, undefined]);
    }
  };

  let insertKeys: KeySource[] | undefined;
  switch (kind) {
    case "SelectStmt":
      if (node.op !== "SETOP_NONE") {
        // Its parts are not read for keys: over a sharded table, each shard would answer only its rows.
        walk(node, (tag, n) => {
          if (tag === "RangeVar" && isShardedTable(tables, n, ctes) && !refusals.length) {
            refusals.push(refusal(`${String(node.op).replace("SETOP_", "")} over a sharded table`, "run each part as its own statement and combine the results", true));
          }
        });
        break;
      }
      for (const item of (node.fromClause as unknown[] | undefined) ?? []) fromItem(item, true);
      break;
    case "UpdateStmt": case "DeleteStmt":
      addTable(node.relation as ParseNode);
      for (const item of ((node.fromClause ?? node.usingClause) as unknown[] | undefined) ?? []) fromItem(item, true);
      break;
    case "InsertStmt":
      addTable(node.relation as ParseNode);
      break;
  }
  for (const term of conjuncts(node.whereClause)) {
    collectEquality(term, equalities);
    pinTerms.push(term);
  }

  // Which sharded use a column reference is the key of: alias.col, or an unqualified col that is
  // the key column of exactly one sharded table here.
  const keyOf = (names: string[]): number | undefined => {
    const col = names[names.length - 1];
    if (names.length >= 2) {
      const qual = names[names.length - 2];
      const i = uses.findIndex((u) => u.role === "sharded" && u.alias === qual && u.keyColumn === col && !u.keyRenamed);
      return i < 0 ? undefined : i;
    }
    const found = uses.flatMap((u, i) => (u.role === "sharded" && u.keyColumn === col && !u.keyRenamed ? [i] : []));
    return found.length === 1 ? found[0] : undefined;
  };

  // Co-located groups: union-find over sharded uses, joined by key = key.
  const parent = uses.map((_, i) => i);
  const find = (i: number): number => (parent[i] === i ? i : (parent[i] = find(parent[i])));
  for (const [l, r] of equalities) {
    if (l && typeof l === "object" && "using" in l) {
      const col = (l as { using: string }).using;
      const members = uses.flatMap((u, i) => (u.role === "sharded" && u.keyColumn === col && !u.keyRenamed ? [i] : []));
      for (const m of members.slice(1)) parent[find(m)] = find(members[0]);
      continue;
    }
    const a = keyOf(columnRef(l)!);
    const b = keyOf(columnRef(r)!);
    if (a !== undefined && b !== undefined) parent[find(a)] = find(b);
  }
  const groupIds = new Map<number, number>();
  uses.forEach((u, i) => {
    if (u.role !== "sharded") return;
    const root = find(i);
    if (!groupIds.has(root)) groupIds.set(root, groupIds.size);
    u.group = groupIds.get(root);
  });
  const pins: (Pin | undefined)[] = Array.from({ length: groupIds.size }, () => undefined);
  for (const term of pinTerms) {
    const pin = pinOf(term, keyOf);
    if (pin && pins[uses[pin.use].group!] === undefined) pins[uses[pin.use].group!] = pin.pin;
  }
  // A subquery's group joined on its key to a sharded table of an enclosing level (o.account_id =
  // a.id) reads only rows with the key of a row the shard holds: rows of that same shard.
  const correlated: (string | undefined)[] = pins.map(() => undefined);
  if (ctx.parent) {
    for (const term of pinTerms) {
      const e = field(term, "A_Expr");
      if (e?.kind !== "AEXPR_OP" || !isBinaryOp(e, "=")) continue;
      for (const [mine, theirs] of [[e.lexpr, e.rexpr], [e.rexpr, e.lexpr]]) {
        const names = columnRef(mine);
        const use = names && keyOf(names);
        const outer = use !== undefined ? outerKey(columnRef(theirs), scope) : undefined;
        if (outer) correlated[uses[use!].group!] ??= `${names!.join(".")} = ${outer}`;
      }
    }
  }

  if (kind === "InsertStmt" && uses[0]?.role === "sharded") insertKeys = insertRows(node, uses[0], refusals);
  if (kind === "UpdateStmt" && uses[0]?.role === "sharded") {
    for (const t of node.targetList as ParseNode[]) {
      if ((t.ResTarget as ParseNode).name === uses[0].keyColumn) {
        refusals.push(refusal(`UPDATE of the shard key ${uses[0].name}.${uses[0].keyColumn}`, "a new key may belong to another shard: DELETE the row and INSERT it with the new key", true));
      }
    }
  }

  // Each shard holds a copy of a reference table: a write to it that reads sharded rows (UPDATE … FROM,
  // DELETE … USING) would change each copy by the rows of its own shard, and the copies would differ.
  if ((kind === "UpdateStmt" || kind === "DeleteStmt") && uses[0]?.role === "reference") {
    const sharded = uses.find((u) => u.role === "sharded");
    if (sharded) {
      refusals.push(refusal(`a write to the reference table ${uses[0].name} that reads the sharded table ${sharded.name}`,
        "every shard changes its own copy, and would do so by the rows of its shard only: read the values first and write them as constants or parameters", true));
    }
  }

  // Subqueries, CTEs and sublinks: each read as its own level. Their sharded tables must be pinned
  // (checked per call: on the statement's one shard) or joined on the key to an enclosing level's.
  const nested: NestedPin[] = [];
  const correlations: string[] = [];
  const absorb = (inner: RoutingAnalysis): void => {
    refusals.push(...inner.refusals.filter((r) => r.anyShards));
    nested.push(...inner.nested);
    correlations.push(...inner.correlations);
    inner.pins.forEach((pin, g) => {
      const t = inner.tables.find((u) => u.group === g)!;
      if (pin) nested.push({ table: t.name, relation: t.relation, column: t.keyColumn!, pin });
      else if (inner.correlated[g]) correlations.push(`${t.name} joined on ${inner.correlated[g]}`);
      else refusals.push(subqueryRefusal(t.name));
    });
  };
  const child: Context = { ctes, parent: scope };
  const visit = (tag: string, n: ParseNode): boolean | void => {
    if (tag === "CommonTableExpr" || tag === "LockingClause") return false; // CTEs below; FOR UPDATE OF names tables above
    if (tag === "SubLink" || tag === "RangeSubselect") {
      const select = tag === "SubLink" ? n.subselect : n.subquery;
      if (field(select, "SelectStmt")) absorb(analyzeScope(select as ParseNode, tables, false, child));
      walk(n.testexpr, visit);
      return false;
    }
    if (tag !== "RangeVar" || topLevel.has(n)) return;
    if (isShardedTable(tables, n, ctes)) {
      refusals.push(refusal(`a subquery, CTE or set operation reading the sharded table ${String(n.relname)}`,
        "the rows it needs may be on other shards: run it as its own statement, or join the table on its shard key", true));
    }
  };
  walk(node, visit);
  cteList.forEach((cte, i) => {
    // A CTE sees the CTEs before it (all of its WITH when RECURSIVE) and those around the statement.
    const visible = new Set([...ctx.ctes, ...(withClause!.recursive ? cteNames : cteNames.slice(0, i))]);
    const query = cte.ctequery;
    if (field(query, "SelectStmt")) return absorb(analyzeScope(query as ParseNode, tables, false, { ctes: visible, parent: ctx.parent }));
    // A data-modifying CTE: not read for keys. Its target is no tagged RangeVar, hence the list.
    const [dmlKind, dml] = unwrap(query)!;
    walk([{ RangeVar: dml.relation }, dml], (tag, n) => {
      if (tag === "RangeVar" && isShardedTable(tables, n, visible)) {
        refusals.push(refusal(`a data-modifying CTE (WITH … ${dmlKind.replace(/Stmt$/, "").toUpperCase()}) on the sharded table ${String(n.relname)}`, "run that write as its own statement", true));
        return false;
      }
    });
    // It writes every shard's copy: the statement around it must not read the rows of some shards only.
    const target = dml.relation as ParseNode;
    const sharded = uses.find((u) => u.role === "sharded");
    if (sharded && !(target.schemaname === undefined && visible.has(String(target.relname))) &&
        lookupRole(tables, target.schemaname as string | undefined, String(target.relname)).role === "reference") {
      refusals.push(refusal(`a data-modifying CTE on the reference table ${String(target.relname)} in a statement reading the sharded table ${sharded.name}`,
        "every shard holds a copy to change, and the statement would run on the shards of its keys only: run that write as its own statement", true));
    }
  });

  if (groupIds.size > 1) {
    const names = [...groupIds.keys()].map((root) => uses[root].alias);
    refusals.push(refusal(`a join of the sharded tables ${names.join(" and ")} not on their shard keys`,
      "join them on the shard key columns (rows that match then live on one shard), or pin every table's key to one shard"));
  }
  return { statementKind: kind, write, tables: uses, pins, correlated, insertKeys, nested, correlations, refusals, keyOf };
}

/** A table reference that names a sharded table, not a CTE in force. */
function isShardedTable(tables: TablesConfig, rv: ParseNode, ctes: ReadonlySet<string>): boolean {
  if (!rv.schemaname && ctes.has(String(rv.relname))) return false;
  return lookupRole(tables, rv.schemaname as string | undefined, String(rv.relname)).role === "sharded";
}

function subqueryRefusal(table: string): Refusal {
  return refusal(`a subquery or CTE reading the sharded table ${table} without its shard key`,
    "the rows it needs may be on other shards: pin its key (= value, IN or = ANY) to the statement's shard, join it on the key to the outer table, or run it as its own statement", true);
}

/** A qualified column of an enclosing level (a.id) that is the key of a sharded table there: "a.id". */
function outerKey(names: string[] | undefined, scope: Scope): string | undefined {
  if (names?.length !== 2) return undefined;
  const [qual, col] = names;
  if (scope.names.has(qual)) return undefined;
  for (let s = scope.parent; s; s = s.parent) {
    if (!s.names.has(qual)) continue;
    const u = s.uses.find((x) => x.role === "sharded" && x.alias === qual && x.keyColumn === col && !x.keyRenamed);
    return u ? `${qual}.${col}` : undefined;
  }
  return undefined;
}

/** The names a FROM item other than a table or join is referenced by (more is safe: fewer correlations). */
function fromNames(item: unknown, out: Set<string>): void {
  const [tag, n] = unwrap(item) ?? [];
  if (!n) return;
  const alias = (n.alias as ParseNode | undefined)?.aliasname as string | undefined;
  if (alias) out.add(alias);
  if (tag === "RangeTableSample") fromNames(n.relation, out);
  if (tag === "RangeVar" && !alias) out.add(String(n.relname));
  if (tag === "RangeFunction" && !alias) {
    walk(n.functions, (t, f) => {
      if (t !== "FuncCall") return;
      out.add(funcName(f));
      return false;
    });
  }
}

function collectEquality(term: unknown, out: [unknown, unknown][]): void {
  const e = field(term, "A_Expr");
  if (e?.kind === "AEXPR_OP" && isBinaryOp(e, "=") && columnRef(e.lexpr) && columnRef(e.rexpr)) out.push([e.lexpr, e.rexpr]);
}

/** `key = value`, `value = key`, `key IN (values…)`, `key = ANY(array)`. */
function pinOf(term: unknown, keyOf: (names: string[]) => number | undefined): { use: number; pin: Pin } | undefined {
  const e = field(term, "A_Expr");
  if (!e || !isBinaryOp(e, "=")) return undefined;
  if (e.kind === "AEXPR_OP") {
    for (const [col, val] of [[e.lexpr, e.rexpr], [e.rexpr, e.lexpr]]) {
      const names = columnRef(col);
      const use = names && keyOf(names);
      const key = keySource(val);
      if (use !== undefined && key) return { use, pin: { keys: [key], any: false } };
    }
  }
  if (e.kind === "AEXPR_IN") {
    const names = columnRef(e.lexpr);
    const use = names && keyOf(names);
    const items = (field(e.rexpr, "List")?.items as unknown[] | undefined) ?? [];
    const keys = items.map(keySource);
    if (use !== undefined && items.length && keys.every((k) => k)) return { use, pin: { keys: keys as KeySource[], any: false } };
  }
  if (e.kind === "AEXPR_OP_ANY") {
    const names = columnRef(e.lexpr);
    const use = names && keyOf(names);
    const keys = use !== undefined ? arrayKeySources(e.rexpr) : undefined;
    if (keys) return { use: use!, pin: { keys, any: true } };
  }
  return undefined;
}

function insertRows(node: ParseNode, table: TableUse, refusals: Refusal[]): KeySource[] | undefined {
  const cols = (node.cols as ParseNode[] | undefined)?.map((c) => String((c.ResTarget as ParseNode).name));
  const select = field(node.selectStmt, "SelectStmt");
  if (!node.selectStmt) {
    refusals.push(refusal(`INSERT … DEFAULT VALUES into the sharded table ${table.name}`, `give ${table.keyColumn} a value: ${newIds}`, true));
    return undefined;
  }
  if (!select?.valuesLists) {
    refusals.push(refusal(`INSERT … SELECT into the sharded table ${table.name}`, `INSERT … VALUES with ${table.keyColumn} in the column list, so each row goes to its key's shard`, true));
    return undefined;
  }
  const at = cols?.indexOf(table.keyColumn!) ?? -1;
  if (at < 0) {
    refusals.push(refusal(`INSERT into the sharded table ${table.name} without ${table.keyColumn} in its column list`, `name the columns, ${table.keyColumn} among them, and give each row its key (${newIds})`, true));
    return undefined;
  }
  const keys: KeySource[] = [];
  for (const row of select.valuesLists as ParseNode[]) {
    const item = ((row.List as ParseNode).items as unknown[])[at];
    const key = keySource(item);
    if (!key) {
      refusals.push(fromSequence(item)
        ? refusal(`an INSERT row whose shard key ${table.name}.${table.keyColumn} is DEFAULT or a sequence's nextval()`, `the router must know the key to pick the shard, and a sequence counts on each shard alone (two shards hand out the same ids): ${newIds}`, true)
        : refusal(`an INSERT row whose shard key ${table.keyColumn} is an expression`, `give the key as a constant or a parameter ($n); ${newIds}`, true));
      return undefined;
    }
    keys.push(key);
  }
  return keys;
}

const newIds = "for new ids, take them from the router (NextIds; router.nextId() or router.nextIds(n) in the SDK) and pass them as parameters";

/** DEFAULT, or a call of nextval() (under casts): a key a sequence would make. */
function fromSequence(node: unknown): boolean {
  if (field(node, "SetToDefault")) return true;
  const cast = field(node, "TypeCast");
  if (cast) return fromSequence(cast.arg);
  const call = field(node, "FuncCall");
  return !!call && funcName(call) === "nextval";
}

export interface RoutingDecision {
  /** Shard names, in shard map order. */
  shards: string[];
  /** Why those shards, in words (`reasonOf`); a function until asked: the hot path never asks. */
  why: string | (() => string);
  /** Key values by co-located group (for Explain). */
  keys: { table: string; column: string; values: (string | null)[]; group: number }[];
  /** INSERT: the shard of each VALUES row. */
  rowShards?: string[];
  /** The refusal that applies to this call, if any. */
  refused?: Refusal;
}

/** What one call's routing depends on, precomputed once per analysis. */
interface Prepared {
  /** The first sharded table of each co-located group. */
  groupTables: TableUse[];
  unknownNames: string;
  anyShards?: Refusal;
  multiShard?: Refusal;
  single?: TableUse;
  singleKey?: KeySource;
  /** Subqueries whose keys are checked (pinned) or said (correlated) per call. */
  nested: boolean;
}
const prepared = new WeakMap<RoutingAnalysis, Prepared>();

function prepare(a: RoutingAnalysis): Prepared {
  const groupTables = a.pins.map((_, g) => a.tables.find((u) => u.group === g)!);
  const p: Prepared = {
    groupTables,
    unknownNames: a.tables.filter((t) => t.role === "unknown").map((t) => t.name).join(", "),
    anyShards: a.refusals.find((r) => r.anyShards),
    multiShard: a.refusals.find((r) => !r.anyShards),
    nested: a.nested.length > 0 || a.correlations.length > 0,
  };
  // The common case: one group pinned by one value (`where id = $1`), no subquery.
  const only = a.pins.length === 1 ? a.pins[0]?.keys : undefined;
  if (!a.insertKeys && !p.unknownNames && !p.nested && only?.length === 1 && only[0].kind !== "array") {
    p.single = groupTables[0];
    p.singleKey = only[0];
  }
  prepared.set(a, p);
  return p;
}


export function reasonOf(d: RoutingDecision): string {
  return typeof d.why === "string" ? d.why : d.why();
}

type Decision = RoutingDecision;

/** The refusal that applies: one for any shards count, or one for a statement on several shards. */
function settle(d: Decision, always: Refusal | undefined, multiShard: Refusal | undefined): Decision {
  const refused = always ?? (d.shards.length > 1 ? multiShard : undefined);
  if (refused) d.refused = refused;
  return d;
}
function decision(shards: string[], why: RoutingDecision["why"], keys: RoutingDecision["keys"]): Decision {
  return { shards, why, keys, rowShards: undefined, refused: undefined };
}

/**
 * The shards for one call. `everyShard`: the shards a statement for all goes to (owners of keys for a
 * read; every configured shard for a write, so spare shards get what a reshard will fill). `columnsOf`:
 * the tables' columns known (key-canonical.ts: a key is placed by its value as its column's type reads it).
 */
export function routeAnalysis(a: RoutingAnalysis, params: readonly Value[], map: ShardMap, everyShard: readonly string[], columnsOf?: ColumnsOf): RoutingDecision | Promise<RoutingDecision> {
  // No closures bound to names here: under tsx (keepNames) each one costs a defineProperty per call.
  const p = prepared.get(a) ?? prepare(a);
  const always = map.shards.length > 1 ? p.anyShards : undefined;
  if (p.single) {
    // Hot path: `where key = $1`.
    const t = p.single;
    const text = keyText(p.singleKey!, params);
    const value = text === null || !columnsOf ? text : canonicalKey(text, columnsOf(t.relation)?.get(t.keyColumn!), t.name, t.keyColumn!);
    const keys = [{ table: t.name, column: t.keyColumn!, values: [value], group: 0 }];
    if (value === null) return settle(decision(everyShard.slice(0, 1), () => describeKeys(t, [value]), keys), always, p.multiShard);
    const placed = map.strategy.place(value);
    if (placed instanceof Promise) return placed.then((x) => settle(decision([x.shard], () => describeKeys(t, [value]), keys), always, p.multiShard));
    return settle(decision([placed.shard], () => describeKeys(t, [value]), keys), always, p.multiShard);
  }
  const d = routeStatement(a, p, params, map, everyShard, always, columnsOf);
  if (!p.nested) return d;
  return d instanceof Promise ? d.then((x) => confine(a, x, params, map, columnsOf)) : confine(a, d, params, map, columnsOf);
}

/** Decisions any one shard answers (reads of no sharded row, keys all NULL): subqueries may pick it. */
const anyOne = new WeakSet<Decision>();
function oneOfAny(d: Decision): Decision {
  anyOne.add(d);
  return d;
}

/** Everything but the hot path, subqueries left to `confine`. */
function routeStatement(a: RoutingAnalysis, p: Prepared, params: readonly Value[], map: ShardMap, everyShard: readonly string[], always: Refusal | undefined, columnsOf: ColumnsOf | undefined): Decision | Promise<Decision> {
  if (a.insertKeys) {
    const t = p.groupTables[0];
    const type = columnsOf?.(t.relation)?.get(t.keyColumn!);
    const values = a.insertKeys.map((k) => {
      const text = keyText(k, params);
      return text === null ? null : canonicalKey(text, type, t.name, t.keyColumn!);
    });
    if (values.some((v) => v === null)) throw new ConnectError(`an INSERT row into ${t.name} has a NULL shard key ${t.keyColumn}`, Code.InvalidArgument);
    return gather(values.map((v) => placeOn(map, v!)), (rowShards) => {
      const d = decision(inMapOrder(rowShards, everyShard), () => `INSERT into ${t.name}: ${describeKeys(t, values)}`, [{ table: t.name, column: t.keyColumn!, values, group: 0 }]);
      d.rowShards = rowShards;
      return settle(d, always, p.multiShard);
    });
  }
  if (p.unknownNames) {
    // Whether its rows are split over the shards or copied on each, only the config says: merging
    // every shard's rows could double them, so several shards are refused.
    const unknown = refusal(`${p.unknownNames.includes(",") ? "the tables" : "the table"} ${p.unknownNames}, not in the tables config,`,
      "add it to tables.sharded (with its key column) or to tables.reference; ExecuteOnShard and ExecuteOnAll run a statement as written");
    return settle(decision([...everyShard], () => `${p.unknownNames} ${p.unknownNames.includes(",") ? "are" : "is"} not in the tables config: every shard`, []), always, p.multiShard ?? unknown);
  }
  if (p.groupTables.length === 0) {
    if (a.write || a.tables.length === 0 && a.statementKind !== "SelectStmt") {
      return settle(decision([...everyShard], () => (a.tables.length ? "writes reference tables: every shard" : `a ${a.statementKind.replace(/Stmt$/, "")} statement: every shard`), []), always, p.multiShard);
    }
    return oneOfAny(settle(decision(everyShard.slice(0, 1), a.tables.length ? "reads reference tables only: one shard" : "reads no table: one shard", []), always, p.multiShard));
  }
  const unpinned = a.pins.indexOf(undefined);
  if (unpinned >= 0) {
    const t = p.groupTables[unpinned];
    return settle(decision([...everyShard], () => `no shard key in WHERE (${t.name}.${t.keyColumn} = …, IN (…) or = ANY(…)): every shard`, []), always, p.multiShard);
  }
  const keys = a.pins.map((pin, g) => {
    const t = p.groupTables[g];
    const type = columnsOf?.(t.relation)?.get(t.keyColumn!);
    return { table: t.name, column: t.keyColumn!, values: keyTexts(pin!.keys, params, t.alias, t.keyColumn!, type), group: g };
  });
  // `key = NULL` matches no row: any one shard gives the (empty) answer.
  const placed = keys.flatMap((k) => k.values.filter((v): v is string => v !== null).map((v) => placeOn(map, v)));
  return gather(placed, (owners) => {
    const shards = owners.length ? inMapOrder(owners, everyShard) : everyShard.slice(0, 1);
    const d = settle(decision(shards, () => keys.map((k, g) => describeKeys({ name: k.table, keyColumn: k.column }, k.values, a.pins[g]!.any)).join("; "), keys), always, p.multiShard);
    return owners.length ? d : oneOfAny(d);
  });
}

/**
 * Subqueries pinned to keys: answered only on the shard holding those keys, which must then be the
 * one shard the statement runs on (a statement any shard answers moves to it). Correlated ones need
 * nothing; both are said in the reason.
 */
function confine(a: RoutingAnalysis, d: Decision, params: readonly Value[], map: ShardMap, columnsOf: ColumnsOf | undefined): Decision | Promise<Decision> {
  const values = a.nested.map((n) => keyTexts(n.pin.keys, params, n.table, n.column, columnsOf?.(n.relation)?.get(n.column)));
  const placed: (string | Promise<string>)[] = [];
  for (const vs of values) for (const v of vs) if (v !== null) placed.push(placeOn(map, v));
  return gather(placed, (owners) => confined(a, d, values, owners, map));
}

function confined(a: RoutingAnalysis, d: Decision, values: (string | null)[][], owners: string[], map: ShardMap): Decision {
  const outerWhy = d.why;
  d.why = () => `${typeof outerWhy === "string" ? outerWhy : outerWhy()}; ${nestedReason(a, values)}`;
  if (d.refused || owners.length === 0) return d;
  const needed = owners.every((o) => o === owners[0]) ? [owners[0]] : [...new Set(owners)];
  const free = anyOne.has(d);
  if (needed.length === 1 && free) {
    d.shards = needed;
    d.why = () => `${nestedReason(a, values)}: the shard of those keys (the statement itself reads no sharded row)`;
    return d;
  }
  if (map.shards.length < 2 || needed.length === 1 && d.shards.length === 1 && d.shards[0] === needed[0]) return d;
  const construct = free
    ? `subqueries or CTEs reading keys of several shards (${pinnedKeys(a, values)}: on ${needed.join(" and ")})`
    : `a subquery or CTE reading ${pinnedKeys(a, values)} (on ${needed.join(" and ")}) in a statement that runs on ${d.shards.length === 1 ? d.shards[0] : `${d.shards.length} shards`}`;
  d.refused = refusal(construct, "a subquery sees only the rows of the shard the statement runs on: pin it to a key of that shard, or run it as its own statement", true);
  return d;
}

function pinnedKeys(a: RoutingAnalysis, values: (string | null)[][]): string {
  return a.nested.map((n, i) => describeKeys({ name: n.table, keyColumn: n.column }, values[i], n.pin.any)).join(", ");
}

/** The subqueries in the reason: their pinned keys, and the ones joined on the outer row's key. */
function nestedReason(a: RoutingAnalysis, values: (string | null)[][]): string {
  const parts = a.nested.length ? [`subquery ${pinnedKeys(a, values)}`] : [];
  for (const c of a.correlations) parts.push(`subquery ${c} (the outer row's shard)`);
  return parts.join("; ");
}

function placeOn(map: ShardMap, key: string): string | Promise<string> {
  const x = map.strategy.place(key);
  return x instanceof Promise ? x.then((y) => y.shard) : x.shard;
}

function describeKeys(t: { name: string; keyColumn?: string }, values: (string | null)[], any = false): string {
  const shown = values.slice(0, 10).map((v) => (v === null ? "NULL" : JSON.stringify(v))).join(", ");
  const more = values.length > 10 ? `, … (${values.length} values)` : "";
  if (any) return `${t.name}.${t.keyColumn} = ANY (${values.length ? shown + more : "an empty array"})`;
  return values.length === 1 ? `${t.name}.${t.keyColumn} = ${shown}` : `${t.name}.${t.keyColumn} in (${shown}${more})`;
}

function inMapOrder(owners: readonly string[], order: readonly string[]): string[] {
  if (owners.length === 1) return [owners[0]];
  const set = new Set(owners);
  const ordered = order.filter((s) => set.has(s));
  for (const s of set) if (!ordered.includes(s)) ordered.push(s);
  return ordered;
}

/** Runs `then` on the values, synchronously when none is a promise (the hot path stays sync). */
function gather<T, R>(values: (T | Promise<T>)[], then: (v: T[]) => R): R | Promise<R> {
  if (values.some((v) => v instanceof Promise)) return Promise.all(values).then(then);
  return then(values as T[]);
}
