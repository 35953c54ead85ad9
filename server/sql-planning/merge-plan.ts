// How the shards' results of a SELECT combine into the answer, read off its tree: the MergeSpec
// (ORDER BY → k-way merge keys on output columns; LIMIT/OFFSET applied after the merge, each shard
// asked for LIMIT limit+offset; GROUP BY and count/sum/min/max re-aggregated; avg asked of each shard
// as sum and count and divided after; DISTINCT as a GROUP BY of every output column), the edits the
// shards' statement needs for it, and what cannot be merged (refusals).
//
// Groups that contain the shard key (GROUP BY id, DISTINCT over a list holding id, a window
// PARTITION BY id) live whole on one shard: those need no re-aggregation and are never refused.
import { AggregateFunction, NullsOrder } from "../../gen/shardrouter/v1/router_pb.js";
import type { Edit } from "./shard-statement.js";
import { type Refusal, mergeableAggregates, refusal, unmergeableAggregates } from "./refusals.js";
import { columnRef, field, funcName, type ParseNode, shape, unwrap, walk } from "./tree.js";
import { groupEnd, tokenAt, tokenText } from "./sql-text.js";
import { type ColumnsOf, relationName } from "./table-schemas.js";

/** A LIMIT or OFFSET: a constant, a parameter ($n), or none. */
export type Bound = { kind: "const"; value: bigint } | { kind: "param"; number: number };

export interface AggregatePlan { column: string; function: AggregateFunction; sumColumn?: string; countColumn?: string }
export interface OrderPlan { column: string; descending: boolean; nulls: NullsOrder }

export interface MergeAnalysis {
  orderBy: OrderPlan[];
  limit?: Bound;
  offset?: Bound;
  groupBy: string[];
  aggregates: AggregatePlan[];
  distinct: boolean;
  /** Grouping (GROUP BY, aggregates or DISTINCT) re-done by the router; false when shard-local. */
  regroup: boolean;
  /** Edits to the statement text for the shards when it reaches several. */
  edits: Edit[];
  refusals: Refusal[];
  /**
   * GROUP BY names that are the output alias of another expression: PostgreSQL groups by an input
   * column of that name instead, so each is refused when a FROM table has one (`shadowedAlias`).
   * `read`: the statement reads a column of that name (the answer when the tables' columns are unknown).
   */
  groupAliases: { name: string; read: boolean }[];
  /** The FROM tables (by `relation`), or undefined when FROM has items whose columns are not looked up (subqueries, functions, CTEs). */
  fromRelations?: string[];
}

interface Output { name: string; shape?: string; star: boolean; target: ParseNode }

