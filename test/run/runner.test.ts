// test/run.ts must end, green or red: a hung file fails within its timeout, with a message that
// names it, shows its last output and what it was waiting on, and the files after it still run.
import { spawn } from "node:child_process";
import * as assert from "uvu/assert";
import { test } from "../harness/uvu.js";

const root = new URL("../..", import.meta.url).pathname;

function runner(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", "test/run.ts", ...args], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    child.on("close", (code) => resolve({ code, output }));
  });
}

test("a hung file fails after its timeout, names itself and what it waited on; the others still run", async () => {
  const { code, output } = await runner(["--timeout", "3", "--dir", "test/run/fixtures"]);
  assert.is(code, 1, output);
  assert.match(output, "test/run/fixtures/hang.test.ts timed out after 3 s");
  assert.match(output, "hang fixture: waiting for an answer that never comes");
  assert.match(output, /Still waiting on:[\s\S]*tcp :\d+ -> 127\.0\.0\.1:\d+/);
  assert.match(output, "test/run/fixtures/pass.test.ts");
  assert.match(output, /^1 passed, 1 failed$/m);
});

test("without a hung file the runner is green", async () => {
  const { code, output } = await runner(["--timeout", "30", "--dir", "test/run/fixtures", "pass"]);
  assert.is(code, 0, output);
  assert.match(output, /^1 passed, 0 failed$/m);
});

test.run();
