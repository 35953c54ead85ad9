// A statement read once per distinct text (bounded LRU) into what routing and merging need; each
// call then only resolves its parameters and the shard map against the cached analysis.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { AggregateFunction, type MergeSpec, MergeSpecSchema, NullsOrder } from "../../gen/shardrouter/v1/router_pb.js";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import type { ShardMap } from "../placement/shard-map.js";
import { parse } from "../sql/parser.js";
import { checkStatement } from "../sql/statement-guard.js";
import { isReadOnly } from "../sql/statement-kind.js";
import { analyzeMerge, type Bound, type MergeAnalysis, maxInt8, shadowedAlias } from "./merge-plan.js";
import { type Refusal, refusalError } from "./refusals.js";
import { analyzeRouting, reasonOf, type RoutingAnalysis, type RoutingDecision, routeAnalysis, type TablesConfig } from "./routing.js";
import { applyEdits, insertForRows, type InsertLayout, insertLayout } from "./shard-statement.js";
import type { ColumnsOf, TableColumns, TableSchemas } from "./table-schemas.js";
import { unwrap } from "./tree.js";

export interface StatementAnalysis {
  sql: string;
  routing: RoutingAnalysis;
  /** SELECTs: how results of several shards merge. */
  merge?: MergeAnalysis;
  /** The text shards get when the statement reaches several (merge edits applied). */
  multiShardSql: string;
  insert?: InsertLayout;
  /** The statement guard's "isolated": it runs code nobody can read, on a connection of its own. */
  isolated: boolean;
  /**
   * A write that touches no sharded row (reference tables, no table: a user function, DDL): every
   * shard runs it as written on its own copy, and one shard's answer is the answer.
   */
  copies: boolean;
  /** Tables whose columns a call needs (`relation` names): sharded tables' key types, FROM tables of GROUP BY aliases. */
  relations: string[];
}

export interface ShardStatement { shard: string; sql: string; params: number[] }

export interface Explanation {
  decision: RoutingDecision;
  /** Why those shards, in words. */
  reason: string;
  merge?: MergeSpec;
  mergeDescription: string;
  statements: ShardStatement[];
}

const maxCachedLength = 16 * 1024;

export class StatementPlanner {
  /** Texts to analyses; `used` is the clock bit of a second-chance LRU (a hit only sets it). */
  private readonly cache = new Map<string, { analysis: StatementAnalysis; used: boolean }>();

  /** The cached columns (no catalog read, no lifetime check: `columns` just made it). */
  private readonly cachedColumns: ColumnsOf | undefined;

  /** `schemas`: the tables' columns (key types, GROUP BY aliases); without, keys are placed as written. */
  constructor(private readonly tables: TablesConfig, private readonly maxEntries = 4096, private readonly schemas?: TableSchemas) {
    this.cachedColumns = schemas ? (relation) => schemas.peek(relation) : undefined;
  }

  /** The analysis of `sql` (one statement), from the cache when it was read before. */
  analyze(sql: string): StatementAnalysis {
    const hit = this.cache.get(sql);
    if (hit) {
      hit.used = true;
      return hit.analysis;
    }
    const analysis = this.read(sql);
    if (sql.length <= maxCachedLength) {
      // Evict the oldest entry not used since it was last looked at; used ones go to the back.
      while (this.cache.size >= this.maxEntries) {
        const [oldest, entry] = this.cache.entries().next().value!;
        this.cache.delete(oldest);
        if (!entry.used) break;
        entry.used = false;
        this.cache.set(oldest, entry);
      }
      this.cache.set(sql, { analysis, used: false });
    }
    return analysis;
  }

  get cachedStatements(): number {
    return this.cache.size;
  }

