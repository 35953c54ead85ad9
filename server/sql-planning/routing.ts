// Which shards a statement needs, read off its tree with the tables config. The static part (which
// tables, which key columns, where the key values come from) is computed once per statement text;
// `routeAnalysis` turns it into shards per call, with that call's parameters and shard map.
//
// Sharded tables joined on their shard keys (a.id = b.account_id) are one "co-located group": their
// matching rows live on one shard. A key pinned for any member (`= value`, `IN (…)` in WHERE or an
// inner join's ON, an INSERT's VALUES) pins the group. Two groups (sharded tables joined on anything
// else) are answered only when both are pinned to one shard; otherwise refused.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import type { ShardMap } from "../placement/shard-map.js";
import { type Refusal, refusal } from "./refusals.js";
import { columnRef, conjuncts, field, isBinaryOp, type KeySource, keySource, type ParseNode, unwrap, walk } from "./tree.js";

export interface TablesConfig {
  sharded: Record<string, string>;
  reference: string[];
}

export interface TableUse {
  /** As the statement names it (schema-qualified when it was). */
  name: string;
  /** The alias, or the table's own name. */
  alias: string;
  role: "sharded" | "reference" | "unknown";
  keyColumn?: string;
  /** Sharded tables: its co-located group. */
  group?: number;
}

export interface RoutingAnalysis {
  statementKind: string;
  write: boolean;
  tables: TableUse[];
  /** Per co-located group: the key values that pin it (undefined: not pinned). */
  pins: (KeySource[] | undefined)[];
  /** INSERT into a sharded table: each VALUES row's key. */
  insertKeys?: KeySource[];
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
  const [kind, node] = unwrap(stmt)!;
  const uses: TableUse[] = [];
  const refusals: Refusal[] = [];
  const ctes = new Set<string>();
  const topLevel = new Set<ParseNode>();
  const equalities: [unknown, unknown][] = [];
  const pinTerms: unknown[] = [];
  const withClause = node.withClause as ParseNode | undefined;
  for (const cte of (withClause?.ctes as ParseNode[] | undefined) ?? []) ctes.add(String((cte.CommonTableExpr as ParseNode).ctename));

  const addTable = (rv: ParseNode): void => {
    topLevel.add(rv);
    const rel = String(rv.relname);
    if (!rv.schemaname && ctes.has(rel)) return; // a CTE: its own tables are checked below
    const { role, keyColumn } = lookupRole(tables, rv.schemaname as string | undefined, rel);
    const name = rv.schemaname ? `${String(rv.schemaname)}.${rel}` : rel;
    const alias = ((rv.alias as ParseNode | undefined)?.aliasname as string | undefined) ?? rel;
    uses.push(keyColumn ? { name, alias, role, keyColumn } : { name, alias, role });
  };
  /** FROM items; `inner`: every join above is an inner join, so its ON terms restrict the result. */
  const fromItem = (item: unknown, inner: boolean): void => {
    const rv = field(item, "RangeVar");
    if (rv) return addTable(rv);
    const join = field(item, "JoinExpr");
    if (!join) return; // a subquery or function in FROM: its tables are checked below
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
          if (tag === "RangeVar" && lookupRole(tables, n.schemaname as string | undefined, String(n.relname)).role === "sharded" && !refusals.length) {
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
      const i = uses.findIndex((u) => u.role === "sharded" && u.alias === qual && u.keyColumn === col);
      return i < 0 ? undefined : i;
    }
    const found = uses.flatMap((u, i) => (u.role === "sharded" && u.keyColumn === col ? [i] : []));
    return found.length === 1 ? found[0] : undefined;
  };

