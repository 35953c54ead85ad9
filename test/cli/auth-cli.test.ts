// `shardrouter` against a router with auth: the token comes from SHARDROUTER_TOKEN (or --token, which
// wins), no token or a wrong one exits 1 Unauthenticated, an identity without the right exits 1
// PermissionDenied; the token never appears in what the command prints.
import * as assert from "uvu/assert";
import { apiKey, clientFor } from "../auth/fixtures.js";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";
import { RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import { runCli } from "./run-cli.js";

let t: TestRouter;
const ops = apiKey("cli_ops");
const reader = apiKey("cli_reader");

test.before(hook(async () => {
  t = await startTestRouter({
    shards: 2,
    auth: () => ({
      identities: [
        { name: "ops", apiKeys: [{ id: "ops", sha256: ops.sha256 }], login: "router", rpcs: ["*"] },
        { name: "reader", apiKeys: [{ id: "reader", sha256: reader.sha256 }], login: "router", rpcs: ["RouterService/Route"] },
      ],
    }),
  });
}));
test.after(hook(async () => { await t?.stop(); }));

test("the token from SHARDROUTER_TOKEN is sent: RouterService and AdminService calls work", async () => {
  const expected = await clientFor(RouterService, t.router.url, "connect-binary", { token: ops.key }).route({ key: "acct-1" });
  const route = await runCli(["route", "acct-1", "--json"], { SHARDROUTER_URL: t.router.url, SHARDROUTER_TOKEN: ops.key });
  assert.is(route.code, 0, route.stderr);
  assert.is(JSON.parse(route.stdout).shard, expected.shard);
  const query = await runCli(["query", "--key", "acct-1", "--json", "select 1 as one"], { SHARDROUTER_URL: t.router.url, SHARDROUTER_TOKEN: ops.key });
  assert.equal(JSON.parse(query.stdout).rows, [{ one: 1 }]);
  const status = await runCli(["reshard", "status", "--json"], { SHARDROUTER_URL: t.router.url, SHARDROUTER_TOKEN: ops.key });
  assert.is(status.code, 0, status.stderr);
  assert.equal(JSON.parse(status.stdout), { reshards: [] });
});

test("no token, or one the router does not know: exit 1 Unauthenticated, and the token is not printed", async () => {
  const none = await runCli(["route", "acct-1"], { SHARDROUTER_URL: t.router.url });
  assert.is(none.code, 1);
  assert.is(none.stdout, "");
  assert.match(none.stderr, /^shardrouter: .*\(Unauthenticated\): no token was sent; set SHARDROUTER_TOKEN\n$/);

  const wrong = "sr_test_not_a_key_of_this_router_0123456789";
  for (const args of [["route", "acct-1"], ["topology", "--json"], ["reshard", "status"]]) {
    const run = await runCli(args, { SHARDROUTER_URL: t.router.url, SHARDROUTER_TOKEN: wrong });
    assert.is(run.code, 1, args.join(" "));
    assert.match(run.stderr, /\(Unauthenticated\)\n$/);
    assert.not.match(run.stdout + run.stderr, wrong);
  }
});

test("--token overrides SHARDROUTER_TOKEN; an identity without the right is PermissionDenied", async () => {
  const flag = await runCli(["route", "acct-1", "--token", ops.key], { SHARDROUTER_URL: t.router.url, SHARDROUTER_TOKEN: "sr_test_wrong_token_in_env" });
  assert.is(flag.code, 0, flag.stderr);
  assert.match(flag.stdout, /^shard +shard-\d$/m);

  const asReader = { SHARDROUTER_URL: t.router.url, SHARDROUTER_TOKEN: reader.key };
  assert.is((await runCli(["route", "acct-1"], asReader)).code, 0, "Route is the reader's right");
  for (const args of [["topology"], ["reshard", "status"]]) {
    const run = await runCli(args, asReader);
    assert.is(run.code, 1, args.join(" "));
    assert.match(run.stderr, /^shardrouter: .*\(PermissionDenied\)\n$/);
    assert.not.match(run.stderr, reader.key);
  }
});

test.run();
