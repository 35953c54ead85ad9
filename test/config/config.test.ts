import { test } from "uvu";
import * as assert from "uvu/assert";
import { ConfigError, parseConfig } from "../../server/config/config.js";

const node = { host: "127.0.0.1", port: 5432, database: "db", user: "u", password: "secret-pw" };

function error(raw: unknown): string {
  try {
    parseConfig(raw, "test.json");
  } catch (err) {
    assert.instance(err, ConfigError);
    assert.not.ok((err as Error).message.includes("secret-pw"), "a password leaked into an error");
    return (err as Error).message;
  }
  throw new Error("expected the config to be rejected");
}

test("a minimal config gets defaults", () => {
  const c = parseConfig({ shards: [{ name: "s0", nodes: [node] }] });
  assert.is(c.listen.port, 8080);
  assert.is(c.listen.host, "127.0.0.1");
  assert.is(c.placement.strategy, "hash_ring");
  assert.is(c.pool.max, 10);
  assert.is(c.shards[0].nodes[0].role, "primary");
});

test("tables: empty by default (nothing known); a table is sharded or reference, not both", () => {
  const bare = parseConfig({ shards: [{ name: "s0", nodes: [node] }] });
  assert.equal(bare.tables, { sharded: {}, reference: [] });
  const c = parseConfig({ shards: [{ name: "s0", nodes: [node] }], tables: { sharded: { accounts: "id", "app.orders": "account_id" }, reference: ["currencies"] } });
  assert.equal(c.tables.sharded, { accounts: "id", "app.orders": "account_id" });
  assert.match(error({ shards: [{ name: "s0", nodes: [node] }], tables: { sharded: { currencies: "code" }, reference: ["currencies"] } }), `tables.reference: "currencies" is also in tables.sharded`);
  assert.match(error({ shards: [{ name: "s0", nodes: [node] }], tables: { sharded: { accounts: "" } } }), "tables.sharded.accounts");
  assert.match(error({ shards: [{ name: "s0", nodes: [node] }], tables: { shardedd: {} } }), "tables");
});

test("errors name the bad field", () => {
  assert.match(error({ shards: [{ name: "s0", nodes: [{ ...node, port: "5432" }] }] }), "shards[0].nodes[0].port");
  assert.match(error({ shards: [] }), "shards");
  assert.match(error({ shards: [{ name: "s0", nodes: [node] }], pool: { max: 0 } }), "pool.max");
  assert.match(error({ shards: [{ name: "s0", nodes: [node] }], bogus: 1 }), "bogus");
  assert.match(error({ shards: [{ name: "s0", nodes: [node] }, { name: "s0", nodes: [node] }] }), 'shards[1].name: duplicate shard name "s0"');
  assert.match(error({ shards: [{ name: "s0", nodes: [{ ...node, role: "replica" }] }] }), "shards[0].nodes: needs exactly one");
  assert.match(error({ shards: [{ name: "s0", nodes: [{ ...node, password: undefined, passwordEnv: "NO_SUCH_VAR_X" }] }] }), "NO_SUCH_VAR_X is not set");
  assert.match(error({ shards: [{ name: "s0", nodes: [node] }], placement: { strategy: "nope" } }), "placement");
});

test.run();
