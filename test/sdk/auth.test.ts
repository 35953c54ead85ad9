// The SDK with auth on: a bearer token (a string, or a function asked on every call) on every entry
// and protocol, and in Node a client certificate for an https:// router that asks for one (mTLS).
import { Code, ConnectError } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import { createClient as createFetchClient } from "../../sdk/src/index.ts";
import { createClient } from "../../sdk/src/node.ts";
import { type RunningRouter, startRouter } from "../../server/router.js";
import { apiKey, certificates, type Certificates } from "../auth/fixtures.js";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { test } from "../harness/uvu.js";

let t: TestRouter;
let plain: RunningRouter;
let certs: Certificates;
const key = apiKey("sdk");

test.before(async () => {
  certs = certificates();
  t = await startTestRouter({
    shards: 2,
    tls: { certFile: certs.serverCert, keyFile: certs.serverKey, clientCaFile: certs.ca },
    auth: () => ({ identities: [{ name: "app", apiKeys: [{ id: "sdk", sha256: key.sha256 }], certificateSans: ["DNS:orders"], login: "router", rpcs: ["RouterService/*"] }] }),
  });
  // The same router config on plaintext, for the fetch entry (Deno's and browsers' transport).
  plain = await startRouter({ ...t.config, listen: { host: "127.0.0.1", port: 0 } });
});
test.after(async () => {
  await plain?.close();
  await t?.stop();
  certs?.cleanup();
});

async function code(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => undefined, (e) => e);
  assert.ok(err instanceof ConnectError, `expected an error, got ${err}`);
  return Code[err.code];
}

for (const protocol of ["connect", "grpc"] as const) {
  test(`node ${protocol} over TLS: a token is let in, none is unauthenticated, a client certificate is an identity`, async () => {
    const withToken = createClient({ baseUrl: t.router.url, protocol, token: key.key, tls: { ca: certs.caPem } });
    const asked: number[] = [];
    const withFunction = createClient({ baseUrl: t.router.url, protocol, token: () => (asked.push(1), key.key), tls: { ca: certs.caPem } });
    const none = createClient({ baseUrl: t.router.url, protocol, tls: { ca: certs.caPem } });
    const cert = createClient({ baseUrl: t.router.url, protocol, tls: { ca: certs.caPem, ...certs.client("orders") } });
    const lookalike = createClient({ baseUrl: t.router.url, protocol, tls: { ca: certs.caPem, ...certs.client("lookalike") } });
    try {
      assert.equal((await withToken.onShard("k").query("select 1 as one")).rows, [{ one: 1 }]);
      await withFunction.onShard("k").query("select 1 as one");
      await withFunction.onShard("k").query("select 1 as one");
      assert.is(asked.length, 2, "a token function is asked on every call");
      assert.equal((await cert.onShard("k").query("select 2 as two")).rows, [{ two: 2 }]);
      assert.is(await code(none.onShard("k").query("select 1")), "Unauthenticated");
      assert.is(await code(lookalike.onShard("k").query("select 1")), "Unauthenticated");
    } finally {
      for (const c of [withToken, withFunction, none, cert, lookalike]) c.close();
    }
  });
}

test("node: a router certificate the client does not trust is refused (unavailable), never accepted quietly", async () => {
  for (const protocol of ["connect", "grpc"] as const) {
    const client = createClient({ baseUrl: t.router.url, protocol, token: key.key });
    try {
      assert.is(await code(client.onShard("k").query("select 1")), "Unavailable", protocol);
    } finally {
      client.close();
    }
  }
});

test("the fetch entry (Deno, browsers) sends the token too", async () => {
  const withToken = createFetchClient({ baseUrl: plain.url, token: key.key });
  const none = createFetchClient({ baseUrl: plain.url });
  assert.equal((await withToken.onShard("k").query("select 3 as three")).rows, [{ three: 3 }]);
  assert.is(await code(none.onShard("k").query("select 1")), "Unauthenticated");
});

test.run();
