// Re-aggregation of the shards' partial aggregates (Vitess: engine.OrderedAggregate, but hash-grouped:
// shard results arrive in no common order, so rows are grouped by key rather than streamed).
// Each shard ran the GROUP BY itself; here the groups of all shards are combined into one row per group.
import { create } from "@bufbuild/protobuf";
import { NullValue } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { AggregateFunction } from "../../../gen/shardrouter/v1/router_pb.js";
import { type Column, ColumnSchema, type Row, RowSchema, type Value, ValueSchema } from "../../../gen/shardrouter/v1/value_pb.js";
import { columnIndex } from "./columns.js";
import { compareValues, isNull } from "./compare-values.js";
import { type Decimal, addDecimal, decimalFromBigInt, divideDecimal, divisionScale, formatDecimal, parseDecimal } from "./decimal.js";
import type { MergeInput, MergeStep } from "./merge-step.js";

/** One aggregate as the MergeSpec carries it (an Aggregate message fits). */
export interface AggregateSpec {
  column: string;
  function: AggregateFunction;
  sumColumn: string;
  countColumn: string;
}

const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;
const INT8 = { type: "int8", typeOid: 20 };
const NUMERIC = { type: "numeric", typeOid: 1700 };
const FLOAT8 = { type: "float8", typeOid: 701 };

type Target =
  | { fn: AggregateFunction.COUNT | AggregateFunction.SUM | AggregateFunction.MIN | AggregateFunction.MAX; out: number }
  | { fn: AggregateFunction.AVG; out: number; sum: number; count: number; float: boolean };

/** Group-by positions, what to compute into which output column, and the output columns. */
export interface ResolvedAggregation {
  groupBy: number[];
  targets: Target[];
  columns: Column[];
}

/**
 * Validates the aggregation against the shards' columns (ConnectError InvalidArgument) and works out
 * the output columns: COUNT becomes int8, each AVG column not returned by the shards is appended.
 * The columns an AVG reads (sumColumn, countColumn) are merged as SUM and COUNT unless another
 * aggregate already covers them, so they never show one shard's partial value.
 */
export function resolveAggregation(
  groupBy: readonly string[],
  aggregates: readonly AggregateSpec[],
  input: readonly Column[],
): ResolvedAggregation {
  const columns = input.slice();
  const groupIdx = groupBy.map((name) => columnIndex(input, name, "groupBy"));
  const targets: Target[] = [];
  const claimed = new Map<number, string>(); // output column -> which aggregate writes it
  const claim = (out: number, what: string): void => {
    if (groupIdx.includes(out)) invalid(`merge ${what} targets column "${columns[out]!.name}", which is also a groupBy column`);
    const other = claimed.get(out);
    if (other) invalid(`merge ${what} and ${other} both target column "${columns[out]!.name}"`);
    claimed.set(out, what);
  };
  const helpers: Array<{ fn: AggregateFunction.SUM | AggregateFunction.COUNT; index: number }> = [];

  for (const agg of aggregates) {
    const what = `${AggregateFunction[agg.function] ?? "aggregate"}(${agg.column})`;
    switch (agg.function) {
      case AggregateFunction.COUNT:
      case AggregateFunction.SUM:
      case AggregateFunction.MIN:
      case AggregateFunction.MAX: {
        const out = columnIndex(input, agg.column, `aggregate ${AggregateFunction[agg.function]}`);
        claim(out, what);
        targets.push({ fn: agg.function, out });
        if (agg.function === AggregateFunction.COUNT) columns[out] = withType(columns[out]!, INT8);
        break;
      }
      case AggregateFunction.AVG: {
        if (!agg.column || !agg.sumColumn || !agg.countColumn) {
          invalid(`merge AVG aggregate "${agg.column}" needs column, sumColumn and countColumn`);
        }
        const sum = columnIndex(input, agg.sumColumn, "aggregate AVG sumColumn");
        const count = columnIndex(input, agg.countColumn, "aggregate AVG countColumn");
        for (const h of [sum, count]) {
          if (groupIdx.includes(h)) invalid(`merge ${what} reads column "${input[h]!.name}", which is also a groupBy column`);
        }
        // The average of float sums is float8, as Postgres' avg(float8); otherwise exact numeric.
        const float = input[sum]!.type === "float8" || input[sum]!.type === "float4";
        let out = columns.findIndex((c) => c.name === agg.column); // first of duplicate names, as columnIndex
        if (out < 0) {
          out = columns.length;
          columns.push(create(ColumnSchema, { name: agg.column, ...(float ? FLOAT8 : NUMERIC) }));
        } else {
          columns[out] = withType(columns[out]!, float ? FLOAT8 : NUMERIC);
        }
        claim(out, what);
        targets.push({ fn: AggregateFunction.AVG, out, sum, count, float });
        helpers.push({ fn: AggregateFunction.SUM, index: sum }, { fn: AggregateFunction.COUNT, index: count });
        break;
      }
      default:
        invalid(`merge aggregate on column "${agg.column}" has no function (AGGREGATE_FUNCTION_UNSPECIFIED or unknown)`);
    }
  }
  for (const h of helpers) {
    if (claimed.has(h.index)) continue;
    claimed.set(h.index, `${AggregateFunction[h.fn]}(${columns[h.index]!.name})`);
    targets.push({ fn: h.fn, out: h.index });
    if (h.fn === AggregateFunction.COUNT) columns[h.index] = withType(columns[h.index]!, INT8);
  }
  return { groupBy: groupIdx, targets, columns };
}

