// The API contract: buf lint (STANDARD) is clean, and gen/ (and the SDK's copy) is exactly what `buf generate` makes from
// proto/ today, so nobody edits generated code by hand or forgets to regenerate.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";

const root = new URL("../..", import.meta.url).pathname;
const buf = join(root, "node_modules/.bin/buf");
const env = { ...process.env, PATH: `${join(root, "node_modules/.bin")}:${process.env.PATH}` };

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

test("buf lint is clean", () => {
  const out = execFileSync(buf, ["lint"], { cwd: root, env, encoding: "utf8" });
  assert.is(out.trim(), "");
});

// gen/ for the server, and sdk/src/gen/ (".ts" imports) for the SDK package: each is exactly what its template makes.
for (const [template, dir] of [["buf.gen.yaml", "gen"], ["buf.gen.sdk.yaml", "sdk/src/gen"]]) {
  test(`${dir}/ is what buf generate --template ${template} produces from proto/`, () => {
    const out = mkdtempSync(join(tmpdir(), "shardrouter-gen-"));
    try {
      execFileSync(buf, ["generate", "--template", template, "-o", out], { cwd: root, env, encoding: "utf8" });
      const fresh = files(join(out, dir)).map((f) => relative(join(out, dir), f)).sort();
      const committed = files(join(root, dir)).map((f) => relative(join(root, dir), f)).sort();
      assert.equal(committed, fresh, "the same files");
      for (const f of fresh) {
        assert.is(readFileSync(join(root, dir, f), "utf8"), readFileSync(join(out, dir, f), "utf8"), `${dir}/${f} is stale: run npm run generate`);
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
}

test.run();
