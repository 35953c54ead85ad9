// Creating node data directories.
//
// Why one initdb + copies: initdb is ~1 s of CPU; on 2 cores five parallel initdbs take ~2.2 s,
// while one initdb plus `cp -a` of the 40 MB result per extra node takes ~1.3 s. The copies share a
// system identifier, which only matters to physical replication (replicas are copies anyway).
//
// Why each data dir appears by rename: a run killed mid-copy leaves only `*.tmp`, never a half
// data dir that looks initialised; the next start deletes the debris and copies again. `prepare`
// runs on the copy before the rename, so a replica's data dir never exists without standby.signal
// (a never-started copy of the template is a valid standby of a primary made from the same template).
import { execFile } from "node:child_process";
import { chown, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { pgBinaries, runTool, type RunAs } from "./pg-install.js";

const execFileAsync = promisify(execFile);

export interface InitOptions {
  dataDir: string;          // cluster dir; the template is built in <dataDir>/.initdb
  user: string;
  password: string;
  database: string;
  runAs: RunAs;
  log: (line: string) => void;
  /** Finishes a copy before it is renamed into place: `pgdata` is the copy, `target` its final path. */
  prepare?: (pgdata: string, target: string) => Promise<void>;
}

/** Creates each of `targets` (absolute data dir paths that do not exist yet) as an initialised cluster. */
export async function createDataDirs(targets: string[], opts: InitOptions): Promise<void> {
  const work = join(opts.dataDir, ".initdb");
  await rm(work, { recursive: true, force: true }); // debris of a run killed mid-init
  if (targets.length === 0) return;
  const bin = await pgBinaries();
  const { runAs } = opts;
  const template = join(work, "data");
  const pwfile = join(work, "pwfile");
  await mkdir(work, { mode: 0o700 });
  if (runAs.uid !== undefined) await chown(work, runAs.uid, runAs.gid!);

  const t0 = Date.now();
  await writeFile(pwfile, opts.password + "\n", { mode: 0o600 });
  if (runAs.uid !== undefined) await chown(pwfile, runAs.uid, runAs.gid!);
  try {
    await runTool(bin.initdb, [
      `--pgdata=${template}`,
      `--username=${opts.user}`,
      `--pwfile=${pwfile}`,
      "--auth=scram-sha-256",
      // C collation: text sorts by byte order, identically on every shard and in the router.
      "--no-locale",
      "--encoding=UTF8",
      "--no-instructions",
    ], runAs);
  } finally {
    await rm(pwfile, { force: true });
  }
  // Single-user mode creates the database without a port or a password round trip, so "every data
  // dir has the database" holds before any server starts. exit_on_error makes an ERROR fail the run.
  await runTool(bin.postgres, ["--single", "-D", template, "-c", "exit_on_error=on", "postgres"], runAs,
    `CREATE DATABASE "${opts.database.replaceAll('"', '""')}";\n`);
  opts.log(`initdb done in ${((Date.now() - t0) / 1000).toFixed(1)}s; creating ${targets.length} data dir(s)`);

  // The last target takes the template itself; the others are copies (cp -a keeps owner and modes).
  const copies = targets.slice(0, -1);
  await Promise.all(copies.map(async (target) => {
    await rm(`${target}.tmp`, { recursive: true, force: true });
    await execFileAsync("cp", ["-a", template, `${target}.tmp`]);
    await opts.prepare?.(`${target}.tmp`, target);
    await rename(`${target}.tmp`, target);
  }));
  const last = targets[targets.length - 1];
  await opts.prepare?.(template, last);
  await rename(template, last);
  await rm(work, { recursive: true, force: true });
}
