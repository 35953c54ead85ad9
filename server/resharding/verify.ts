// Verification of one source's move (the resharder's VDiff): every row the source gives a target is
// compared with the target's, by primary key and a hash of the whole row's text. A difference found
// while writes still flow may only be lag: those keys are looked at again once the stream has caught
// up (`settle`), and only what still differs is reported. A cutover needs a report with none.
import type postgres from "postgres";
import { nodeClient } from "./node-client.js";
import type { SourceMoveSpec } from "./source-move.js";
import { type TableShape, quoteIdent, readTableShape } from "./table-schema.js";

export interface TableVerification {
  table: string;
  target: string;
  compared: number;
  /** How many keys differ, by kind; the lists below name at most `listAtMost` of each. */
  counts: { missing: number; extra: number; different: number };
  /** Keys the source has and the target lacks, the target has and the source does not give it, or both have with different rows. */
  missing: string[];
  extra: string[];
  different: string[];
}

export interface VerifyOptions {
  /** Waits until the stream has applied what the source had committed when called; then differences are rechecked. */
  settle?: () => Promise<void>;
  /** Keys listed per kind of difference (default 20); the counts are always whole. */
  listAtMost?: number;
}

export async function verifyMove(spec: SourceMoveSpec, opts: VerifyOptions = {}): Promise<TableVerification[]> {
  const source = nodeClient(spec.source.node, { connectTimeoutMs: spec.connectTimeoutMs });
  const targets = spec.targets.map((t) => ({ name: t.name, sql: nodeClient(t.node, { connectTimeoutMs: spec.connectTimeoutMs }) }));
  try {
    const out: TableVerification[] = [];
    for (const table of spec.tables) {
      const shape = await readTableShape(source, table, spec.source.name);
      for (const target of targets) {
        const belongs = (key: string) => spec.fromSource(key) && spec.destination(key) === target.name;
        let diff = compare(await hashes(source, shape, belongs), await hashes(target.sql, shape, belongs));
        const compared = diff.compared; // a recheck looks at the differing keys only
        if (diff.size > 0 && opts.settle) {
          await opts.settle();
          const keys = [...diff.keys()];
          diff = compare(await hashes(source, shape, belongs, keys), await hashes(target.sql, shape, belongs, keys));
        }
        const of = (kind: string) => [...diff].filter(([, k]) => k === kind).map(([key]) => key);
        const limit = opts.listAtMost ?? 20;
        const missing = of("missing"), extra = of("extra"), different = of("different");
        out.push({
          table: table.name, target: target.name, compared,
          counts: { missing: missing.length, extra: extra.length, different: different.length },
          missing: missing.slice(0, limit), extra: extra.slice(0, limit), different: different.slice(0, limit),
        });
      }
    }
    return out;
  } finally {
    await Promise.all([source, ...targets.map((t) => t.sql)].map((c) => c.end({ timeout: 1 })));
  }
}

/** Primary key text → md5 of the row's text, for the rows whose shard key `belongs`; only `keys` if given. */
async function hashes(sql: postgres.Sql, shape: TableShape, belongs: (key: string) => boolean, keys?: string[]): Promise<Map<string, string>> {
  const key = quoteIdent(shape.columns[shape.keyIndex].name);
  // One column: its text; several: the row of them, e.g. (a,b).
  const pk = shape.primaryKey.length === 1 ? `${quoteIdent(shape.primaryKey[0])}::text` : `row(${shape.primaryKey.map(quoteIdent).join(", ")})::text`;
  const where = keys ? ` where ${pk} in (select jsonb_array_elements_text($1::text::jsonb))` : "";
  const rows = await sql.unsafe<{ k: string; pk: string; h: string }[]>(
    `select ${key}::text as k, ${pk} as pk, md5(t::text) as h from ${shape.qualified} t${where}`,
    keys ? [JSON.stringify(keys)] : [],
  );
  const out = new Map<string, string>();
  for (const r of rows) if (belongs(r.k)) out.set(r.pk, r.h);
  return out;
}

function compare(source: Map<string, string>, target: Map<string, string>): Map<string, "missing" | "extra" | "different"> & { compared: number } {
  const diff = Object.assign(new Map<string, "missing" | "extra" | "different">(), { compared: source.size });
  for (const [k, h] of source) {
    const t = target.get(k);
    if (t === undefined) diff.set(k, "missing");
    else if (t !== h) diff.set(k, "different");
  }
  for (const k of target.keys()) if (!source.has(k)) diff.set(k, "extra");
  return diff;
}
