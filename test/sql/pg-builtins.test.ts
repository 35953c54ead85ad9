// server/sql/pg-builtins.ts must list exactly the built-in functions and operators of the PostgreSQL
// that npm installs: a name missing from it costs an isolated connection per call; a name in it that
// the server lacks could be a user's function run on a shared connection.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as assert from "uvu/assert";
import postgres from "postgres";
import { startLocalCluster } from "../../server/dev-cluster/local-cluster.js";
import { readBuiltins, renderBuiltins } from "../../tools/pg-builtins.js";
import { test } from "../harness/uvu.js";

test("server/sql/pg-builtins.ts is what the installed PostgreSQL reports (npm run generate:pg-builtins)", async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "shardrouter-builtins-"));
  const cluster = await startLocalCluster({ dataDir, shards: 1, replicas: 0 });
  const node = cluster.shards[0].nodes[0];
  const sql = postgres({ host: node.host, port: node.port, database: node.database, user: node.user, password: node.password, max: 1 });
  try {
    const builtins = await readBuiltins(sql);
    assert.ok(builtins.functions.includes("set_config") && builtins.operators.includes("="), "the query finds built-ins");
    const committed = readFileSync(new URL("../../server/sql/pg-builtins.ts", import.meta.url), "utf8");
    assert.ok(committed === renderBuiltins(builtins), "server/sql/pg-builtins.ts is stale: run npm run generate:pg-builtins");
  } finally {
    await sql.end();
    await cluster.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test.run();
