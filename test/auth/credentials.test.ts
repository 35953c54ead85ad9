// Each way to prove an identity, and each way to get it wrong: JWTs (jose, against a JWKS file), API
// keys, and client certificates on the TLS port (gRPC over HTTP/2 and Connect over HTTP/1.1, one
// port by ALPN). Every refusal is `unauthenticated`, never `internal`, on every protocol.
import { createHmac } from "node:crypto";
import { writeFileSync } from "node:fs";
import { Code } from "@connectrpc/connect";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import * as assert from "uvu/assert";
import { RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { test } from "../harness/uvu.js";
import { apiKey, assertCode, audience, certificates, clientFor, issuer, jwtKeys, protocols, type Certificates, type Keys, type Protocol } from "./fixtures.js";

let t: TestRouter;
let keys: Keys;
let certs: Certificates;
const orders = apiKey("orders");
const spare = apiKey("spare");
let authConfig: (extra?: { apiKeys?: { id: string; sha256: string }[]; jwksFile?: string }) => unknown;

test.before(async () => {
  keys = await jwtKeys();
  certs = certificates();
  authConfig = (extra = {}) => ({
    jwt: { issuer, audience, algorithms: ["RS256"], jwksFile: extra.jwksFile ?? keys.jwksFile },
    identities: [{
      name: "orders", jwtSubjects: ["orders"], certificateSans: ["DNS:orders"], login: "router", rpcs: ["RouterService/*"],
      apiKeys: extra.apiKeys ?? [{ id: "orders-1", sha256: orders.sha256 }, { id: "spare-1", sha256: spare.sha256 }],
    }, { name: "billing", certificateSans: ["DNS:billing"], login: "router", rpcs: ["RouterService/Route"] }],
  });
  t = await startTestRouter({ shards: 2, auth: () => authConfig(), tls: { certFile: certs.serverCert, keyFile: certs.serverKey, clientCaFile: certs.ca } });
});
test.after(async () => {
  await t?.stop();
  keys?.cleanup();
  certs?.cleanup();
});

const select = { key: "k-1", sql: "select 1 as one" };
const clientWith = (protocol: Protocol, opts: Parameters<typeof clientFor>[3] = {}) =>
  clientFor(RouterService, t.router.url, protocol, { ...opts, tls: { ca: certs.caPem, ...opts.tls } });
const ok = async (protocol: Protocol, opts: Parameters<typeof clientFor>[3], what: string) => {
  const res = await clientWith(protocol, opts).executeOnShard(select).catch((e) => e as Error);
  assert.ok(!(res instanceof Error), `${what} over ${protocol}: ${res}`);
  assert.is((res as { result?: { rows: unknown[] } }).result!.rows.length, 1, what);
};
const refused = async (protocol: Protocol, opts: Parameters<typeof clientFor>[3], what: string, reason?: string) => {
  const err = await assertCode(clientWith(protocol, opts).executeOnShard(select), Code.Unauthenticated, `${what} over ${protocol}`);
  if (reason) assert.match(err.rawMessage, reason, what);
};

function b64(json: object): string {
  return Buffer.from(JSON.stringify(json)).toString("base64url");
}

test("the router serves TLS only, on one port for gRPC and Connect", () => {
  assert.match(t.router.url, /^https:/);
});

test("a valid JWT is let in; every kind of bad one is unauthenticated", async () => {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: "orders" };
  const valid = await keys.sign(claims);
  const hs256 = (() => {
    const head = b64({ alg: "HS256", typ: "JWT", kid: "k1" });
    const body = b64({ ...claims, iss: issuer, aud: audience, exp: now + 600 });
    return `${head}.${body}.${createHmac("sha256", keys.publicPem).update(`${head}.${body}`).digest("base64url")}`;
  })();
  const cases: [string, string, string][] = [
    ["bad signature", await keys.signWithStranger(claims), "signature"],
    ["alg none", `${b64({ alg: "none", typ: "JWT" })}.${b64({ ...claims, iss: issuer, aud: audience, exp: now + 600 })}.`, "algorithm"],
    ["HS256 signed with the RSA public key", hs256, "algorithm"],
    ["expired", await keys.sign(claims, { expiresIn: now - 60 }), "expired"],
    ["nbf in the future", await keys.sign(claims, { notBefore: now + 3600 }), "nbf"],
    ["wrong iss", await keys.sign(claims, { issuer: "https://evil.test" }), "iss"],
    ["wrong aud", await keys.sign(claims, { audience: "someone-else" }), "aud"],
    ["no exp", await keys.sign(claims, { noExp: true }), "exp"],
    ["unknown kid", await keys.sign(claims, { kid: "k9" }), "no configured key"],
    ["a subject that names no identity", await keys.sign({ sub: "orders-evil" }), "names no identity"],
    ["not a JWT at all", "a.b.c", "not a valid JWT"],
  ];
  for (const protocol of protocols) {
    await ok(protocol, { token: valid }, "valid JWT");
    await ok(protocol, { token: valid }, "valid JWT, again (cached)");
    for (const [what, token, reason] of cases) await refused(protocol, { token }, what, reason);
  }
});

