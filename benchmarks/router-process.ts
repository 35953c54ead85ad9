// The router as its own process, as it is deployed: compiled (`node dist/server/main.js --config FILE`,
// dist/ rebuilt first when a source changed) or, to compare, its sources through tsx; and the naive
// reference servers next to it (through tsx). Their CPU time is read from /proc/<pid>/stat apart from
// the client's, and with `profileDir` they run under `node --cpu-prof` (the profile is written when
// they exit on SIGINT).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type RouterRuntime, ensureServerBuilt, routerNodeArgs } from "../tools/build-server.js";

const root = new URL("..", import.meta.url).pathname;

export interface ServerProcess {
  readonly pid: number;
  readonly url: string;
  /** Milliseconds from spawn to the `ready` line in its output. */
  readonly readyMs: number;
  /** SIGINT (a clean shutdown, which also writes the CPU profile), SIGKILL after 20 s. */
  stop(): Promise<void>;
}

/** Starts `node [--cpu-prof] <args>` in the repository; resolves once its output shows `ready`. */
export async function spawnServer(
  args: string[], ready: string, port: number, opts: { profileDir?: string; env?: Record<string, string> } = {},
): Promise<ServerProcess> {
  const profile = opts.profileDir ? ["--cpu-prof", `--cpu-prof-dir=${opts.profileDir}`] : [];
  const started = performance.now();
  let readyMs = NaN;
  const child = spawn(process.execPath, [...profile, ...args], {
    cwd: root, env: { ...process.env, ...opts.env }, stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const keep = (d: Buffer) => { if (out.length < 100_000) out += d; }; // a chatty server must not grow our memory
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  let stopping = false;
  const exited = new Promise<void>((resolve) => child.once("exit", (code, signal) => {
    if (!stopping) console.error(`${args[0]} exited unexpectedly (${signal ?? `exit ${code}`}):\n${out.slice(-4000)}`);
    resolve();
  }));
  let timer: NodeJS.Timeout | undefined;
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", () => { if (Number.isNaN(readyMs) && out.includes(ready)) { readyMs = performance.now() - started; resolve(); } });
    void exited.then(() => reject(new Error(`${args.join(" ")} ended before serving:\n${out}`)));
    timer = setTimeout(() => reject(new Error(`${args.join(" ")} did not serve within 60 s:\n${out}`)), 60_000);
  }).catch((err) => { stopping = true; child.kill("SIGKILL"); throw err; }).finally(() => clearTimeout(timer));
  return {
    pid: child.pid!,
    url: `http://127.0.0.1:${port}`,
    readyMs,
    async stop() {
      stopping = true;
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGINT");
      const kill = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(kill);
    },
  };
}

export interface RouterSpawnOptions {
  profileDir?: string;
  /** "compiled" (default): dist/server/main.js, built first when stale; "tsx": server/main.ts through tsx. */
  runtime?: RouterRuntime;
  /** Where a build of dist/ is told about. */
  log?: (line: string) => void;
  /** More environment for the router process. */
  env?: Record<string, string>;
}

/** The router with `--config <config as a file>`. */
export async function spawnRouter(config: { listen: { port: number } }, opts: RouterSpawnOptions = {}): Promise<ServerProcess> {
  const runtime = opts.runtime ?? "compiled";
  if (runtime === "compiled") await ensureServerBuilt(opts.log ?? console.log);
  const dir = mkdtempSync(join(tmpdir(), "shardrouter-bench-router-"));
  const configFile = join(dir, "router.json");
  writeFileSync(configFile, JSON.stringify(config), { mode: 0o600 });
  try {
    const insecure = (config as { auth?: unknown }).auth === undefined ? ["--insecure"] : [];
    const server = await spawnServer([...routerNodeArgs(runtime), "--config", configFile, ...insecure], "is serving on", config.listen.port, opts);
    return { ...server, stop: () => server.stop().finally(() => rmSync(dir, { recursive: true, force: true })) };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

export interface NodeAddress { host: string; port: number; database: string; user: string; password: string }

/** benchmarks/reference-server.ts over one node (gRPC over h2c only); the connection goes by environment, not argv. */
export async function spawnReference(
  mode: "connect" | "raw", node: NodeAddress, port: number, max: number, opts: { profileDir?: string } = {},
): Promise<ServerProcess> {
  const { host, port: nodePort, database, user, password } = node;
  const env = { REFERENCE_SERVER: JSON.stringify({ mode, port, max, node: { host, port: nodePort, database, user, password } }) };
  return spawnServer(["--import", "tsx", "benchmarks/reference-server.ts"], "is serving on", port, { ...opts, env });
}