  // Co-located groups: union-find over sharded uses, joined by key = key.
  const parent = uses.map((_, i) => i);
  const find = (i: number): number => (parent[i] === i ? i : (parent[i] = find(parent[i])));
  for (const [l, r] of equalities) {
    if (l && typeof l === "object" && "using" in l) {
      const col = (l as { using: string }).using;
      const members = uses.flatMap((u, i) => (u.role === "sharded" && u.keyColumn === col ? [i] : []));
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
  const pins: (KeySource[] | undefined)[] = Array.from({ length: groupIds.size }, () => undefined);
  for (const term of pinTerms) {
    const pin = pinOf(term, keyOf);
    if (pin && pins[uses[pin.use].group!] === undefined) pins[uses[pin.use].group!] = pin.keys;
  }

  if (kind === "InsertStmt" && uses[0]?.role === "sharded") insertKeys = insertRows(node, uses[0], refusals);
  if (kind === "UpdateStmt" && uses[0]?.role === "sharded") {
    for (const t of node.targetList as ParseNode[]) {
      if ((t.ResTarget as ParseNode).name === uses[0].keyColumn) {
        refusals.push(refusal(`UPDATE of the shard key ${uses[0].name}.${uses[0].keyColumn}`, "a new key may belong to another shard: DELETE the row and INSERT it with the new key", true));
      }
    }
  }
  // Sharded tables read anywhere but the top-level FROM (subqueries, CTEs, sublinks): the shard the
  // statement runs on may not hold the rows they need.
  walk(node, (tag, n) => {
    if (tag !== "RangeVar" || topLevel.has(n)) return;
    const { role } = lookupRole(tables, n.schemaname as string | undefined, String(n.relname));
    if (role === "sharded" && !(ctes.has(String(n.relname)) && !n.schemaname)) {
      refusals.push(refusal(`a subquery, CTE or set operation reading the sharded table ${String(n.relname)}`,
        "the rows it needs may be on other shards: run it as its own statement, or join the table on its shard key", true));
    }
  });
  if (groupIds.size > 1) {
    const names = [...groupIds.keys()].map((root) => uses[root].alias);
    refusals.push(refusal(`a join of the sharded tables ${names.join(" and ")} not on their shard keys`,
      "join them on the shard key columns (rows that match then live on one shard), or pin every table's key to one shard"));
  }
  return { statementKind: kind, write, tables: uses, pins, insertKeys, refusals, keyOf };
}

function collectEquality(term: unknown, out: [unknown, unknown][]): void {
  const e = field(term, "A_Expr");
  if (e?.kind === "AEXPR_OP" && isBinaryOp(e, "=") && columnRef(e.lexpr) && columnRef(e.rexpr)) out.push([e.lexpr, e.rexpr]);
}

/** `key = value`, `value = key`, `key IN (values…)`. */
function pinOf(term: unknown, keyOf: (names: string[]) => number | undefined): { use: number; keys: KeySource[] } | undefined {
  const e = field(term, "A_Expr");
  if (!e || !isBinaryOp(e, "=")) return undefined;
  if (e.kind === "AEXPR_OP") {
    for (const [col, val] of [[e.lexpr, e.rexpr], [e.rexpr, e.lexpr]]) {
      const names = columnRef(col);
      const use = names && keyOf(names);
      const key = keySource(val);
      if (use !== undefined && key) return { use, keys: [key] };
    }
  }
  if (e.kind === "AEXPR_IN") {
    const names = columnRef(e.lexpr);
    const use = names && keyOf(names);
    const items = (field(e.rexpr, "List")?.items as unknown[] | undefined) ?? [];
    const keys = items.map(keySource);
    if (use !== undefined && items.length && keys.every((k) => k)) return { use, keys: keys as KeySource[] };
  }
  return undefined;
}

function insertRows(node: ParseNode, table: TableUse, refusals: Refusal[]): KeySource[] | undefined {
  const cols = (node.cols as ParseNode[] | undefined)?.map((c) => String((c.ResTarget as ParseNode).name));
  const select = field(node.selectStmt, "SelectStmt");
  if (!select?.valuesLists) {
    refusals.push(refusal(`INSERT … SELECT (or DEFAULT VALUES) into the sharded table ${table.name}`, `INSERT … VALUES with ${table.keyColumn} in the column list, so each row goes to its key's shard`, true));
    return undefined;
  }
  const at = cols?.indexOf(table.keyColumn!) ?? -1;
  if (at < 0) {
    refusals.push(refusal(`INSERT into the sharded table ${table.name} without ${table.keyColumn} in its column list`, `name the columns, ${table.keyColumn} among them, and give each row its key`, true));
    return undefined;
  }
  const keys: KeySource[] = [];
  for (const row of select.valuesLists as ParseNode[]) {
    const key = keySource(((row.List as ParseNode).items as unknown[])[at]);
    if (!key) {
      refusals.push(refusal(`an INSERT row whose shard key ${table.keyColumn} is an expression or DEFAULT`, "give the key as a constant or a parameter ($n)", true));
      return undefined;
    }
    keys.push(key);
  }
  return keys;
}

/** The text a key value is placed by: a constant's text, or the parameter as its decimal/string text. */
export function keyText(key: KeySource, params: readonly Value[]): string | null {
  if (key.kind === "null") return null;
  if (key.kind === "const") return key.text;
  const value = params[key.number - 1];
  if (!value) throw new ConnectError(`the statement uses $${key.number} as a shard key, but ${params.length} parameter(s) were given`, Code.InvalidArgument);
  switch (value.kind.case) {
    case "nullValue": case undefined: return null;
    case "int64Value": return value.kind.value.toString();
    case "stringValue": case "numericValue": case "uuidValue": case "dateValue": return value.kind.value;
    case "doubleValue": return Number.isInteger(value.kind.value) ? String(value.kind.value) : String(value.kind.value);
    case "boolValue": return String(value.kind.value);
    default: throw new ConnectError(`parameter $${key.number} is a shard key; a ${value.kind.case} cannot be one`, Code.InvalidArgument);
  }
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
}
const prepared = new WeakMap<RoutingAnalysis, Prepared>();

function prepare(a: RoutingAnalysis): Prepared {
  const groupTables = a.pins.map((_, g) => a.tables.find((u) => u.group === g)!);
  const p: Prepared = {
    groupTables,
    unknownNames: a.tables.filter((t) => t.role === "unknown").map((t) => t.name).join(", "),
    anyShards: a.refusals.find((r) => r.anyShards),
    multiShard: a.refusals.find((r) => !r.anyShards),
  };
  // The common case: one group pinned by one value (`where id = $1`).
  if (!a.insertKeys && !p.unknownNames && a.pins.length === 1 && a.pins[0]?.length === 1) {
    p.single = groupTables[0];
    p.singleKey = a.pins[0][0];
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
 * read; every configured shard for a write, so spare shards get what a reshard will fill).
 */
export function routeAnalysis(a: RoutingAnalysis, params: readonly Value[], map: ShardMap, everyShard: readonly string[]): RoutingDecision | Promise<RoutingDecision> {
  // No closures bound to names here: under tsx (keepNames) each one costs a defineProperty per call.
  const p = prepared.get(a) ?? prepare(a);
  const always = map.shards.length > 1 ? p.anyShards : undefined;
  if (p.single) {
    // Hot path: `where key = $1`.
    const t = p.single;
    const value = keyText(p.singleKey!, params);
    const keys = [{ table: t.name, column: t.keyColumn!, values: [value], group: 0 }];
    if (value === null) return settle(decision(everyShard.slice(0, 1), () => describeKeys(t, [value]), keys), always, p.multiShard);
    const placed = map.strategy.place(value);
    if (placed instanceof Promise) return placed.then((x) => settle(decision([x.shard], () => describeKeys(t, [value]), keys), always, p.multiShard));
    return settle(decision([placed.shard], () => describeKeys(t, [value]), keys), always, p.multiShard);
  }

  if (a.insertKeys) {
    const t = p.groupTables[0];
    const values = a.insertKeys.map((k) => keyText(k, params));
    if (values.some((v) => v === null)) throw new ConnectError(`an INSERT row into ${t.name} has a NULL shard key ${t.keyColumn}`, Code.InvalidArgument);
    return gather(values.map((v) => placeOn(map, v!)), (rowShards) => {
      const d = decision(inMapOrder(rowShards, everyShard), () => `INSERT into ${t.name}: ${describeKeys(t, values)}`, [{ table: t.name, column: t.keyColumn!, values, group: 0 }]);
      d.rowShards = rowShards;
      return settle(d, always, p.multiShard);
    });
  }
  if (p.unknownNames) {
    return settle(decision([...everyShard], () => `${p.unknownNames} ${p.unknownNames.includes(",") ? "are" : "is"} not in the tables config: every shard`, []), always, p.multiShard);
  }
  if (p.groupTables.length === 0) {
    if (a.write || a.tables.length === 0 && a.statementKind !== "SelectStmt") {
      return settle(decision([...everyShard], () => (a.tables.length ? "writes reference tables: every shard" : `a ${a.statementKind.replace(/Stmt$/, "")} statement: every shard`), []), always, p.multiShard);
    }
    return settle(decision(everyShard.slice(0, 1), a.tables.length ? "reads reference tables only: one shard" : "reads no table: one shard", []), always, p.multiShard);
  }
  const unpinned = a.pins.indexOf(undefined);
  if (unpinned >= 0) {
    const t = p.groupTables[unpinned];
    return settle(decision([...everyShard], () => `no shard key in WHERE (${t.name}.${t.keyColumn} = … or IN (…)): every shard`, []), always, p.multiShard);
  }
  const keys = a.pins.map((pin, g) => {
    const t = p.groupTables[g];
    return { table: t.name, column: t.keyColumn!, values: pin!.map((k) => keyText(k, params)), group: g };
  });
  // `key = NULL` matches no row: any one shard gives the (empty) answer.
  const placed = keys.flatMap((k) => k.values.filter((v): v is string => v !== null).map((v) => placeOn(map, v)));
  return gather(placed, (owners) => {
    const shards = owners.length ? inMapOrder(owners, everyShard) : everyShard.slice(0, 1);
    return settle(decision(shards, () => keys.map((k) => describeKeys({ name: k.table, keyColumn: k.column }, k.values)).join("; "), keys), always, p.multiShard);
  });
}

function placeOn(map: ShardMap, key: string): string | Promise<string> {
  const x = map.strategy.place(key);
  return x instanceof Promise ? x.then((y) => y.shard) : x.shard;
}

function describeKeys(t: { name: string; keyColumn?: string }, values: (string | null)[]): string {
  const shown = values.slice(0, 10).map((v) => (v === null ? "NULL" : JSON.stringify(v))).join(", ");
  const more = values.length > 10 ? `, … (${values.length} values)` : "";
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