test("API keys: the right one is let in; a wrong one of the same or another length, and a revoked one, are not", async () => {
  const sameLength = orders.key.slice(0, -1) + (orders.key.endsWith("a") ? "b" : "a");
  for (const protocol of protocols) {
    await ok(protocol, { token: orders.key }, "API key");
    await refused(protocol, { token: sameLength }, "wrong key, same length", "API key is not valid");
    await refused(protocol, { token: orders.key + "x" }, "wrong key, longer", "API key is not valid");
    await refused(protocol, { token: "short" }, "wrong key, short", "API key is not valid");
    await ok(protocol, { token: spare.key }, "the key about to be revoked");
  }
  t.router.reloadAuth(authConfig({ apiKeys: [{ id: "orders-1", sha256: orders.sha256 }] }));
  for (const protocol of protocols) {
    await refused(protocol, { token: spare.key }, "revoked key", "API key is not valid");
    await ok(protocol, { token: orders.key }, "the key still configured");
  }
});

test("JWT keys rotate on reload: a token of the new key is let in, one of the removed key (cached before) is not", async () => {
  const oldToken = await keys.sign({ sub: "orders" });
  await ok("grpc", { token: oldToken }, "old key before rotation");
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  const rotated = `${keys.dir}/jwks-rotated.json`;
  writeFileSync(rotated, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: "k2", alg: "ES256" }] }));
  const next = authConfig({ jwksFile: rotated }) as { jwt: { algorithms: string[] } };
  next.jwt.algorithms = ["ES256"];
  t.router.reloadAuth(next);
  try {
    const newToken = await new SignJWT({ sub: "orders" }).setProtectedHeader({ alg: "ES256", kid: "k2" })
      .setIssuer(issuer).setAudience(audience).setExpirationTime("5m").sign(privateKey);
    for (const protocol of protocols) {
      await ok(protocol, { token: newToken }, "new key");
      await refused(protocol, { token: oldToken }, "removed key");
    }
  } finally {
    t.router.reloadAuth(authConfig());
  }
});

test("a reload that fails leaves the auth in force", async () => {
  assert.throws(() => t.router.reloadAuth({ identities: [] }), /identities/);
  assert.throws(() => t.router.reloadAuth(authConfig({ jwksFile: "/nonexistent/jwks.json" })), /ENOENT/);
  await ok("grpc", { token: orders.key }, "after failed reloads");
});

test("a caller that leaves while its token is being verified: the router lives on and answers the next call", async () => {
  const http2 = await import("node:http2");
  // The same router config on h2c: no TLS handshake to slow the calls down, so the race is met.
  const { startRouter } = await import("../../server/router.js");
  const plain = await startRouter({ ...t.config, listen: { host: "127.0.0.1", port: 0 } });
  const session = http2.connect(plain.url);
  session.on("error", () => {});
  try {
    for (let i = 0; i < 20; i++) {
      // A token never seen (so verified, not remembered), its body cut off, the stream reset at once.
      const token = await keys.signWithStranger({ sub: `orders-${i}` });
      const req = session.request({ ":method": "POST", ":path": "/shardrouter.v1.RouterService/ExecuteOnShard", "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${token}` }, { endStream: false });
      req.on("error", () => {});
      req.write(Buffer.from([0, 0, 0, 0, 10, 1, 2]));
      req.close(http2.constants.NGHTTP2_CANCEL);
    }
    await new Promise((r) => session.ping(() => r(undefined))); // the server has read every frame
    const res = await clientFor(RouterService, plain.url, "grpc", { token: orders.key }).executeOnShard(select);
    assert.is(res.result!.rows.length, 1, "the plaintext twin still answers");
  } finally {
    session.close();
    await plain.close();
  }
  await ok("grpc", { token: orders.key }, "after callers left mid-verification");
  await ok("connect-json", { token: orders.key }, "after callers left mid-verification");
});

test("mTLS: a certificate of the CA with the identity's SAN is let in; none, another CA, expired, or a look-alike SAN are not", async () => {
  for (const protocol of protocols) {
    await ok(protocol, { tls: certs.client("orders") }, "client certificate");
    await refused(protocol, {}, "no certificate", "needs credentials");
    await refused(protocol, { tls: certs.client("untrusted") }, "untrusted CA", "refused");
    await refused(protocol, { tls: certs.client("expired") }, "expired certificate", "CERT_HAS_EXPIRED");
    await refused(protocol, { tls: certs.client("lookalike") }, "look-alike SAN orders-evil", "names no identity");
    await ok(protocol, { tls: certs.client("uppercase") }, "DNS:ORDERS is DNS:orders (DNS names ignore case)");
    await refused(protocol, { tls: certs.client("two-identities") }, "a certificate naming two identities", "proves none of them");
  }
});

test.run();
