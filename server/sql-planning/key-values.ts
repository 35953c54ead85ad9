// A pinned key's text for one call: a constant's text, or a parameter's value as the text placement
// hashes (an integer as its decimal text). `= ANY($n)` takes an array parameter: each element is a key.
// With the key column's type known, each text is made canonical for it (key-canonical.ts).
import { Code, ConnectError } from "@connectrpc/connect";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import { canonicalKey, type KeyColumnType } from "./key-canonical.js";
import type { KeySource, PinKey } from "./tree.js";

/** The text a key value is placed by; null for NULL (it matches no row). */
export function keyText(key: KeySource, params: readonly Value[]): string | null {
  if (key.kind === "null") return null;
  if (key.kind === "const") return key.text;
  const value = params[key.number - 1];
  if (!value) throw new ConnectError(`the statement uses $${key.number} as a shard key, but ${params.length} parameter(s) were given`, Code.InvalidArgument);
  const text = scalarText(value);
  if (text === undefined) throw new ConnectError(`parameter $${key.number} is a shard key; a ${value.kind.case} cannot be one`, Code.InvalidArgument);
  return text;
}

/**
 * Every key of a pin, arrays given to `= ANY($n)` spread into their elements, canonical for the key
 * column's `type` when known; `table.column` names it in errors.
 */
export function keyTexts(keys: readonly PinKey[], params: readonly Value[], table: string, column: string, type?: KeyColumnType): (string | null)[] {
  const out: (string | null)[] = [];
  for (const k of keys) {
    if (k.kind === "array") arrayTexts(k.number, params, table, column, out);
    else out.push(keyText(k, params));
  }
  return type ? out.map((v) => (v === null ? v : canonicalKey(v, type, table, column))) : out;
}

function arrayTexts(number: number, params: readonly Value[], table: string, keyColumn: string, out: (string | null)[]): void {
  const column = `${table}.${keyColumn}`; // for messages; ANY is off the hot path
  const value = params[number - 1];
  if (!value) throw new ConnectError(`the statement uses $${number} as an array of shard keys (${column} = ANY($${number})), but ${params.length} parameter(s) were given`, Code.InvalidArgument);
  const kind = value.kind;
  if (kind.case === "nullValue" || kind.case === undefined) return; // ANY(NULL) matches no row
  if (kind.case !== "arrayValue") {
    throw new ConnectError(`parameter $${number} is compared as ${column} = ANY($${number}): it must be an array (array_value) of keys, not a ${kind.case}`, Code.InvalidArgument);
  }
  // A multidimensional array: ANY compares with every element.
  const spread = (values: readonly Value[]): void => {
    for (const v of values) {
      if (v.kind.case === "arrayValue") { spread(v.kind.value.values); continue; }
      const text = scalarText(v);
      if (text === undefined) throw new ConnectError(`parameter $${number} is an array of shard keys (${column} = ANY($${number})); an element that is a ${v.kind.case} cannot be a key`, Code.InvalidArgument);
      out.push(text);
    }
  };
  spread(kind.value.values);
}

/** A scalar value's key text (null for NULL); undefined for a kind no key can be. */
function scalarText(value: Value): string | null | undefined {
  switch (value.kind.case) {
    case "nullValue": case undefined: return null;
    case "int64Value": return value.kind.value.toString();
    case "stringValue": case "numericValue": case "uuidValue": case "dateValue": return value.kind.value;
    case "doubleValue": case "boolValue": return String(value.kind.value);
    default: return undefined;
  }
}
