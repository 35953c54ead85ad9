// Running the Deno binary that the `deno` npm package installed. Called directly (not through
// node_modules/.bin, a Node wrapper) so the process we wait for is Deno itself.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";

export const root = new URL("../..", import.meta.url).pathname;

export function denoBinary(): string {
  const libc = process.platform === "linux" ? "-glibc" : "";
  const exe = process.platform === "win32" ? "deno.exe" : "deno";
  const candidates = [
    join(root, "node_modules", "@deno", `${process.platform}-${process.arch}${libc}`, exe),
    join(root, "node_modules", "deno", exe),
  ];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`no Deno binary in ${candidates.join(" or ")}: run npm ci`);
  return found;
}

/**
 * Deno runs the SDK sources with sdk/deno.json (its JSR config: the npm: import map; the sources
 * import ".ts" files, so no sloppy imports), the npm packages taken from this repository's node_modules.
 */
export const denoSdkFlags = ["--config", "sdk/deno.json", "--node-modules-dir=manual"];

export interface Finished { code: number | null; output: string }

/** Runs deno with `args` from the repository root; its cache in node_modules, no update check, no colours. */
export function runDeno(args: string[], env: Record<string, string> = {}): Promise<Finished> {
  return new Promise((resolve, reject) => {
    // Deno reads any FORCE_COLOR (test/run.ts sets "0") as "use colours".
    const { FORCE_COLOR: _, ...inherited } = process.env;
    const child = spawn(denoBinary(), args, {
      cwd: root,
      env: { ...inherited, DENO_DIR: join(root, "node_modules", ".cache", "deno"), DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output }));
  });
}
