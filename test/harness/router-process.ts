// The router as a separate process over a test cluster, so a test can SIGKILL it (failpoints do it
// from inside) and start another, exactly as a crash and a restart happen in production.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import { devConfig } from "../../server/dev-cluster/dev-config.js";
import type { LocalCluster } from "../../server/dev-cluster/local-cluster.js";
import { pickFreePorts } from "../../server/dev-cluster/ports.js";
import { waitFor } from "./router-cluster.js";

const root = new URL("../..", import.meta.url).pathname;

export interface RouterProcess {
  readonly url: string;
  /** The config file it was started with (a test may rewrite it and send SIGHUP). */
  readonly configFile: string;
  readonly client: Client<typeof RouterService>;
  readonly process: ChildProcess;
  output(): string;
  /** Resolves with the signal or exit code when the process ends (a failpoint ends it with SIGKILL). */
  exited: Promise<string>;
  kill(signal?: NodeJS.Signals): Promise<string>;
}

export interface RouterProcessOptions {
  failpoints?: string;
  transactions?: object;
  port?: number;
  /** A whole config (its listen port is replaced) instead of the cluster's dev config. */
  config?: Record<string, unknown>;
  env?: Record<string, string>;
  /**
   * A compiled router's entry (`node <entry>`, e.g. tools/build-server.ts compiledMain()) instead of the
   * sources through tsx (`node --import tsx server/main.ts`).
   */
  entry?: string;
  /** The process's working directory; default the repository. */
  cwd?: string;
}

export async function startRouterProcess(cluster: LocalCluster, opts: RouterProcessOptions = {}): Promise<RouterProcess> {
  const port = opts.port ?? (await pickFreePorts(1))[0];
  const dir = mkdtempSync(join(tmpdir(), "shardrouter-proc-"));
  const configFile = join(dir, "router.json");
  const config = opts.config ? { ...opts.config, listen: { host: "127.0.0.1", port } } : devConfig(cluster, { port, transactions: opts.transactions });
  writeFileSync(configFile, JSON.stringify(config), { mode: 0o600 });
  // A config without auth is served only with --insecure (main.ts): most tests test other things.
  const insecure = (config as { auth?: unknown }).auth === undefined ? ["--insecure"] : [];
  const main = opts.entry ? [opts.entry] : ["--import", "tsx", "server/main.ts"];
  const child = spawn(process.execPath, [...main, "--config", configFile, ...insecure], {
    cwd: opts.cwd ?? root,
    env: { ...process.env, SHARDROUTER_FAILPOINTS: opts.failpoints ?? "", ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const exited = new Promise<string>((resolve) => child.once("exit", (code, signal) => {
    rmSync(dir, { recursive: true, force: true });
    resolve(signal ?? `exit ${code}`);
  }));
  await Promise.race([
    waitFor("the router process to serve", () => (out.includes("is serving on") ? true : undefined), 60_000),
    exited.then((how) => { throw new Error(`router process ended (${how}) before serving:\n${out}`); }),
  ]).catch((err) => {
    child.kill("SIGKILL"); // a router that never served must not outlive the caller's failure
    throw err;
  });
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    configFile,
    client: createClient(RouterService, createConnectTransport({ baseUrl: url, httpVersion: "1.1" })),
    process: child,
    output: () => out,
    exited,
    kill: (signal = "SIGKILL") => { if (child.exitCode === null && child.signalCode === null) child.kill(signal); return exited; },
  };
}