/** `isKey`: whether a column reference is the shard key of the statement's (single) co-located group. */
export function analyzeMerge(sql: string, select: ParseNode, isKey: (names: string[]) => boolean): MergeAnalysis {
  const refusals: Refusal[] = [];
  const edits: Edit[] = [];
  const targets = ((select.targetList as ParseNode[] | undefined) ?? []).map((t) => t.ResTarget as ParseNode);
  const outputs: Output[] = targets.map((t) => {
    const names = columnRef(t.val);
    const star = names?.[names.length - 1] === "*";
    return { name: columnName(t), shape: shape(t.val), star, target: t };
  });
  const hasStar = outputs.some((o) => o.star);

  /** The output column an ORDER BY / GROUP BY item names: position, output name, or same expression. */
  const outputOf = (node: unknown, clause: string): string | undefined => {
    const pos = field(node, "A_Const")?.ival as ParseNode | undefined;
    if (pos) {
      const n = Number(pos.ival ?? 0);
      const o = outputs[n - 1];
      if (!o || hasStar) {
        refusals.push(refusal(`${clause} ${n} after SELECT *`, `name the column in ${clause} (or list the columns)`));
        return undefined;
      }
      if (clause === "GROUP BY") groupPositions.push({ location: Number(field(node, "A_Const")!.location), n });
      return unique(o.name, clause); // the merge finds columns by name: a shared one is ambiguous
    }
    const names = columnRef(node);
    const named = names?.length === 1 && outputs.some((o) => o.name === names[0]);
    // ORDER BY a bare name means the output column of that name first, as Postgres reads it
    // (`select cast(x as text), x as y … order by x` sorts the text).
    if (named && clause === "ORDER BY") return unique(names[0], clause);
    const s = shape(node);
    const same = outputs.find((o) => o.shape === s);
    if (same) return unique(same.name, clause);
    // PostgreSQL groups by an input column of that name before an output alias: the shards would
    // group by the column, the merge by the alias's expression. Whether there is one, the tables'
    // columns tell (per call: `shadowedAlias`).
    if (named && clause === "GROUP BY") groupAliases.push({ name: names[0], read: columnsRead.has(names[0]) });
    if (named) return unique(names[0], clause);
    const last = names?.[names.length - 1];
    const plain = outputs.filter((o) => columnRef(o.target.val)?.at(-1) === last);
    if (names && plain.length === 1) return unique(plain[0].name, clause); // accounts.id for a selected id
    if (names && hasStar) return last; // a column of the table the star expands
    refusals.push(refusal(`${clause} an expression that is not in the select list`, `add it to the select list with an alias and ${clause} the alias`));
    return undefined;
  };
  /** Column names the statement reads (a GROUP BY alias of the same name would be shadowed by one). */
  const columnsRead = new Set<string>();
  const groupAliases: MergeAnalysis["groupAliases"] = [];
  walk([select.targetList, select.fromClause, select.whereClause, select.havingClause], (tag, n) => {
    if (tag !== "ColumnRef") return;
    const names = columnRef({ ColumnRef: n });
    if (names) columnsRead.add(names[names.length - 1]!);
  });
  /** GROUP BY positions: an avg split into sum and count before one moves it (see below). */
  const groupPositions: { location: number; n: number }[] = [];
  const unique = (name: string, clause: string): string | undefined => {
    if (outputs.filter((o) => o.name === name).length > 1) {
      refusals.push(refusal(`${clause} "${name}", a name two output columns share`, "give the columns distinct aliases"));
      return undefined;
    }
    return name;
  };

  // Shard-local groups: grouped (or DISTINCT, or windowed) by the shard key itself.
  const keyIn = (nodes: unknown[]): boolean => nodes.some((n) => { const names = columnRef(n); return !!names && isKey(names); });
  const groupClause = (select.groupClause as unknown[] | undefined) ?? [];
  const distinctClause = select.distinctClause as unknown[] | undefined;
  const distinct = !!distinctClause && distinctClause.length > 0 && Object.keys(distinctClause[0] as object).length === 0;
  const aggregateCalls: ParseNode[] = [];
  let windowed = false;
  walk(targets, (tag, n) => {
    if (tag === "SubLink") return false;
    if (tag !== "FuncCall") return;
    if (n.over) {
      const partition = ((n.over as ParseNode).partitionClause as unknown[] | undefined) ?? [];
      if (!keyIn(partition)) windowed = true;
      return false;
    }
    if (mergeableAggregates.has(funcName(n)) || unmergeableAggregates.has(funcName(n)) || n.agg_star) aggregateCalls.push(n);
    return false;
  });
  const grouped = groupClause.length > 0 || aggregateCalls.length > 0 || select.havingClause !== undefined;
  const local = grouped ? keyIn(groupClause) : distinct ? keyIn(targets.map((t) => t.val)) : true;
  const regroup = (grouped || distinct) && !local;

  if (windowed) refusals.push(refusal("a window function (OVER …) over rows of several shards", "PARTITION BY the shard key, or pin the shard key so one shard answers"));
  if (distinctClause && !distinct && !keyIn(distinctClause)) refusals.push(refusal("DISTINCT ON over several shards", "DISTINCT ON a list holding the shard key, or pin the shard key"));
  if (select.limitOption === "LIMIT_OPTION_WITH_TIES") refusals.push(refusal("FETCH … WITH TIES over several shards", "use LIMIT, or pin the shard key"));
  for (const s of (select.sortClause as ParseNode[] | undefined) ?? []) {
    if ((s.SortBy as ParseNode).useOp) refusals.push(refusal("ORDER BY … USING an operator", "order ASC or DESC"));
  }

  const groupBy: string[] = [];
  const aggregates: AggregatePlan[] = [];
  /** Select-list positions (0-based) of the averages asked of the shards as two columns. */
  const split: number[] = [];
  if (regroup) {
    if (select.havingClause) refusals.push(refusal("HAVING over groups of several shards", "filter the groups in the application, GROUP BY the shard key, or pin the shard key"));
    for (const g of groupClause) {
      if (field(g, "GroupingSet")) {
        refusals.push(refusal("GROUPING SETS, ROLLUP or CUBE over several shards", "run one GROUP BY per grouping, or pin the shard key"));
        continue;
      }
      const name = outputOf(g, "GROUP BY");
      if (name) groupBy.push(name);
    }
    if (distinct) {
      if (grouped) refusals.push(refusal("DISTINCT with GROUP BY or aggregates over several shards", "drop DISTINCT (groups are already distinct) or pin the shard key"));
      if (hasStar) refusals.push(refusal("SELECT DISTINCT * over several shards", "list the columns"));
      for (const o of outputs) if (unique(o.name, "DISTINCT")) groupBy.push(o.name);
    }
    for (const o of outputs) {
      const fn = field(o.target.val, "FuncCall");
      const agg = fn && !fn.over ? aggregateOf(fn) : undefined;
      if (!agg || !fn) {
        if (containsAggregate(o.target.val)) {
          refusals.push(refusal(`an expression over an aggregate (${sql.slice(Number(o.target.location), Number(o.target.location) + 40).split(",")[0].trim()}) across shards`, "select the aggregate itself and compute the expression after"));
        } else if (!groupBy.includes(o.name) && !distinct && !o.star) {
          // A constant or an expression over group keys: fine only when it names a group key itself.
          const names = columnRef(o.target.val);
          if (names) refusals.push(refusal(`the column ${o.name}, neither grouped nor aggregated across shards`, "add it to GROUP BY"));
        }
        continue;
      }
      if (typeof agg === "string") {
        refusals.push(refusal(agg, "pin the shard key so one shard answers, or GROUP BY the shard key"));
        continue;
      }
      if (!unique(o.name, "an aggregate named")) continue;
      if (agg === AggregateFunction.AVG) {
        const sumColumn = `${o.name}__sum`;
        const countColumn = `${o.name}__count`;
        aggregates.push({ column: o.name, function: agg, sumColumn, countColumn });
        const callEnd = groupEnd(sql, Number(fn.location));
        const args = sql.slice(parenStart(sql, Number(fn.location)), callEnd);
        // avg(x) FILTER (WHERE …): the sum and the count take the same FILTER.
        const filterAt = fn.agg_filter ? tokenAt(sql, callEnd) : undefined;
        const end = filterAt ? groupEnd(sql, filterAt.end) : callEnd;
        const filter = filterAt ? ` ${sql.slice(filterAt.start, end)}` : "";
        edits.push({
          start: Number(o.target.location), end: targetEnd(sql, o.target, end),
          text: `sum${args}${filter} AS ${quoteIdent(sumColumn)}, count${args}${filter} AS ${quoteIdent(countColumn)}`,
        });
        split.push(outputs.indexOf(o));
      } else {
        aggregates.push({ column: o.name, function: agg });
      }
    }
  }

  const orderBy: OrderPlan[] = [];
  for (const s of (select.sortClause as ParseNode[] | undefined) ?? []) {
    const sort = s.SortBy as ParseNode;
    const column = outputOf(sort.node, "ORDER BY");
    if (!column) continue;
    orderBy.push({
      column,
      descending: sort.sortby_dir === "SORTBY_DESC",
      nulls: sort.sortby_nulls === "SORTBY_NULLS_FIRST" ? NullsOrder.FIRST : sort.sortby_nulls === "SORTBY_NULLS_LAST" ? NullsOrder.LAST : NullsOrder.UNSPECIFIED,
    });
  }

  // One select-list item became two columns before a GROUP BY position: it points one further.
  for (const p of groupPositions) {
    const shift = split.filter((i) => i < p.n - 1).length;
    const at = tokenAt(sql, p.location);
    if (shift) edits.push({ start: at.start, end: at.end, text: String(p.n + shift) });
  }

  // A re-grouped result is sorted by the router after the merge; the shards' ORDER BY may name a
  // column their statement no longer has (an avg turned into sum and count): it is left out.
  if (regroup && orderBy.length) {
    const span = orderByClause(sql);
    if (span) edits.push({ ...span, text: "" });
  }

  const limit = bound(select.limitCount, "LIMIT", refusals);
  const offset = bound(select.limitOffset, "OFFSET", refusals);
  // Each shard sends at most limit + offset rows (the merge skips the offset); with a re-grouping, a
  // shard's rows are partial groups, so no shard may stop early. A parameter taken out of the text
  // stays in it, typed, as a no-op: the shards get every parameter, and Postgres refuses one it
  // cannot type (a NULL, or a string, sent untyped).
  const countNode = select.limitCount as ParseNode | undefined;
  const offsetNode = select.limitOffset as ParseNode | undefined;
  if (countNode && limit !== null && !field(countNode, "A_Const")?.isnull) {
    const location = Number(unwrap1(countNode).location);
    // FETCH FIRST ROW ONLY: the count 1 is implied (no location); it goes after FIRST or NEXT.
    const implied = location < 0 ? fetchCountAt(sql) : undefined;
    const at = implied !== undefined ? { start: implied, end: implied } : tokenAt(sql, location);
    const fetch = implied !== undefined || /\b(first|next)\s*$/i.test(sql.slice(0, at.start));
    const noLimit = limit!.kind === "param" ? `(NULL + $${limit!.number}::int8)` : fetch ? "NULL" : "ALL";
    const text = regroup ? noLimit : offset ? sumText(limit!, offset) : sql.slice(at.start, at.end);
    if (implied === undefined || regroup || offset) edits.push({ start: at.start, end: at.end, text: implied !== undefined ? ` ${text}` : text });
  }
  if (offsetNode && offset) {
    const at = tokenAt(sql, Number(unwrap1(offsetNode).location));
    const referenced = !regroup && limit; // in the shards' LIMIT limit + offset
    edits.push({ start: at.start, end: at.end, text: offset.kind === "param" && !referenced ? `(0 * $${offset.number}::int8)` : "0" });
  }
  return {
    orderBy, ...(limit ? { limit } : {}), ...(offset ? { offset } : {}), groupBy, aggregates, distinct, regroup,
    edits: edits.filter((e) => e.text !== sql.slice(e.start, e.end)).sort((a, b) => a.start - b.start), refusals,
    groupAliases, ...(groupAliases.length ? { fromRelations: fromRelations(select) } : {}),
  };
}

