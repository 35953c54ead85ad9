// Verification of one source's move (the resharder's VDiff): every row the source gives a target is
// compared with the target's, by primary key and a hash of the whole row's text. A difference found
// while writes still flow may only be lag: those keys are looked at again at one consistent point,
// with their rows locked on the source (FOR SHARE: writers of just those rows wait) while the stream
// catches up (`settle`), so a key written again and again cannot keep looking different. Only what
// still differs then is reported. A cutover needs a report with none.
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
        if (diff.size > 0 && opts.settle) diff = await recheck(source, target.sql, shape, belongs, [...diff.keys()], opts.settle);
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

/**
 * The differing keys again, with their source rows locked: the stream then applies every change they
 * had (settle writes its marker after the locks), and nothing changes them until both sides are read.
 * A row the source lacks cannot be locked; one inserted meanwhile still reads as a difference.
 */
async function recheck(
  source: postgres.Sql, target: postgres.Sql, shape: TableShape, belongs: (key: string) => boolean, keys: string[], settle: () => Promise<void>,
): Promise<ReturnType<typeof compare>> {
  return source.begin(async (tx) => {
    // Writers of these rows wait at most this long; a transfer's own lock_timeout is shorter and it retries.
    await tx.unsafe("set local lock_timeout = '10s'");
    await tx.unsafe(`select 1 from ${shape.qualified} where ${primaryKeyText(shape)} in (select jsonb_array_elements_text($1::text::jsonb)) for share`, [JSON.stringify(keys)]);
    await settle();
    return compare(await hashes(tx, shape, belongs, keys), await hashes(target, shape, belongs, keys));
  }) as Promise<ReturnType<typeof compare>>;
}

/** The primary key as text: one column, its text; several, the row of them, e.g. (a,b). */
function primaryKeyText(shape: TableShape): string {
  return shape.primaryKey.length === 1 ? `${quoteIdent(shape.primaryKey[0])}::text` : `row(${shape.primaryKey.map(quoteIdent).join(", ")})::text`;
}

/** Primary key text → md5 of the row's text, for the rows whose shard key `belongs`; only `keys` if given. */
async function hashes(sql: Pick<postgres.Sql, "unsafe">, shape: TableShape, belongs: (key: string) => boolean, keys?: string[]): Promise<Map<string, string>> {
  const key = quoteIdent(shape.columns[shape.keyIndex].name);
  const pk = primaryKeyText(shape);
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
