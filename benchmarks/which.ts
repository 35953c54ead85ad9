// Finds an optional tool (h2load, pgbouncer) without installing anything: the bench skips its rows
// with a note when the tool is missing.
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

/** The executable `name` on PATH (or in `extraDirs`: Debian puts pgbouncer in /usr/sbin), or undefined. */
export function which(name: string, extraDirs: string[] = []): string | undefined {
  for (const dir of [...(process.env.PATH ?? "").split(delimiter), ...extraDirs]) {
    if (!dir) continue;
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return undefined;
}
