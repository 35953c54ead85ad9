// Runs the `shardrouter` command from its source (sdk/src/cli/main.ts through tsx, as `npm run
// shardrouter` does) in a child process, stdout a pipe (so: no terminal, no colours). The caller's
// SHARDROUTER_URL and SHARDROUTER_TOKEN are never inherited: a test passes what it means.
import { spawn } from "node:child_process";

const root = new URL("../..", import.meta.url).pathname;

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  const { SHARDROUTER_URL: _u, SHARDROUTER_TOKEN: _t, ...inherited } = process.env;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "sdk/src/cli/main.ts", ...args], {
      cwd: root, env: { ...inherited, ...env }, stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** The lines of a text, without the empty one after its last newline. */
export const lines = (text: string): string[] => text.split("\n").filter((l, i, all) => l !== "" || i < all.length - 1);
