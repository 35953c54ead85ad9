// Patches postgres.js 3.4.9 after install (npm's postinstall): a statement started on a reserved
// connection just as its socket closed is written to the null socket from a timer, which throws
// outside any promise and kills the process (the bank test's shard restart hits it). The patch
// rejects such a statement with CONNECTION_CLOSED instead, and leaves the connection where the pool
// put it. Idempotent; fails loudly when the installed postgres.js is not the version it knows.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

// The package's own folder (its exports hide package.json from resolution): next to this repo's root.
const root = join(dirname(fileURLToPath(import.meta.url)), "..", "node_modules", "postgres");
const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const marker = "/* shardrouter: no socket */";
const original = `  function execute(q) {
    if (terminated)
      return queryError(q, Errors.connection('CONNECTION_DESTROYED', options))
`;
const patched = `  function execute(q) {
    if (terminated)
      return queryError(q, Errors.connection('CONNECTION_DESTROYED', options))

    if (!socket) ${marker}
      return queryError(q, Errors.connection('CONNECTION_CLOSED', options)), true
`;

for (const file of ["src/connection.js", "cjs/src/connection.js"]) {
  const path = join(root, file);
  const text = readFileSync(path, "utf8");
  if (text.includes(marker)) continue;
  if (version !== "3.4.9" || !text.includes(original)) {
    throw new Error(`tools/patch-postgres.mjs knows postgres 3.4.9, found ${version} (${file}): check whether the patch is still needed`);
  }
  writeFileSync(path, text.replace(original, patched));
}
