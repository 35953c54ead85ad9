// Runs every test file in its own process (each starts and tears down its own Postgres clusters),
// then prints the closing line CI reads: "N passed, N failed".
// A file that throws at import, or exits non-zero without a uvu summary, counts as one failure.
import { spawn } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const filter = process.argv.slice(2);

function findTests(dir: string): string[] {
  return readdirSync(dir).sort().flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return findTests(path);
    return name.endsWith(".test.ts") ? [path] : [];
  });
}

interface FileOutcome { file: string; passed: number; failed: number; code: number | null; output: string }

function runFile(file: string): Promise<FileOutcome> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", file], {
      cwd: root,
      env: { ...process.env, FORCE_COLOR: "0", NODE_DISABLE_COLORS: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d) => { output += d; process.stdout.write(d); });
    child.stderr.on("data", (d) => { output += d; process.stderr.write(d); });
    child.on("close", (code) => {
      const total = Number(/Total:\s+(\d+)/.exec(output)?.[1] ?? 0);
      const passed = Number(/Passed:\s+(\d+)/.exec(output)?.[1] ?? 0);
      // uvu's Total already leaves skipped tests out.
      let failed = total - passed;
      // No summary or a non-zero exit with nothing counted: the file itself failed.
      if (code !== 0 && failed === 0) failed = 1;
      resolve({ file: relative(root, file), passed, failed, code, output });
    });
  });
}

const files = findTests(join(root, "test")).filter((f) => filter.length === 0 || filter.some((p) => f.includes(p)));
let passed = 0;
let failed = 0;
const failures: string[] = [];
for (const file of files) {
  console.log(`\n## ${relative(root, file)}`);
  const outcome = await runFile(file);
  passed += outcome.passed;
  failed += outcome.failed;
  if (outcome.failed > 0) failures.push(`${outcome.file} (${outcome.failed} failed, exit ${outcome.code})`);
}
if (failures.length) console.log(`\nFailing files:\n  ${failures.join("\n  ")}`);
console.log(`\n${passed} passed, ${failed} failed`);
process.exitCode = failed > 0 || files.length === 0 ? 1 : 0;
