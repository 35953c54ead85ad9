// The router as its own process (`server/main.ts --config FILE`), as it is deployed, and the naive
// reference server next to it: their CPU time is read from /proc/<pid>/stat apart from the client's,
// and with `profileDir` they run under `node --cpu-prof` (the profile is written when they exit on SIGINT).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;

export interface ServerProcess {
  readonly pid: number;
  readonly url: string;
  /** SIGINT (a clean shutdown, which also writes the CPU profile), SIGKILL after 20 s. */
  stop(): Promise<void>;
}

/** Starts `node [--cpu-prof] --import tsx <args>` in the repository; resolves once its output shows `ready`. */
export async function spawnServer(
  args: string[], ready: string, port: number, opts: { profileDir?: string; env?: Record<string, string> } = {},
): Promise<ServerProcess> {
  const profile = opts.profileDir ? ["--cpu-prof", `--cpu-prof-dir=${opts.profileDir}`] : [];
  const child = spawn(process.execPath, [...profile, "--import", "tsx", ...args], {
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
    child.stdout!.on("data", () => { if (out.includes(ready)) resolve(); });
    void exited.then(() => reject(new Error(`${args.join(" ")} ended before serving:\n${out}`)));
    timer = setTimeout(() => reject(new Error(`${args.join(" ")} did not serve within 60 s:\n${out}`)), 60_000);
  }).catch((err) => { stopping = true; child.kill("SIGKILL"); throw err; }).finally(() => clearTimeout(timer));
  return {
    pid: child.pid!,
    url: `http://127.0.0.1:${port}`,
    async stop() {
      stopping = true;
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGINT");
      const kill = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(kill);
    },
  };
}

/** `server/main.ts --config <config as a file>`. */
export async function spawnRouter(config: { listen: { port: number } }, opts: { profileDir?: string } = {}): Promise<ServerProcess> {
  const dir = mkdtempSync(join(tmpdir(), "shardrouter-bench-router-"));
  const configFile = join(dir, "router.json");
  writeFileSync(configFile, JSON.stringify(config), { mode: 0o600 });
  try {
    const insecure = (config as { auth?: unknown }).auth === undefined ? ["--insecure"] : [];
    const server = await spawnServer(["server/main.ts", "--config", configFile, ...insecure], "is serving on", config.listen.port, opts);
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
  return spawnServer(["benchmarks/reference-server.ts"], "is serving on", port, { ...opts, env });
}