/** The refusal of a GROUP BY alias that an input column of the same name shadows, if any. */
export function shadowedAlias(m: MergeAnalysis, columnsOf: ColumnsOf | undefined): Refusal | undefined {
  for (const g of m.groupAliases) {
    const known = columnsOf && m.fromRelations ? m.fromRelations.map(columnsOf) : undefined;
    const has = known?.some((c) => c?.has(g.name)) ?? false;
    // A table whose columns are unknown may have it: then the statement's own mentions decide.
    const shadowed = has || ((!known || known.some((c) => !c)) && g.read);
    if (shadowed) return refusal(`GROUP BY ${g.name}, both a column and the alias of another expression`, "GROUP BY the expression itself or its position, or give the alias another name");
  }
  return undefined;
}

/** The tables of a SELECT's FROM, joins included; undefined when it has any other item (or a CTE's name). */
function fromRelations(select: ParseNode): string[] | undefined {
  const ctes = new Set(((select.withClause as ParseNode | undefined)?.ctes as ParseNode[] | undefined ?? []).map((c) => String((c.CommonTableExpr as ParseNode).ctename)));
  const out: string[] = [];
  const add = (item: unknown): boolean => {
    const rv = field(item, "RangeVar");
    if (rv) {
      // Columns renamed by the alias (`items i(a, b)`) are not the table's names.
      if ((!rv.schemaname && ctes.has(String(rv.relname))) || (rv.alias as ParseNode | undefined)?.colnames) return false;
      out.push(relationName(rv.schemaname as string | undefined, String(rv.relname)));
      return true;
    }
    const join = field(item, "JoinExpr");
    return !!join && add(join.larg) && add(join.rarg);
  };
  for (const item of (select.fromClause as unknown[] | undefined) ?? []) if (!add(item)) return undefined;
  return out;
}

