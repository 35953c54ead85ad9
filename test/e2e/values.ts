// Turning result Values into plain JS for comparisons in tests.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { ResultSet, Value } from "../../gen/shardrouter/v1/value_pb.js";

export function plain(v: Value): unknown {
  switch (v.kind.case) {
    case undefined: case "nullValue": return null;
    case "timestampValue": return timestampDate(v.kind.value).toISOString();
    case "arrayValue": return v.kind.value.values.map(plain);
    case "bytesValue": return Buffer.from(v.kind.value).toString("hex");
    default: return v.kind.value;
  }
}

/** Rows as arrays of plain values (int64 → bigint, numeric → string, timestamps → ISO text). */
export function plainRows(r: ResultSet | undefined): unknown[][] {
  return (r?.rows ?? []).map((row) => row.values.map(plain));
}