  private read(sql: string): StatementAnalysis {
    const { stmts } = parse(sql);
    if (stmts.length === 0) throw new ConnectError("sql must contain a statement", Code.InvalidArgument);
    if (stmts.length > 1) throw new ConnectError("one statement per call: remove everything after the first ';'", Code.InvalidArgument);
    const isolated = checkStatement(sql) === "isolated"; // what the guard refuses (session state), Explain refuses too
    const stmt = stmts[0].stmt;
    const [kind, node] = unwrap(stmt)!;
    const write = kind !== "SelectStmt" || !isReadOnly(sql);
    const routing = analyzeRouting(stmt, this.tables, write);
    let merge: MergeAnalysis | undefined;
    let multiShardSql = sql;
    if (kind === "SelectStmt" && node.op === "SETOP_NONE") {
      const groups = new Set(routing.tables.filter((t) => t.role === "sharded").map((t) => t.group));
      const isKey = (names: string[]) => {
        const use = routing.keyOf(names);
        return use !== undefined && groups.size === 1;
      };
      merge = analyzeMerge(sql, node, isKey);
      multiShardSql = applyEdits(sql, merge.edits);
    }
    const insert = kind === "InsertStmt" && routing.insertKeys ? insertLayout(sql, node) : undefined;
    const relations = new Set([
      ...routing.tables.filter((t) => t.role === "sharded").map((t) => t.relation),
      ...routing.nested.map((n) => n.relation),
      ...(merge?.fromRelations ?? []),
    ]);
    const copies = write && routing.tables.every((t) => t.role === "reference") && routing.nested.length === 0;
    return { sql, routing, merge, multiShardSql, insert, isolated, copies, relations: [...relations] };
  }

  /**
   * The columns of the statement's tables: the cache's (synchronously) when it holds them all, else
   * after reading the missing ones from the catalog. Tables that do not exist are unknown.
   */
  columns(analysis: StatementAnalysis): ColumnsOf | undefined | Promise<ColumnsOf> {
    const schemas = this.schemas;
    if (!schemas) return undefined;
    let missing: string[] | undefined;
    for (const r of analysis.relations) if (!schemas.cached(r)) (missing ??= []).push(r);
    if (!missing) return this.cachedColumns;
    return Promise.all(missing.map((r) => schemas.load(r).then((c) => [r, c] as const))).then((read) => {
      const loaded = new Map<string, TableColumns | undefined>(read);
      return (relation: string) => (loaded.has(relation) ? loaded.get(relation) : schemas.cached(relation));
    });
  }

  /** Which shards one call goes to. Throws the refusal that applies to it (invalid_argument). */
  route(analysis: StatementAnalysis, params: readonly Value[], map: ShardMap, everyShard: (write: boolean) => readonly string[]): RoutingDecision | Promise<RoutingDecision> {
    const columns = this.columns(analysis);
    if (columns instanceof Promise) return columns.then((c) => this.routeWith(analysis, params, map, everyShard, c));
    return this.routeWith(analysis, params, map, everyShard, columns);
  }

  private routeWith(analysis: StatementAnalysis, params: readonly Value[], map: ShardMap, everyShard: (write: boolean) => readonly string[], columns: ColumnsOf | undefined): RoutingDecision | Promise<RoutingDecision> {
    // Rows of a sharded table live on the shards of the map (a reshard's stream carries writes on to
    // a receiving shard); DDL and reference tables go to every configured shard, spares included.
    const r = analysis.routing;
    const decided = routeAnalysis(r, params, map, everyShard(r.write && !r.tables.some((t) => t.role === "sharded")), columns);
    if (decided instanceof Promise) return decided.then((d) => this.check(analysis, d, columns));
    return this.check(analysis, decided, columns);
  }

  private check(analysis: StatementAnalysis, d: RoutingDecision, columns: ColumnsOf | undefined): RoutingDecision {
    const refused = d.refused ?? (d.shards.length > 1 ? this.mergeRefusal(analysis, columns) : undefined);
    if (refused) throw refusalError(refused);
    return d;
  }

  /** Why the shards' answers cannot be merged, if they cannot (with the tables' columns, when known). */
  mergeRefusal(analysis: StatementAnalysis, columns: ColumnsOf | undefined): Refusal | undefined {
    const m = analysis.merge;
    return m && (m.refusals[0] ?? (m.groupAliases.length ? shadowedAlias(m, columns) : undefined));
  }

  /** Forgets the tables' columns: this router ran a schema change. */
  schemaChanged(): void {
    this.schemas?.invalidate();
  }

  /** The statement each shard of `decision` receives, and the call's parameters it takes. */
  shardStatements(analysis: StatementAnalysis, decision: RoutingDecision, paramCount: number): ShardStatement[] {
    const sql = analysis.sql;
    if (analysis.insert && decision.rowShards && decision.shards.length > 1) {
      return decision.shards.map((shard) => {
        const rows = decision.rowShards!.flatMap((s, i) => (s === shard ? [i] : []));
        return { shard, ...insertForRows(sql, analysis.insert!, rows) };
      });
    }
    const all = Array.from({ length: paramCount }, (_, i) => i + 1);
    const text = decision.shards.length > 1 && !analysis.copies ? analysis.multiShardSql : sql;
    return decision.shards.map((shard) => ({ shard, sql: text, params: all }));
  }

