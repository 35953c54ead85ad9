// Patches postgres.js 3.4.9 after install (npm's postinstall). Each patch is idempotent (found by its
// marker) and the script fails loudly when the installed postgres.js is not the version it knows, so
// an upgrade has to decide whether each is still needed. test/shards/postgres-patches.test.ts tests
// every path they change.
//
// 1. A statement started on a reserved connection just as its socket closed is written to the null
//    socket from a timer, which throws outside any promise and kills the process (the bank test's
//    shard restart hits it). Patched: such a statement is rejected with CONNECTION_CLOSED, and the
//    connection stays where the pool put it.
// 2. With fetch_types: false (the router's setting), reserve() never settles when it has to open a
//    connection: ReadyForQuery returns before handing the new connection to the waiting reserve
//    (upstream porsager/postgres#751 and #1219, fix proposed in #1220). A transaction on a pool whose
//    connections idled out or died with a restarted shard waited forever, holding its admission slot.
//    Patched as upstream proposes: the new connection falls through to onopen(), which serves the reserve.
// 3. query.cancel() drops the promise of the cancel request (it returns `null`), so nobody can know
//    when Postgres has it. A cancel request names a backend, not a statement: the router must not
//    hand the connection to the next caller before the request has arrived, or it cancels that
//    caller's statement instead (seen: ExecuteOnAll cancelling a finished sibling). Patched: cancel()
//    returns the promise, which settles once the postmaster has taken the request.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

// The package's own folder (its exports hide package.json from resolution): next to this repo's root.
const root = join(dirname(fileURLToPath(import.meta.url)), "..", "node_modules", "postgres");
const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));

const patches = [
  {
    marker: "/* shardrouter: no socket */",
    original: `  function execute(q) {
    if (terminated)
      return queryError(q, Errors.connection('CONNECTION_DESTROYED', options))
`,
    patched: `  function execute(q) {
    if (terminated)
      return queryError(q, Errors.connection('CONNECTION_DESTROYED', options))

    if (!socket) /* shardrouter: no socket */
      return queryError(q, Errors.connection('CONNECTION_CLOSED', options)), true
`,
  },
  {
    marker: "/* shardrouter: reserve on a new connection */",
    original: `      initial && !initial.reserve && execute(initial)
      options.shared.retries = retries = 0
      initial = null
      return
    }
`,
    patched: `      const reserving = initial && initial.reserve /* shardrouter: reserve on a new connection */
      initial && !initial.reserve && execute(initial)
      options.shared.retries = retries = 0
      initial = null
      if (!reserving)
        return
    }
`,
  },
];

const queryPatches = [
  {
    marker: "/* shardrouter: cancel promise */",
    original: `  cancel() {
    return this.canceller && (this.canceller(this), this.canceller = null)
  }
`,
    patched: `  cancel() { /* shardrouter: cancel promise */
    const canceller = this.canceller
    this.canceller = null
    return canceller ? canceller(this) : Promise.resolve()
  }
`,
  },
];

for (const [file, list] of [
  ["src/connection.js", patches], ["cjs/src/connection.js", patches], ["src/query.js", queryPatches], ["cjs/src/query.js", queryPatches],
]) {
  const path = join(root, file);
  let text = readFileSync(path, "utf8");
  for (const { marker, original, patched } of list) {
    if (text.includes(marker)) continue;
    if (version !== "3.4.9" || !text.includes(original)) {
      throw new Error(`tools/patch-postgres.mjs knows postgres 3.4.9, found ${version} (${file}): check whether the patch is still needed`);
    }
    text = text.replace(original, patched);
  }
  writeFileSync(path, text);
}