export class AggregateStep implements MergeStep {
  readonly name = "aggregate";

  constructor(private readonly groupBy: readonly string[], private readonly aggregates: readonly AggregateSpec[]) {}

  apply(input: MergeInput): MergeInput {
    const plan = resolveAggregation(this.groupBy, this.aggregates, input.columns);
    const groups = new Map<unknown, Group>();
    for (const part of input.parts) {
      for (const row of part) {
        const key = groupKey(row, plan.groupBy);
        let group = groups.get(key);
        if (!group) {
          group = { first: row, states: plan.targets.map(newState) };
          groups.set(key, group);
        }
        for (let t = 0; t < plan.targets.length; t++) addToState(plan.targets[t]!, group.states[t]!, row);
      }
    }
    // A group-less aggregate over no rows at all yields no row, not SQL's single (0, NULL...) row: each
    // shard returns that row itself, so an empty input means the statement's HAVING removed it (or no shards).

    const columns = plan.columns.slice();
    // An int64 SUM that left the int64 range becomes numeric, for the whole column so its type stays one.
    const numericSums = new Set<number>();
    for (let t = 0; t < plan.targets.length; t++) {
      const target = plan.targets[t]!;
      if (target.fn !== AggregateFunction.SUM) continue;
      for (const g of groups.values()) {
        if ((g.states[t] as SumState).overflowed()) {
          numericSums.add(t);
          columns[target.out] = withType(columns[target.out]!, NUMERIC);
          break;
        }
      }
    }

    const rows: Row[] = [];
    for (const g of groups.values()) {
      const values = g.first.values.slice(0, columns.length); // other columns: first seen, like ANY_VALUE()
      while (values.length < columns.length) values.push(NULL);
      for (let t = 0; t < plan.targets.length; t++) {
        values[plan.targets[t]!.out] = stateResult(plan.targets[t]!, g.states[t]!, numericSums.has(t));
      }
      rows.push(create(RowSchema, { values }));
    }
    return { columns, parts: [rows] };
  }
}

interface Group { first: Row; states: State[] }
type State = CountState | SumState | ExtremeState | AvgState;

function newState(t: Target): State {
  switch (t.fn) {
    case AggregateFunction.COUNT: return new CountState();
    case AggregateFunction.SUM: return new SumState();
    case AggregateFunction.MIN: return new ExtremeState(-1);
    case AggregateFunction.MAX: return new ExtremeState(1);
    case AggregateFunction.AVG: return new AvgState();
  }
}

function addToState(t: Target, s: State, row: Row): void {
  if (t.fn === AggregateFunction.AVG) {
    (s as AvgState).sum.add(row.values[t.sum]);
    (s as AvgState).count.add(row.values[t.count]);
  } else {
    (s as CountState | SumState | ExtremeState).add(row.values[t.out]);
  }
}

