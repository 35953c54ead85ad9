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
import { columnRef, field, funcName, type ParseNode, shape, walk } from "./tree.js";
import { groupEnd, tokenAt, tokenText } from "./sql-text.js";

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
    const fn = field(t.val, "FuncCall");
    const name = (t.name as string | undefined) ?? (names ? names[names.length - 1] : fn ? funcName(fn) : "?column?");
    return { name, shape: shape(t.val), star, target: t };
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
      return o.name;
    }
    const s = shape(node);
    const same = outputs.find((o) => o.shape === s);
    if (same) return unique(same.name, clause);
    const names = columnRef(node);
    if (names?.length === 1 && outputs.some((o) => o.name === names[0])) return unique(names[0], clause);
    const last = names?.[names.length - 1];
    const plain = outputs.filter((o) => columnRef(o.target.val)?.at(-1) === last);
    if (names && plain.length === 1) return unique(plain[0].name, clause); // accounts.id for a selected id
    if (names && hasStar) return last; // a column of the table the star expands
    refusals.push(refusal(`${clause} an expression that is not in the select list`, `add it to the select list with an alias and ${clause} the alias`));
    return undefined;
  };
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
        const args = sql.slice(parenStart(sql, Number(fn.location)), groupEnd(sql, Number(fn.location)));
        edits.push({ start: Number(o.target.location), end: targetEnd(sql, o.target, fn), text: `sum${args} AS ${quoteIdent(sumColumn)}, count${args} AS ${quoteIdent(countColumn)}` });
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

  // A re-grouped result is sorted by the router after the merge; the shards' ORDER BY may name a
  // column their statement no longer has (an avg turned into sum and count): it is left out.
  if (regroup && orderBy.length) {
    const span = orderByClause(sql);
    if (span) edits.push({ ...span, text: "" });
  }

  const limit = bound(select.limitCount, "LIMIT", refusals);
  const offset = bound(select.limitOffset, "OFFSET", refusals);
  // Each shard sends at most limit + offset rows (the merge skips the offset); with a re-grouping, a
  // shard's rows are partial groups, so no shard may stop early.
  const countNode = select.limitCount as ParseNode | undefined;
  const offsetNode = select.limitOffset as ParseNode | undefined;
  if (countNode && limit !== null && !field(countNode, "A_Const")?.isnull) {
    const at = tokenAt(sql, Number(unwrap1(countNode).location));
    const text = regroup ? "ALL" : offset ? sumText(limit!, offset) : sql.slice(at.start, at.end);
    edits.push({ start: at.start, end: at.end, text });
  }
  if (offsetNode && offset) {
    const at = tokenAt(sql, Number(unwrap1(offsetNode).location));
    edits.push({ start: at.start, end: at.end, text: "0" });
  }
  return {
    orderBy, ...(limit ? { limit } : {}), ...(offset ? { offset } : {}), groupBy, aggregates, distinct, regroup,
    edits: edits.filter((e) => e.text !== sql.slice(e.start, e.end)).sort((a, b) => a.start - b.start), refusals,
  };
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
  const p = field(node, "ParamRef");
  if (p) return { kind: "param", number: Number(p.number) };
  refusals.push(refusal(`${clause} with an expression over several shards`, `give ${clause} as a constant or a parameter ($n)`));
  return null;
}

function sumText(limit: Bound, offset: Bound): string {
  if (limit.kind === "const" && offset.kind === "const") return String(limit.value + offset.value);
  const t = (b: Bound) => (b.kind === "const" ? String(b.value) : `$${b.number}::int8`);
  return `(${t(limit)} + ${t(offset)})`;
}

/** The end of a select-list item whose value is `fn`: after its parentheses and its alias, if any. */
function targetEnd(sql: string, target: ParseNode, fn: ParseNode): number {
  let end = groupEnd(sql, Number(fn.location));
  if (target.name === undefined) return end;
  let t = tokenAt(sql, end);
  if (tokenText(sql, t) === "as") t = tokenAt(sql, t.end);
  end = t.end;
  return end;
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
