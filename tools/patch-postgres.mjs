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
// 4. A cancel that finds nothing to cancel must say so at once. cancel() on a query that already
//    ended stored a callback nobody ever called, so the caller waited forever; and a query cancelled
//    in the tick between being started and being handed to a connection still went to it: the
//    connection skipped it but was parked as "full", so a pooled connection was lost for good and a
//    reserved one never ran its next statement (its ROLLBACK hung). Patched: cancel() on an ended
//    query resolves at once and sends nothing; a query cancelled before it was handed over never is.
// 5. A cancel request sent while its query runs may arrive after the query ended (the request goes
//    over a connection of its own). postgres.js hands the connection to the next query at
//    ReadyForQuery, so the late request cancelled that one: another caller's statement, or the
//    ROLLBACK of the same transaction. Patched: after ReadyForQuery the connection takes no new
//    query until the cancel request for the one that just ended has been delivered or has failed
//    (bounded by connect_timeout); queries given to it meanwhile wait on it, or fail if it closes.
// 6. A COPY TO whose reader is slower than the server pauses the socket (the stream's buffer is
//    full); when the stream's last row and CopyDone arrive in that state, nobody reads from the
//    stream again, so nothing resumes the socket and the connection never sees ReadyForQuery: the
//    next statement on it (the resharder's COMMIT after its copy) hung. Patched: CopyDone resumes it.
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
  {
    marker: "/* shardrouter: held for a cancel */",
    original: `    , final = null
`,
    patched: `    , final = null
    , holding = null /* shardrouter: held for a cancel */
    , held = []
`,
  },
  {
    marker: "/* shardrouter: hold while a cancel is on its way */",
    original: `    if (q.cancelled)
      return
`,
    patched: `    if (q.cancelled)
      return

    if (holding) /* shardrouter: hold while a cancel is on its way */
      return held.push(q), false
`,
  },
  {
    marker: "/* shardrouter: fail held queries on close */",
    original: `    socket.removeAllListeners()
    socket = null
`,
    patched: `    socket.removeAllListeners()
    socket = null
    if (holding) { /* shardrouter: fail held queries on close */
      holding = null
      held.splice(0).forEach(q => queryError(q, Errors.connection('CONNECTION_CLOSED', options)))
    }
`,
  },
  {
    marker: "/* shardrouter: the cancelled query */",
    original: `  function ReadyForQuery(x) {
    if (query) {
`,
    patched: `  function ReadyForQuery(x) {
    const cancelling = query && query.cancelling /* shardrouter: the cancelled query */
    if (query) {
`,
  },
  {
    marker: "/* shardrouter: hand over after the cancel */",
    original: `    if (query)
      return // Consider opening if able and sent.length < 50

    connection.reserved
      ? !connection.reserved.release && x[5] === 73 // I
        ? ending
          ? terminate()
          : (connection.reserved = null, onopen(connection))
        : connection.reserved()
      : ending
        ? terminate()
        : onopen(connection)
  }
`,
    patched: `    if (query)
      return // Consider opening if able and sent.length < 50

    if (cancelling) { /* shardrouter: hand over after the cancel */
      const hold = holding = {}
      const status = x[5]
      return cancelling.then(() => {
        if (holding !== hold)
          return // the socket closed meanwhile, and the held queries failed with it
        holding = null
        held.length
          ? held.splice(0).forEach(execute)
          : handOver(status)
      })
    }
    handOver(x[5])
  }

  function handOver(status) {
    connection.reserved
      ? !connection.reserved.release && status === 73 // I
        ? ending
          ? terminate()
          : (connection.reserved = null, onopen(connection))
        : connection.reserved()
      : ending
        ? terminate()
        : onopen(connection)
  }
`,
  },
  {
    marker: "/* shardrouter: resume after CopyDone */",
    original: `  function CopyDone() {
    stream && stream.push(null)
    stream = null
  }
`,
    patched: `  function CopyDone() {
    stream && stream.push(null)
    stream = null
    socket && socket.isPaused() && socket.resume() /* shardrouter: resume after CopyDone */
  }
`,
  },
];

const poolPatches = [
  {
    marker: "/* shardrouter: cancelling promise */",
    original: `        ? query.active
          ? Connection(options).cancel(query.state, resolve, reject)
`,
    patched: `        ? query.active /* shardrouter: cancelling promise */
          ? query.cancelling = new Promise((sent, failed) => Connection(options).cancel(query.state, sent, failed)).then(resolve, reject)
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
  {
    marker: "/* shardrouter: nothing to cancel */",
    original: `    const canceller = this.canceller
    this.canceller = null
    return canceller ? canceller(this) : Promise.resolve()
`,
    patched: `    const canceller = this.canceller
    this.canceller = null
    if (this.settled) /* shardrouter: nothing to cancel */
      return Promise.resolve()
    return canceller ? canceller(this) : Promise.resolve()
`,
  },
  {
    marker: "/* shardrouter: settled */",
    original: `    this.resolve = x => (this.active = false, resolve(x))
    this.reject = x => (this.active = false, reject(x))
`,
    patched: `    this.resolve = x => (this.active = false, this.settled = true, resolve(x)) /* shardrouter: settled */
    this.reject = x => (this.active = false, this.settled = true, reject(x))
`,
  },
  {
    marker: "/* shardrouter: cancelled before handed over */",
    original: `    !this.executed && (this.executed = true) && await 1 && this.handler(this)
`,
    patched: `    !this.executed && (this.executed = true) && await 1 && !this.cancelled && this.handler(this) /* shardrouter: cancelled before handed over */
`,
  },
];

for (const [file, list] of [
  ["src/connection.js", patches], ["cjs/src/connection.js", patches], ["src/query.js", queryPatches], ["cjs/src/query.js", queryPatches],
  ["src/index.js", poolPatches], ["cjs/src/index.js", poolPatches],
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
