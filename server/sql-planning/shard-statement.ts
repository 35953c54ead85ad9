// The SQL text each shard receives. libpg-query 17 has no deparse (only parse), so the text is the
// caller's own, with a few precise edits at the positions the parse tree gives (the merge's avg and
// LIMIT rewrites) or, for an INSERT whose rows go to several shards, only that shard's VALUES rows,
// with the parameters renumbered to the ones those rows use. Keeping the caller's text keeps what a
// deparser could lose or change (comments, spacing, the exact spelling of types and casts).
import { groupEnd, tokenAt, tokenText } from "./sql-text.js";
import { field, type ParseNode, walk } from "./tree.js";

/** Replace sql[start, end) with `text`. */
export interface Edit { start: number; end: number; text: string }

export function applyEdits(sql: string, edits: readonly Edit[]): string {
  let out = "";
  let at = 0;
  for (const e of edits) {
    out += sql.slice(at, e.start) + e.text;
    at = e.end;
  }
  return out + sql.slice(at);
}

/** Where each VALUES row of an INSERT is in the text, and every parameter's position. */
export interface InsertLayout {
  rows: { start: number; end: number }[];
  params: { start: number; end: number; number: number }[];
}

export function insertLayout(sql: string, insert: ParseNode): InsertLayout | undefined {
  const select = field(insert.selectStmt, "SelectStmt");
  const rowsCount = (select?.valuesLists as unknown[] | undefined)?.length ?? 0;
  if (!rowsCount) return undefined;
  // After the table (and its column list), the first top-level VALUES keyword.
  let pos = tokenAt(sql, Number((insert.relation as ParseNode).location)).end;
  for (;;) {
    const t = tokenAt(sql, pos);
    if (t.start === t.end) return undefined;
    if (sql[t.start] === "(") pos = groupEnd(sql, t.start);
    else if (tokenText(sql, t) === "values") { pos = t.end; break; } else pos = t.end;
  }
  const rows: InsertLayout["rows"] = [];
  for (let i = 0; i < rowsCount; i++) {
    const open = tokenAt(sql, pos);
    if (sql[open.start] !== "(") return undefined;
    const end = groupEnd(sql, open.start);
    rows.push({ start: open.start, end });
    const comma = tokenAt(sql, end);
    pos = sql[comma.start] === "," ? comma.end : end;
  }
  const params: InsertLayout["params"] = [];
  walk(insert, (tag, n) => {
    if (tag !== "ParamRef") return;
    const t = tokenAt(sql, Number(n.location));
    params.push({ start: t.start, end: t.end, number: Number(n.number) });
  });
  params.sort((a, b) => a.start - b.start);
  return { rows, params };
}

/**
 * The statement for the rows `keep` (indexes into the VALUES rows): the other rows left out, the
 * parameters renumbered $1… in order of their numbers; `params` lists the call's parameter numbers
 * the new statement takes, in order.
 */
export function insertForRows(sql: string, layout: InsertLayout, keep: readonly number[]): { sql: string; params: number[] } {
  const { rows, params } = layout;
  // Each parameter's row (-1: outside the VALUES rows), by one walk: both lists are in text order.
  const rowOf: number[] = [];
  let r = 0;
  for (const p of params) {
    while (r < rows.length && rows[r]!.end <= p.start) r++;
    rowOf.push(r < rows.length && p.start >= rows[r]!.start ? r : -1);
  }
  const kept = new Set(keep);
  const numbers = [...new Set(params.filter((_, i) => rowOf[i] === -1 || kept.has(rowOf[i]!)).map((p) => p.number))].sort((a, b) => a - b);
  const renumber = new Map(numbers.map((n, i) => [n, i + 1]));
  const inRow = new Map<number, Edit[]>();
  params.forEach((p, i) => {
    const row = rowOf[i]!;
    if (row < 0 || !kept.has(row)) return;
    const at = rows[row]!.start;
    let list = inRow.get(row);
    if (!list) inRow.set(row, (list = []));
    list.push({ start: p.start - at, end: p.end - at, text: `$${renumber.get(p.number)}` });
  });
  const rowsText = keep.map((i) => applyEdits(sql.slice(rows[i]!.start, rows[i]!.end), inRow.get(i) ?? [])).join(", ");
  const first = rows[0]!;
  const last = rows[rows.length - 1]!;
  const outside = params.filter((_, i) => rowOf[i] === -1).map((p) => ({ start: p.start, end: p.end, text: `$${renumber.get(p.number)}` }));
  const all = [...outside, { start: first.start, end: last.end, text: rowsText }].sort((a, b) => a.start - b.start);
  return { sql: applyEdits(sql, all), params: numbers };
}
