// PgBouncer (Debian package `pgbouncer`) in front of one node, transaction pooling: the peer a router
// is usually compared with. Runs as the postgres OS user when we are root (PgBouncer refuses root).
import { spawn } from "node:child_process";
import { chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LocalNode } from "../server/dev-cluster/local-cluster.js";
import { postgresOsUser } from "../server/dev-cluster/pg-install.js";
import { pickFreePorts } from "../server/dev-cluster/ports.js";

export interface PgBouncer {
  readonly pid: number;
  readonly port: number;
  stop(): Promise<void>;
}

export async function startPgBouncer(binary: string, node: LocalNode, poolSize: number): Promise<PgBouncer> {
  const dir = mkdtempSync(join(tmpdir(), "shardrouter-bench-pgbouncer-"));
  const [port] = await pickFreePorts(1);
  const ini = join(dir, "pgbouncer.ini");
  const quote = (s: string) => `'${s.replaceAll("'", "''")}'`;
  writeFileSync(ini, [
    "[databases]",
    `${node.database} = host=${node.host} port=${node.port} dbname=${node.database} user=${node.user} password=${quote(node.password)}`,
    "[pgbouncer]",
    "listen_addr = 127.0.0.1",
    `listen_port = ${port}`,
    "unix_socket_dir =",
    "auth_type = trust", // clients on loopback; PgBouncer logs in to Postgres with the password above
    `auth_file = ${join(dir, "users.txt")}`,
    "pool_mode = transaction",
    `default_pool_size = ${poolSize}`,
    "max_client_conn = 500",
    `logfile = ${join(dir, "pgbouncer.log")}`,
    "ignore_startup_parameters = extra_float_digits,options",
    "",
  ].join("\n"), { mode: 0o600 });
  writeFileSync(join(dir, "users.txt"), `"${node.user}" ""\n`, { mode: 0o600 });
  const runAs = await postgresOsUser();
  if (runAs.uid !== undefined) {
    for (const f of [dir, ini, join(dir, "users.txt")]) chownSync(f, runAs.uid, runAs.gid!);
  }
  const child = spawn(binary, [...(runAs.uid !== undefined ? ["-u", runAs.name] : []), ini], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const log = () => { try { return readFileSync(join(dir, "pgbouncer.log"), "utf8"); } catch { return ""; } };
  const deadline = Date.now() + 10_000;
  while (!(await canConnect(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`pgbouncer did not start:\n${out}\n${log()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    pid: child.pid!,
    port,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM"); // immediate shutdown
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => { s.destroy(); resolve(true); });
    s.once("error", () => resolve(false));
  });
}