function stateResult(t: Target, s: State, numericSum: boolean): Value {
  switch (t.fn) {
    case AggregateFunction.COUNT: return int64((s as CountState).total);
    case AggregateFunction.SUM: return (s as SumState).result(numericSum);
    case AggregateFunction.MIN:
    case AggregateFunction.MAX: return (s as ExtremeState).best ?? NULL;
    case AggregateFunction.AVG: return (s as AvgState).result(t.float);
  }
}

/** COUNT: the shards' counts add up. A NULL partial (never produced by count()) counts as 0. */
class CountState {
  total = 0n;

  add(v: Value | undefined): void {
    if (isNull(v)) return;
    switch (v!.kind.case) {
      case "int64Value": this.total += v!.kind.value; return;
      case "numericValue": { // integer text, e.g. a shard's sum(count)
        const d = parseDecimal(v!.kind.value);
        const unit = d.special ? 0n : 10n ** BigInt(d.scale);
        if (!d.special && d.unscaled % unit === 0n) { this.total += d.unscaled / unit; return; }
        break;
      }
      case "doubleValue":
        if (Number.isInteger(v!.kind.value)) { this.total += BigInt(v!.kind.value); return; }
        break;
    }
    throw new ConnectError(`cannot use ${describe(v!)} as a partial COUNT`, Code.Internal);
  }
}

/**
 * SUM of partial sums, keeping their kind: int64 exactly in BigInt (numeric if the total leaves the
 * int64 range), numeric exactly as a decimal, double as a float. NULL partials (a shard whose group
 * had only NULLs) are skipped; a group with nothing but NULLs stays NULL, as SQL's SUM.
 */
class SumState {
  kind: "none" | "int" | "numeric" | "double" = "none";
  int = 0n;
  dec: Decimal = decimalFromBigInt(0n);
  dbl = 0;

  add(v: Value | undefined): void {
    if (isNull(v)) return;
    const k = v!.kind;
    switch (k.case) {
      case "int64Value":
        if (this.kind === "none" || this.kind === "int") { this.kind = "int"; this.int += k.value; }
        else if (this.kind === "numeric") this.dec = addDecimal(this.dec, decimalFromBigInt(k.value));
        else this.dbl += Number(k.value);
        return;
      case "numericValue":
        if (this.kind === "double") { this.dbl += Number(k.value); return; } // Number() reads NaN/Infinity too
        this.dec = addDecimal(this.kind === "int" ? decimalFromBigInt(this.int) : this.dec, parseDecimal(k.value));
        this.kind = "numeric";
        return;
      case "doubleValue":
        if (this.kind !== "double") this.dbl = this.kind === "none" ? 0 : this.asNumber();
        this.kind = "double";
        this.dbl += k.value;
        return;
    }
    throw new ConnectError(`cannot SUM ${describe(v!)}`, Code.Internal);
  }

  overflowed(): boolean {
    return this.kind === "int" && (this.int < INT64_MIN || this.int > INT64_MAX);
  }

  asDecimal(): Decimal {
    if (this.kind === "int") return decimalFromBigInt(this.int);
    if (this.kind === "double") return parseDecimal(String(this.dbl)); // "NaN", "Infinity", "1e+21" all parse
    return this.dec;
  }

  asNumber(): number {
    return this.kind === "int" ? Number(this.int) : this.kind === "numeric" ? Number(formatDecimal(this.dec)) : this.dbl;
  }

  result(asNumeric: boolean): Value {
    switch (this.kind) {
      case "none": return NULL;
      case "int": return asNumeric ? numeric(decimalFromBigInt(this.int)) : int64(this.int);
      case "numeric": return numeric(this.dec);
      case "double": return double(this.dbl);
    }
  }
}

/** MIN (sign -1) / MAX (sign 1) of the partial values, NULLs skipped; the first wins a tie. */
class ExtremeState {
  best: Value | undefined;

  constructor(private readonly sign: number) {}

