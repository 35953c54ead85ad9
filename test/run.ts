// Runs every test file in its own process (each starts and tears down its own Postgres clusters),
// then prints the closing line CI reads: "N passed, N failed".
// A file that throws at import, or exits non-zero without a uvu summary, counts as one failure.
// A file that runs longer than its timeout fails too, so CI always ends: it is killed with everything
// it started (routers; its postgres servers stop when it dies), and the message names it, shows the
// end of its output and what it was still waiting on (sockets and timers, from Node's diagnostic report).
//   node --import tsx test/run.ts [--timeout SECONDS] [--dir DIR] [FILTER …]
//   (SHARDROUTER_TEST_TIMEOUT_S sets the default timeout: 600 s)
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";

const root = new URL("..", import.meta.url).pathname;
const { values: flags, positionals: filter } = parseArgs({
  options: { timeout: { type: "string" }, dir: { type: "string" } },
  allowPositionals: true,
});
const timeoutS = Number(flags.timeout ?? process.env.SHARDROUTER_TEST_TIMEOUT_S ?? 600);
if (!(timeoutS > 0)) throw new Error(`--timeout: "${flags.timeout}" is not a number of seconds`);
const testDir = resolve(root, flags.dir ?? "test");

/** Test files below `dir`; folders named `fixtures` hold files for tests of this runner, run only by --dir. */
function findTests(dir: string): string[] {
  return readdirSync(dir).sort().flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === "fixtures" ? [] : findTests(path);
    return name.endsWith(".test.ts") ? [path] : [];
  });
}

interface FileOutcome { file: string; passed: number; failed: number; code: number | null; seconds: number; timedOut: boolean }

/** The group of the file running now, so Ctrl-C or a SIGTERM of this runner ends it too. */
let running: number | undefined;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (running) killGroup(running);
    process.exit(130);
  });
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // gone already
  }
}

function runFile(file: string): Promise<FileOutcome> {
  const reports = mkdtempSync(join(tmpdir(), "shardrouter-test-report-"));
  const started = Date.now();
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, [
      // SIGUSR2 makes the file write a diagnostic report: what it waits on when it is hung.
      "--report-on-signal", "--report-signal=SIGUSR2", `--report-directory=${reports}`, "--report-compact",
      "--import", "tsx", file,
    ], {
      cwd: root,
      env: { ...process.env, FORCE_COLOR: "0", NODE_DISABLE_COLORS: "1" },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true, // its own process group: a timeout kills whatever it started, too
    });
    running = child.pid;
    let output = "";
    let timedOut = false;
    let waitingOn = "";
    child.stdout.on("data", (d) => { output += d; process.stdout.write(d); });
    child.stderr.on("data", (d) => { output += d; process.stderr.write(d); });
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        child.kill("SIGUSR2");
      } catch {
        // exited meanwhile
      }
      // The report is written within milliseconds; give it a second, then end the group.
      setTimeout(() => {
        waitingOn = summariseReport(reports);
        killGroup(child.pid!);
      }, 1000).unref();
    }, timeoutS * 1000);
    child.on("close", (code) => {
      clearTimeout(timer);
      running = undefined;
      rmSync(reports, { recursive: true, force: true });
      const seconds = (Date.now() - started) / 1000;
      const total = Number(/Total:\s+(\d+)/.exec(output)?.[1] ?? 0);
      const passed = Number(/Passed:\s+(\d+)/.exec(output)?.[1] ?? 0);
      // uvu's Total already leaves skipped tests out.
      let failed = total - passed;
      // No summary or a non-zero exit with nothing counted: the file itself failed.
      if ((code !== 0 || timedOut) && failed === 0) failed = 1;
      if (timedOut) {
        const tail = output.trimEnd().split("\n").slice(-30).join("\n      ");
        console.log(`\n!! ${relative(root, file)} timed out after ${timeoutS} s and was killed with everything it started.` +
          `\n   Last output:\n      ${tail || "(none)"}` +
          (waitingOn ? `\n   Still waiting on:\n      ${waitingOn}` : ""));
      }
      resolvePromise({ file: relative(root, file), passed, failed, code, seconds, timedOut });
    });
  });
}

/** The sockets and timers a hung file still holds, and its JavaScript stack, from its diagnostic report. */
function summariseReport(dir: string): string {
  try {
    const name = readdirSync(dir).find((f) => f.endsWith(".json"));
    if (!name) return "";
    const report = JSON.parse(readFileSync(join(dir, name), "utf8")) as {
      javascriptStack?: { stack?: string[] };
      libuv?: { type: string; is_active?: boolean; localEndpoint?: { port: number }; remoteEndpoint?: { host: string; ip4?: string; ip6?: string; port: number } }[];
    };
    const handles = (report.libuv ?? []).filter((h) => h.is_active && (h.type === "tcp" || h.type === "timer" || h.type === "process"));
    const lines = handles.map((h) => h.type === "tcp"
      ? `tcp :${h.localEndpoint?.port ?? "?"} -> ${h.remoteEndpoint ? `${h.remoteEndpoint.ip4 ?? h.remoteEndpoint.ip6 ?? h.remoteEndpoint.host}:${h.remoteEndpoint.port}` : "(listening)"}`
      : h.type);
    const stack = (report.javascriptStack?.stack ?? []).filter((l) => !l.includes("node:internal")).slice(0, 5);
    return [...lines, ...(stack.length ? ["stack:", ...stack] : [])].join("\n      ");
  } catch {
    return "";
  }
}

const files = findTests(testDir).filter((f) => filter.length === 0 || filter.some((p) => f.includes(p)));
let passed = 0;
let failed = 0;
const failures: string[] = [];
for (const file of files) {
  console.log(`\n## ${relative(root, file)}`);
  const outcome = await runFile(file);
  passed += outcome.passed;
  failed += outcome.failed;
  console.log(`## ${outcome.file}: ${outcome.seconds.toFixed(1)} s`);
  if (outcome.failed > 0) failures.push(`${outcome.file} (${outcome.timedOut ? `timed out after ${timeoutS} s` : `${outcome.failed} failed, exit ${outcome.code}`})`);
}
if (failures.length) console.log(`\nFailing files:\n  ${failures.join("\n  ")}`);
console.log(`\n${passed} passed, ${failed} failed`);
process.exitCode = failed > 0 || files.length === 0 ? 1 : 0;
