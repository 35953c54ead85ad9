// The router's production build: `tsc -p tsconfig.build.json` compiles server/ and gen/ to JavaScript
// (dist/server/main.js is the entry; no tsx at run time). The benchmarks and tests use these helpers
// to run what is deployed: `ensureServerBuilt` rebuilds dist/ when a source is newer than the last
// build, `buildServer` builds anywhere (a test builds into a folder of its own).
import { spawn } from "node:child_process";
import { existsSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";

export const repoRoot = new URL("..", import.meta.url).pathname;
export const distDir = join(repoRoot, "dist");
/** What tsconfig.build.json compiles (its `include`), and the files whose change calls for a rebuild. */
const sourceDirs = ["server", "gen"];
const configFiles = ["tsconfig.json", "tsconfig.build.json", "package.json"];
/** Written after each build by ensureServerBuilt, dated when that build started. */
const stampFile = join(distDir, ".built");
const buildInfo = join(distDir, "tsconfig.build.tsbuildinfo");

/** How a router process is started: the compiled entry (`node <outDir>/server/main.js`) or the sources through tsx. */
export type RouterRuntime = "compiled" | "tsx";

export function compiledMain(outDir = distDir): string {
  return join(outDir, "server", "main.js");
}

/** node's arguments that start the router (before its own flags); tsx's are relative to the repository. */
export function routerNodeArgs(runtime: RouterRuntime, outDir = distDir): string[] {
  return runtime === "compiled" ? [compiledMain(outDir)] : ["--import", "tsx", "server/main.ts"];
}

/**
 * Runs tsc with tsconfig.build.json; into `outDir` instead of dist/ when given (a full build there,
 * no incremental state). Resolves with the milliseconds it took; rejects with tsc's output.
 */
export function buildServer(opts: { outDir?: string } = {}): Promise<number> {
  const started = performance.now();
  const tsc = join(repoRoot, "node_modules", "typescript", "bin", "tsc");
  const args = [tsc, "-p", join(repoRoot, "tsconfig.build.json"), ...(opts.outDir ? ["--outDir", opts.outDir, "--incremental", "false"] : [])];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.once("error", reject);
    child.once("close", (code, signal) => {
      if (code === 0) resolve(performance.now() - started);
      else reject(new Error(`tsc -p tsconfig.build.json failed (${signal ?? `exit ${code}`}):\n${out.trim()}`));
    });
  });
}

function tsSources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return tsSources(path);
    return e.name.endsWith(".ts") && !e.name.endsWith(".d.ts") ? [path] : [];
  });
}

/** Why dist/ needs a build, or undefined when every source has its output and none changed since the last build. */
export function distStaleness(): { reason: string; outputsMissing: boolean } | undefined {
  const sources = sourceDirs.flatMap((d) => tsSources(join(repoRoot, d)));
  const missing = sources.find((source) => !existsSync(join(distDir, relative(repoRoot, source).replace(/\.ts$/, ".js"))));
  if (missing) return { reason: `${relative(repoRoot, missing)} has no output in dist/`, outputsMissing: true };
  if (!existsSync(stampFile)) return { reason: "dist/ was not built by this helper", outputsMissing: false };
  const builtAt = statSync(stampFile).mtimeMs;
  const changed = [...sources, ...configFiles.map((f) => join(repoRoot, f))].find((f) => statSync(f).mtimeMs > builtAt);
  return changed ? { reason: `${relative(repoRoot, changed)} changed`, outputsMissing: false } : undefined;
}

/**
 * Builds dist/ when it is missing or older than a source (tsc incremental), and returns the compiled
 * entry. A missing output makes tsc's incremental state a lie (it would not emit the file again), so
 * then the state is dropped and everything is emitted.
 */
export async function ensureServerBuilt(log: (line: string) => void = () => {}): Promise<string> {
  const stale = distStaleness();
  if (stale) {
    log(`building the router into dist/ (${stale.reason})`);
    const started = new Date();
    if (stale.outputsMissing) rmSync(buildInfo, { force: true });
    const ms = await buildServer();
    writeFileSync(stampFile, `${started.toISOString()}\n`);
    utimesSync(stampFile, started, started); // a source saved during the build is newer than the stamp
    log(`built dist/ in ${(ms / 1000).toFixed(1)} s`);
  }
  return compiledMain();
}