function unwrap1(node: ParseNode): ParseNode {
  for (const k in node) return node[k] as ParseNode;
  return node;
}

/** Where the first "(" after `pos` is (a call's argument list). */
function parenStart(sql: string, pos: number): number {
  for (let t = tokenAt(sql, pos); t.start < t.end; t = tokenAt(sql, t.end)) if (sql[t.start] === "(") return t.start;
  return sql.length;
}

/** count/sum/min/max/avg as the merge's function; a string naming why not; undefined: no aggregate. */
function aggregateOf(fn: ParseNode): AggregateFunction | string | undefined {
  const name = funcName(fn);
  if (unmergeableAggregates.has(name)) return `the aggregate ${name}()`;
  if (!mergeableAggregates.has(name)) return undefined;
  if (fn.agg_distinct) return `${name}(DISTINCT …)`;
  if (fn.agg_order || fn.agg_within_group) return `${name}() with an ORDER BY of its own`;
  const map: Record<string, AggregateFunction> = {
    count: AggregateFunction.COUNT, sum: AggregateFunction.SUM, min: AggregateFunction.MIN, max: AggregateFunction.MAX, avg: AggregateFunction.AVG,
  };
  return map[name];
}

function containsAggregate(node: unknown): boolean {
  let found = false;
  walk([node], (tag, n) => {
    if (tag === "SubLink") return false;
    if (tag === "FuncCall" && !n.over && (mergeableAggregates.has(funcName(n)) || unmergeableAggregates.has(funcName(n)))) found = true;
  });
  return found;
}

