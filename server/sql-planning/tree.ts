// Small readers over libpg-query's JSON tree ({ NodeTag: { field: … } }) that the planning files share.
import { type ArrayItems, parseArrayLiteral } from "../execution/array-literal.js";
import type { ParseNode } from "../sql/parser.js";

export type { ParseNode };

/** The node's tag ("SelectStmt", "ColumnRef" …) and its fields. */
export function unwrap(node: unknown): [string, ParseNode] | undefined {
  if (node === null || typeof node !== "object" || Array.isArray(node)) return undefined;
  for (const key in node as ParseNode) return [key, (node as ParseNode)[key] as ParseNode];
  return undefined;
}

export function field(node: unknown, tag: string): ParseNode | undefined {
  const n = unwrap(node);
  return n && n[0] === tag ? n[1] : undefined;
}

/** A column reference's names (["a", "id"], ["id"]; "*" for a star); undefined for anything else. */
export function columnRef(node: unknown): string[] | undefined {
  const ref = field(node, "ColumnRef");
  if (!ref) return undefined;
  return (ref.fields as ParseNode[]).map((f) => ("A_Star" in f ? "*" : String((f.String as ParseNode).sval)));
}

/** Where a shard key value comes from: a constant's text, a parameter ($n), or NULL. */
export type KeySource = { kind: "const"; text: string } | { kind: "param"; number: number } | { kind: "null" };

/** A constant or a parameter, under any casts ($1::int8, '7'::text); undefined for anything else. */
export function keySource(node: unknown): KeySource | undefined {
  const cast = field(node, "TypeCast");
  if (cast) return keySource(cast.arg);
  const param = field(node, "ParamRef");
  if (param) return { kind: "param", number: Number(param.number) };
  const c = field(node, "A_Const");
  if (!c) return undefined;
  if (c.isnull) return { kind: "null" };
  if (c.ival) return { kind: "const", text: String((c.ival as ParseNode).ival ?? 0) };
  if (c.sval) return { kind: "const", text: String((c.sval as ParseNode).sval ?? "") };
  if (c.fval) return { kind: "const", text: String((c.fval as ParseNode).fval) };
  return undefined;
}

/** A key of a pin: a key source, or an array parameter whose elements are keys (`= ANY($n)`). */
export type PinKey = KeySource | { kind: "array"; number: number };

/**
 * The keys of `key = ANY(…)`: a parameter (its elements, per call), an array literal ('{1,2}', under
 * casts), ARRAY[…] of constants and parameters (nested ones too: ANY compares with every element),
 * NULL (no key); undefined for anything else (a column, a function, a subquery).
 */
export function arrayKeySources(node: unknown): PinKey[] | undefined {
  const cast = field(node, "TypeCast");
  if (cast) return arrayKeySources(cast.arg);
  const param = field(node, "ParamRef");
  if (param) return [{ kind: "array", number: Number(param.number) }];
  const c = field(node, "A_Const");
  if (c?.isnull) return [];
  if (c?.sval) {
    const text = String((c.sval as ParseNode).sval ?? "");
    // Backslash escapes in unquoted elements are read differently here than by PostgreSQL: no pin.
    if (text.includes("\\")) return undefined;
    try {
      return flatten(parseArrayLiteral(text)).map((t): KeySource => (t === null ? { kind: "null" } : { kind: "const", text: t }));
    } catch {
      return undefined; // PostgreSQL will refuse the literal
    }
  }
  const array = field(node, "A_ArrayExpr");
  if (!array) return undefined;
  const keys: PinKey[] = [];
  for (const element of (array.elements as unknown[] | undefined) ?? []) {
    const inner = field(element, "A_ArrayExpr") ? arrayKeySources(element) : keySource(element);
    if (!inner) return undefined;
    if (Array.isArray(inner)) keys.push(...inner);
    else keys.push(inner);
  }
  return keys;
}

function flatten(items: ArrayItems): (string | null)[] {
  return items.flatMap((i) => (Array.isArray(i) ? flatten(i) : [i]));
}

/** The terms of a top-level AND (the expression itself when it is no AND). */
export function conjuncts(node: unknown): unknown[] {
  if (node === undefined) return [];
  const bool = field(node, "BoolExpr");
  if (bool?.boolop === "AND_EXPR") return (bool.args as unknown[]).flatMap(conjuncts);
  return [node];
}

/** An expression's shape without positions: equal for `sum(x)` written twice. */
export function shape(node: unknown): string {
  return JSON.stringify(node, (key, value) => (key === "location" ? undefined : value));
}

/** Calls `visit` for every object node under `value` (itself included); `visit` returns false to skip a subtree. */
export function walk(value: unknown, visit: (tag: string, node: ParseNode) => boolean | void): void {
  if (Array.isArray(value)) {
    for (const item of value) walk(item, visit);
    return;
  }
  if (value === null || typeof value !== "object") return;
  for (const key in value as ParseNode) {
    const child = (value as ParseNode)[key];
    if (typeof child !== "object" || child === null) continue;
    if (key.charCodeAt(0) <= 90 && !Array.isArray(child) && visit(key, child as ParseNode) === false) continue;
    walk(child, visit);
  }
}

/** A function call's (unqualified, lower-case) name. */
export function funcName(call: ParseNode): string {
  const names = call.funcname as ParseNode[];
  return String((names[names.length - 1].String as ParseNode).sval);
}

export function isBinaryOp(expr: ParseNode, op: string): boolean {
  const names = expr.name as ParseNode[] | undefined;
  return names?.length === 1 && (names[0].String as ParseNode | undefined)?.sval === op;
}