  /** Everything Explain reports for one call. */
  async explain(sql: string, params: readonly Value[], map: ShardMap, everyShard: (write: boolean) => readonly string[]): Promise<Explanation> {
    const analysis = this.analyze(sql);
    const decision = await this.route(analysis, params, map, everyShard);
    const reason = reasonOf(decision);
    const several = decision.shards.length > 1;
    const statements = this.shardStatements(analysis, decision, params.length);
    if (analysis.insert && decision.rowShards && several) {
      return { decision, reason, mergeDescription: "concatenate the shards' results (RETURNING rows) in shard order", statements };
    }
    if (!several) return { decision, reason, mergeDescription: "none: one shard answers the statement as written", statements };
    if (analysis.copies) return { decision, reason, mergeDescription: "none: each shard changes its own copy; the first shard's answer is the answer", statements };
    const m = analysis.merge;
    if (!m) return { decision, reason, mergeDescription: "concatenate the shards' results in shard order", statements };
    const spec = mergeSpec(m, params);
    return { decision, reason, merge: spec, mergeDescription: describeMerge(m, spec), statements };
  }
}

function boundValue(b: Bound | undefined, params: readonly Value[], clause: string): bigint | undefined {
  if (!b) return undefined;
  if (b.kind === "const") return b.value;
  const v = params[b.number - 1]?.kind;
  if (v?.case === "int64Value") return v.value;
  if (v?.case === "nullValue") return undefined;
  if ((v?.case === "stringValue" || v?.case === "numericValue") && /^\d+$/.test(v.value)) return BigInt(v.value);
  throw new ConnectError(`${clause} $${b.number} must be an integer parameter`, Code.InvalidArgument);
}

export function mergeSpec(m: MergeAnalysis, params: readonly Value[]): MergeSpec {
  const limit = boundValue(m.limit, params, "LIMIT");
  return create(MergeSpecSchema, {
    orderBy: m.orderBy,
    ...(limit !== undefined ? { limit } : {}),
    offset: boundValue(m.offset, params, "OFFSET") ?? 0n,
    groupBy: m.groupBy,
    aggregates: m.aggregates.map((a) => ({ column: a.column, function: a.function, sumColumn: a.sumColumn ?? "", countColumn: a.countColumn ?? "" })),
  });
}

function describeMerge(m: MergeAnalysis, spec: MergeSpec): string {
  const parts: string[] = [];
  const quote = (s: string) => JSON.stringify(s);
  if (m.regroup) {
    const aggs = spec.aggregates.map((a) => a.function === AggregateFunction.AVG
      ? `avg ${quote(a.column)} = sum(${quote(a.sumColumn)}) / sum(${quote(a.countColumn)}) (each shard sends sum and count; the average takes their place)`
      : `${AggregateFunction[a.function].toLowerCase()} of ${quote(a.column)}${a.function === AggregateFunction.COUNT ? " (partial counts summed)" : ""}`);
    const keys = spec.groupBy.length ? `group by ${spec.groupBy.map(quote).join(", ")}` : "one group";
    parts.push(m.distinct ? `DISTINCT: ${keys}` : `${keys}${aggs.length ? `, re-aggregating ${aggs.join(", ")}` : ""}`);
    if (spec.orderBy.length) parts.push(`then sort by ${orderText(spec)}`);
  } else if (spec.orderBy.length) {
    parts.push(`merge-sort the shards' sorted rows by ${orderText(spec)}`);
  } else {
    parts.push("concatenate in shard order");
  }
  if (spec.limit !== undefined || spec.offset > 0n) {
    const pushed = !m.regroup && spec.limit !== undefined ? ` (each shard asked for LIMIT ${spec.limit + spec.offset < maxInt8 ? spec.limit + spec.offset : maxInt8})` : m.regroup ? " (shards send every group: no LIMIT pushed down)" : "";
    parts.push(`then skip ${spec.offset} and keep ${spec.limit ?? "all"}${pushed}`);
  }
  return parts.join(", ");
}

function orderText(spec: MergeSpec): string {
  return spec.orderBy.map((o) => `${JSON.stringify(o.column)} ${o.descending ? "DESC" : "ASC"}${o.nulls === NullsOrder.FIRST ? " NULLS FIRST" : o.nulls === NullsOrder.LAST ? " NULLS LAST" : ""}`).join(", ");
}