/**
 * The statement's own ORDER BY clause (the last one outside parentheses): from ORDER to the next
 * clause (LIMIT, OFFSET, FETCH, FOR) or the end.
 */
function orderByClause(sql: string): { start: number; end: number } | undefined {
  let depth = 0;
  let start: number | undefined;
  let end = sql.length;
  let previous = "";
  for (let t = tokenAt(sql, 0); t.start < t.end; t = tokenAt(sql, t.end)) {
    const text = tokenText(sql, t);
    if (text === "(" || text === "[") depth++;
    else if (text === ")" || text === "]") depth--;
    else if (depth === 0 && text === "by" && previous.startsWith("order:")) {
      start = Number(previous.slice(6));
      end = sql.length;
    } else if (depth === 0 && start !== undefined && end === sql.length && ["limit", "offset", "fetch", "for", ";"].includes(text)) end = t.start;
    previous = depth === 0 && text === "order" ? `order:${t.start}` : text;
  }
  return start === undefined ? undefined : { start, end };
}

/** A LIMIT/OFFSET value: null for one that is neither a constant nor a parameter (refused). */
function bound(node: unknown, clause: string, refusals: Refusal[]): Bound | undefined | null {
  if (node === undefined) return undefined;
  const c = field(node, "A_Const");
  if (c?.isnull) return undefined; // LIMIT ALL / LIMIT NULL
  if (c?.ival) return { kind: "const", value: BigInt(Number((c.ival as ParseNode).ival ?? 0)) };
  // An integer beyond int4 is read as a float constant (its digits kept as text).
  const digits = (c?.fval as ParseNode | undefined)?.fval;
  if (typeof digits === "string" && /^\d+$/.test(digits)) return { kind: "const", value: BigInt(digits) };
  const p = field(node, "ParamRef");
  if (p) return { kind: "param", number: Number(p.number) };
  refusals.push(refusal(`${clause} with an expression over several shards`, `give ${clause} as a constant or a parameter ($n)`));
  return null;
}

export const maxInt8 = 9223372036854775807n;

/** limit + offset, capped at bigint's largest (Postgres takes LIMIT and OFFSET up to it, each). */
function sumText(limit: Bound, offset: Bound): string {
  if (limit.kind === "const" && offset.kind === "const") return String(limit.value + offset.value < maxInt8 ? limit.value + offset.value : maxInt8);
  const t = (b: Bound) => (b.kind === "const" ? String(b.value) : `$${b.number}::int8`);
  return `least(${t(limit)}::numeric + ${t(offset)}, ${maxInt8})::int8`;
}

/** Where FETCH FIRST|NEXT ROW ONLY (its count implied) would take a count: after FIRST or NEXT. */
function fetchCountAt(sql: string): number | undefined {
  let depth = 0;
  let at: number | undefined;
  let previous = "";
  for (let t = tokenAt(sql, 0); t.start < t.end; t = tokenAt(sql, t.end)) {
    const text = tokenText(sql, t);
    if (text === "(" || text === "[") depth++;
    else if (text === ")" || text === "]") depth--;
    else if (depth === 0 && previous === "fetch" && (text === "first" || text === "next")) at = t.end;
    previous = depth === 0 ? text : "";
  }
  return at;
}

