// Reads a router's GET /metrics and parses the Prometheus text format, enough to look up one sample
// by name and labels. (Not a test file: the runner only picks up *.test.ts.)
import * as http from "node:http";
import * as assert from "uvu/assert";

export interface Sample { name: string; labels: Record<string, string>; value: number }

export interface Scrape {
  status: number;
  contentType: string;
  text: string;
  samples: Sample[];
  /** Names that have a `# TYPE` line. */
  families: Set<string>;
  /** The sum of every sample of `name` whose labels include `labels` (0 when none matches). */
  value(name: string, labels?: Record<string, string>): number;
  /** Like value, but the sample must exist. */
  has(name: string, labels?: Record<string, string>): boolean;
}

/** GET /metrics over plain HTTP/1.1 (what Prometheus does). */
export function scrape(baseUrl: string, path = "/metrics"): Promise<Scrape> {
  return new Promise((resolve, reject) => {
    http.get(new URL(path, baseUrl), { agent: false }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (text += d));
      res.on("end", () => resolve(parse(res.statusCode ?? 0, String(res.headers["content-type"] ?? ""), text)));
      res.on("error", reject);
    }).on("error", reject);
  });
}

function parse(status: number, contentType: string, text: string): Scrape {
  const samples: Sample[] = [];
  const families = new Set<string>();
  for (const line of text.split("\n")) {
    if (line.startsWith("# TYPE ")) families.add(line.split(" ")[2]);
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  const matching = (name: string, labels: Record<string, string> = {}) =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return {
    status, contentType, text, samples, families,
    value: (name, labels) => matching(name, labels).reduce((sum, s) => sum + s.value, 0),
    has: (name, labels) => matching(name, labels).length > 0,
  };
}
