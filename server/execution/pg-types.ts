// Postgres type OIDs the router knows by heart (they are fixed in pg_type.dat for every server version).
// Anything else is looked up by name once per node and its values travel as text.

export const Oid = {
  bool: 16, bytea: 17, char: 18, name: 19, int8: 20, int2: 21, int4: 23, text: 25, oid: 26,
  json: 114, xml: 142, float4: 700, float8: 701, money: 790, inet: 869, cidr: 650, macaddr: 829,
  bpchar: 1042, varchar: 1043, date: 1082, time: 1083, timestamp: 1114, timestamptz: 1184,
  interval: 1186, timetz: 1266, bit: 1560, varbit: 1562, numeric: 1700, uuid: 2950, jsonb: 3802,
  unknown: 705, void: 2278, record: 2249,
} as const;

/** How a cell's text form becomes a Value. */
export type ValueKind =
  | "bool" | "int" | "float" | "numeric" | "string" | "bytes" | "timestamp" | "json" | "date" | "uuid" | "text";

const kinds = new Map<number, ValueKind>([
  [Oid.bool, "bool"],
  [Oid.int2, "int"], [Oid.int4, "int"], [Oid.int8, "int"], [Oid.oid, "int"],
  [Oid.float4, "float"], [Oid.float8, "float"],
  [Oid.numeric, "numeric"],
  [Oid.text, "string"], [Oid.varchar, "string"], [Oid.bpchar, "string"], [Oid.name, "string"], [Oid.char, "string"],
  [Oid.bytea, "bytes"],
  [Oid.timestamp, "timestamp"], [Oid.timestamptz, "timestamp"],
  [Oid.json, "json"], [Oid.jsonb, "json"],
  [Oid.date, "date"],
  [Oid.uuid, "uuid"],
]);

const names = new Map<number, string>(Object.entries(Oid).map(([name, oid]) => [oid, name]));

/** Array type OID → element type OID, for the arrays of every type above. */
const arrayElements = new Map<number, number>([
  [1000, Oid.bool], [1001, Oid.bytea], [1002, Oid.char], [1003, Oid.name], [1016, Oid.int8], [1005, Oid.int2],
  [1007, Oid.int4], [1009, Oid.text], [1028, Oid.oid], [199, Oid.json], [143, Oid.xml], [1021, Oid.float4],
  [1022, Oid.float8], [791, Oid.money], [1041, Oid.inet], [651, Oid.cidr], [1040, Oid.macaddr],
  [1014, Oid.bpchar], [1015, Oid.varchar], [1182, Oid.date], [1183, Oid.time], [1115, Oid.timestamp],
  [1185, Oid.timestamptz], [1187, Oid.interval], [1270, Oid.timetz], [1561, Oid.bit], [1563, Oid.varbit],
  [1231, Oid.numeric], [2951, Oid.uuid], [3807, Oid.jsonb],
]);
for (const [array, element] of arrayElements) names.set(array, `_${names.get(element)}`);

/** The value kind for a scalar type; unknown types travel as their text form. */
export function kindOf(oid: number): ValueKind {
  return kinds.get(oid) ?? "text";
}

export function arrayElementOf(oid: number): number | undefined {
  return arrayElements.get(oid);
}

/** The type name for a well-known OID, or undefined (the caller asks the node's pg_type). */
export function knownTypeName(oid: number): string | undefined {
  return names.get(oid);
}

/** Every OID whose text the router decodes itself: postgres.js must hand these over untouched. */
export const decodedOids: number[] = [...kinds.keys()];
