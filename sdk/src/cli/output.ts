// What the CLI prints: aligned tables and key/value lists for people, one JSON document for scripts.
//
// A small formatter of our own rather than a table package: this file ships in @shardrouter/sdk, so a
// package would be installed by every application that only wants the client library, and what we
// need is little (pad to a width, right-align numbers, no borders, no wrapping). Widths count code
// points: East Asian wide characters and emoji misalign a column by a cell or so; --json is exact.
//
// Everything that comes from the database or the router (cells, column names, messages) goes through
// `printable`, which escapes control characters: a value can neither break the layout nor send
// escape sequences to the terminal.

/** Bold and dim on a terminal; the identity elsewhere (a pipe, a file, NO_COLOR, TERM=dumb). */
export interface Style {
  bold(text: string): string;
  dim(text: string): string;
}

const plain: Style = { bold: (t) => t, dim: (t) => t };
const ansi: Style = { bold: (t) => `\x1b[1m${t}\x1b[22m`, dim: (t) => `\x1b[2m${t}\x1b[22m` };

export function styleFor(stream: { isTTY?: boolean }, env: Record<string, string | undefined>): Style {
  const color = stream.isTTY === true && env.NO_COLOR === undefined && env.TERM !== "dumb";
  return color ? ansi : plain;
}

/** Control characters as escapes (\n, \t, \x1b …): one line per row, nothing for the terminal to obey. */
export function printable(text: string): string {
  return text.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => {
    if (c === "\n") return "\\n";
    if (c === "\t") return "\\t";
    if (c === "\r") return "\\r";
    return `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`;
  });
}

/** A json/jsonb document's text as Postgres sent it: written into --json output as it is (no precision lost). */
export class RawJson {
  constructor(readonly text: string) {}
}

/** bytea as Postgres writes it: \x and hex. */
export function byteaText(bytes: Uint8Array): string {
  let hex = "";
  for (const b of bytes) hex += b.toString(16).padStart(2, "0");
  return `\\x${hex}`;
}

/** A cell as text for a table; null for SQL NULL (shown as NULL, dimmed on a terminal). */
export function cellText(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (Array.isArray(value)) return `{${value.map(arrayElement).join(",")}}`;
  return printable(scalarText(value));
}

function scalarText(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof RawJson) return value.text;
  if (value instanceof Uint8Array) return byteaText(value);
  if (value instanceof Date) return value.toISOString();
  if (typeof value === "object") return JSON.stringify(value, (_, v) => (typeof v === "bigint" ? v.toString() : v));
  return String(value); // numbers (NaN, Infinity included), bigints, booleans
}

/** An array element as in Postgres' array text: quoted when it would otherwise be ambiguous. */
function arrayElement(value: unknown): string {
  if (value === null || value === undefined) return "NULL";
  if (Array.isArray(value)) return `{${value.map(arrayElement).join(",")}}`;
  const text = printable(scalarText(value));
  return text === "" || /^null$/i.test(text) || /[{},"\\\s]/.test(text) ? `"${text.replace(/["\\]/g, "\\$&")}"` : text;
}

export type Align = "left" | "right";

export interface TableColumn {
  header: string;
  align?: Align;
}

const width = (text: string): number => {
  let n = 0;
  for (const _ of text) n++;
  return n;
};

/**
 * Columns padded to their widest cell, two spaces apart, a dashed rule under the headers; numbers
 * right-aligned. Cells are already printable; null is NULL. No trailing spaces.
 */
export function table(columns: readonly TableColumn[], rows: readonly (readonly (string | null)[])[], style: Style): string {
  const headers = columns.map((c) => printable(c.header));
  const widths = headers.map((h, i) => Math.max(width(h), ...rows.map((r) => width(r[i] ?? "NULL"))));
  const line = (cells: string[], paint: (text: string, i: number) => string) =>
    cells.map((text, i) => {
      const pad = " ".repeat(widths[i] - width(text));
      const last = i === cells.length - 1;
      return columns[i].align === "right" ? pad + paint(text, i) : paint(text, i) + (last ? "" : pad);
    }).join("  ").trimEnd();
  const out = [
    line(headers, (h) => style.bold(h)),
    widths.map((w) => "-".repeat(w)).join("  "),
    ...rows.map((r) => line(r.map((c) => c ?? "NULL"), (text, i) => (r[i] === null ? style.dim(text) : text))),
  ];
  return out.join("\n") + "\n";
}

/** "key  value" lines, the keys padded to the longest. */
export function keyValues(pairs: readonly (readonly [string, string])[], style: Style): string {
  const w = Math.max(0, ...pairs.map(([k]) => width(k)));
  return pairs.map(([k, v]) => `${style.dim(k.padEnd(w))}  ${printable(v)}`.trimEnd()).join("\n") + "\n";
}

/**
 * One JSON document, indented. The conventions, as in protobuf's JSON mapping: 64-bit integers (int8
 * cells, balances, versions) are strings ("1000"), so no reader rounds them; NaN and ±Infinity are
 * the strings "NaN", "Infinity", "-Infinity"; bytea is Postgres' "\\x…" hex text; json/jsonb cells are
 * the documents themselves; numeric is its exact text (a string); timestamps are RFC 3339 text.
 */
export function toJson(value: unknown, indent = ""): string {
  if (value === null || value === undefined) return "null";
  if (value instanceof RawJson) return value.text;
  switch (typeof value) {
    case "bigint": return JSON.stringify(value.toString());
    case "number": return Number.isFinite(value) ? JSON.stringify(value) : JSON.stringify(String(value));
    case "string": case "boolean": return JSON.stringify(value);
  }
  if (value instanceof Uint8Array) return JSON.stringify(byteaText(value));
  if (value instanceof Date) return JSON.stringify(value.toISOString());
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    return `[\n${value.map((v) => inner + toJson(v, inner)).join(",\n")}\n${indent}]`;
  }
  const entries = Object.entries(value as object).filter(([, v]) => v !== undefined);
  if (entries.length === 0) return "{}";
  return `{\n${entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${toJson(v, inner)}`).join(",\n")}\n${indent}}`;
}