  add(v: Value | undefined): void {
    if (isNull(v)) return;
    if (this.best === undefined || compareValues(v!, this.best) * this.sign > 0) this.best = v;
  }
}

/** AVG = merged SUM / merged COUNT, computed only once all shards are in; NULL when nothing was counted. */
class AvgState {
  sum = new SumState();
  count = new CountState();

  result(float: boolean): Value {
    if (this.count.total === 0n || this.sum.kind === "none") return NULL;
    if (float) return double(this.sum.asNumber() / Number(this.count.total));
    // Postgres' avg() is numeric sum / count, at the scale numeric division picks: the same digits.
    const sum = this.sum.asDecimal();
    const count = decimalFromBigInt(this.count.total);
    return numeric(divideDecimal(sum, count, divisionScale(sum, count)));
  }
}

// ---- group keys -----------------------------------------------------------------------------------

type KeyPart = string | null | KeyPart[];

/**
 * A Map key equal for values SQL's GROUP BY puts in one group: NULLs together, numeric "1.50" with
 * "1.5", int64 5 with numeric "5" and double 5, -0 with 0, NaN with NaN. (A fractional double and a
 * numeric of the same decimal text are kept apart: they are different numbers.) Kind prefixes keep
 * other types from colliding; several columns are joined with JSON so no separator can be forged.
 */
function groupKey(row: Row, groupBy: readonly number[]): unknown {
  if (groupBy.length === 1) {
    const k = valueKey(row.values[groupBy[0]!]);
    return Array.isArray(k) ? JSON.stringify(k) : k;
  }
  return JSON.stringify(groupBy.map((i) => valueKey(row.values[i])));
}

function valueKey(v: Value | undefined): KeyPart {
  if (isNull(v)) return null;
  const k = v!.kind;
  switch (k.case) {
    case "int64Value": return `n:${k.value}`;
    case "numericValue": return `n:${canonicalNumeric(k.value)}`;
    case "doubleValue":
      if (Number.isNaN(k.value)) return "n:NaN";
      if (k.value === Infinity || k.value === -Infinity) return `n:${k.value}`;
      return Number.isInteger(k.value) ? `n:${BigInt(k.value)}` : `d:${k.value}`;
    case "stringValue": return `s:${k.value}`;
    case "boolValue": return k.value ? "t:1" : "t:0";
    case "bytesValue": return `b:${Buffer.from(k.value).toString("hex")}`;
    case "timestampValue": return `ts:${k.value.seconds}.${k.value.nanos}`;
    case "dateValue": return `dt:${k.value}`;
    case "uuidValue": return `u:${k.value.toLowerCase()}`;
    case "jsonValue": return `j:${k.value}`;
    case "arrayValue": return k.value.values.map(valueKey);
  }
  return null;
}

/** Numeric text without insignificant zeros: "001.500" -> "1.5", "-0.0" -> "0". */
function canonicalNumeric(text: string): string {
  const d = parseDecimal(text);
  if (d.special) return d.special;
  let { unscaled, scale } = d;
  while (scale > 0 && unscaled % 10n === 0n) {
    unscaled /= 10n;
    scale--;
  }
  return formatDecimal({ unscaled, scale });
}

// ---- values ---------------------------------------------------------------------------------------

const NULL: Value = create(ValueSchema, { kind: { case: "nullValue", value: NullValue.NULL_VALUE } });

function int64(n: bigint): Value {
  return create(ValueSchema, { kind: { case: "int64Value", value: n } });
}

function numeric(d: Decimal): Value {
  return create(ValueSchema, { kind: { case: "numericValue", value: formatDecimal(d) } });
}

function double(n: number): Value {
  return create(ValueSchema, { kind: { case: "doubleValue", value: n } });
}

function withType(c: Column, t: { type: string; typeOid: number }): Column {
  return c.type === t.type && c.typeOid === t.typeOid ? c : create(ColumnSchema, { name: c.name, ...t });
}

function describe(v: Value): string {
  return `a ${v.kind.case} value`;
}

function invalid(message: string): never {
  throw new ConnectError(message, Code.InvalidArgument);
}