/** The end of a select-list item whose value ends at `end`: after its alias, if any. */
function targetEnd(sql: string, target: ParseNode, end: number): number {
  if (target.name === undefined) return end;
  let t = tokenAt(sql, end);
  if (tokenText(sql, t) === "as") t = tokenAt(sql, t.end);
  end = t.end;
  return end;
}

/**
 * The name PostgreSQL gives a select-list item (FigureColname in parse_target.c): its alias; else a
 * column's name, a function's, a cast's argument's (else its type's), CASE's ELSE's (else "case"),
 * "coalesce", "greatest", "exists" …; "?column?" for an operator or a constant. The merge finds the
 * shards' columns by these names.
 */
export function columnName(target: ParseNode): string {
  if (target.name !== undefined) return String(target.name);
  return figureName(target.val)[0] ?? "?column?";
}

const jsonNames: Record<string, string> = {
  JsonParseExpr: "json", JsonScalarExpr: "json_scalar", JsonSerializeExpr: "json_serialize", JsonObjectConstructor: "json_object",
  JsonArrayConstructor: "json_array", JsonArrayQueryConstructor: "json_array", JsonObjectAgg: "json_objectagg", JsonArrayAgg: "json_arrayagg",
};

/** A name and its strength: 2 a name of its own, 1 a fallback (a cast's type, "case") a stronger one beats. */
function figureName(node: unknown): [string | undefined, number] {
  const [tag, n] = unwrap(node) ?? ["", {} as ParseNode];
  const lastString = (list: unknown) => ((list as ParseNode[] | undefined) ?? []).filter((f) => "String" in f).map((f) => String((f.String as ParseNode).sval)).at(-1);
  switch (tag) {
    case "ColumnRef": { const name = lastString(n.fields); return name ? [name, 2] : [undefined, 0]; }
    case "A_Indirection": { const name = lastString(n.indirection); return name ? [name, 2] : figureName(n.arg); }
    case "FuncCall": return [funcName(n), 2];
    case "A_Expr": return n.kind === "AEXPR_NULLIF" ? ["nullif", 2] : [undefined, 0];
    case "TypeCast": {
      const inner = figureName(n.arg);
      const type = lastString((n.typeName as ParseNode | undefined)?.names);
      return inner[1] > 1 || !type ? inner : [type, 1];
    }
    case "CollateClause": return figureName(n.arg);
    case "CaseExpr": { const inner = figureName(n.defresult); return inner[1] > 1 ? inner : ["case", 1]; }
    case "GroupingFunc": return ["grouping", 2];
    case "MergeSupportFunc": return ["merge_action", 2];
    case "A_ArrayExpr": return ["array", 2];
    case "RowExpr": return ["row", 2];
    case "CoalesceExpr": return ["coalesce", 2];
    case "MinMaxExpr": return [n.op === "IS_GREATEST" ? "greatest" : "least", 2];
    case "SQLValueFunction": return [String(n.op).replace(/^SVFOP_/, "").replace(/_N$/, "").toLowerCase(), 2];
    case "XmlExpr": return n.op === "IS_DOCUMENT" ? [undefined, 0] : [String(n.op).replace(/^IS_/, "").toLowerCase(), 2];
    case "XmlSerialize": return ["xmlserialize", 2];
    case "JsonFuncExpr": return [String(n.op).replace(/_OP$/, "").toLowerCase(), 2];
    case "SubLink": {
      if (n.subLinkType === "EXISTS_SUBLINK") return ["exists", 2];
      if (n.subLinkType === "ARRAY_SUBLINK") return ["array", 2];
      if (n.subLinkType !== "EXPR_SUBLINK") return [undefined, 0];
      // A scalar subquery: the name of its (first, leftmost) column.
      let inner = field(n.subselect, "SelectStmt");
      while (inner && inner.op !== undefined && inner.op !== "SETOP_NONE") inner = field(inner.larg, "SelectStmt") ?? (inner.larg as ParseNode);
      const first = (inner?.targetList as ParseNode[] | undefined)?.[0]?.ResTarget as ParseNode | undefined;
      return first ? [columnName(first), 2] : [undefined, 0];
    }
  }
  return jsonNames[tag] ? [jsonNames[tag], 2] : [undefined, 0];
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
