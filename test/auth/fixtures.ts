// What the auth tests need: JWT signing keys (a JWKS file), API keys, a test CA with server and client
// certificates (made with the openssl command, as an operator would), Postgres roles for identities,
// and clients that carry credentials.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DescService } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { exportJWK, generateKeyPair, type JWTPayload, SignJWT } from "jose";
import type postgres from "postgres";
import * as assert from "uvu/assert";
import { sha256Hex } from "../../server/auth/api-keys.js";
import { scramVerifier } from "../../server/dev-cluster/router-role.js";

export const issuer = "https://auth.test";
export const audience = "shardrouter-test";

export interface Keys {
  dir: string;
  jwksFile: string;
  sign(claims: JWTPayload, opts?: { kid?: string; noExp?: boolean; expiresIn?: string | number; notBefore?: string | number; issuer?: string; audience?: string }): Promise<string>;
  /** A token signed by a key that is not in the JWKS (same kid). */
  signWithStranger(claims: JWTPayload): Promise<string>;
  /** The RSA public key, PEM (SPKI): for the HS256 confusion attack. */
  publicPem: string;
  cleanup(): void;
}

export async function jwtKeys(): Promise<Keys> {
  const dir = mkdtempSync(join(tmpdir(), "shardrouter-auth-"));
  const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true });
  const stranger = await generateKeyPair("RS256", { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "RS256", use: "sig" };
  const jwksFile = join(dir, "jwks.json");
  writeFileSync(jwksFile, JSON.stringify({ keys: [jwk] }));
  const { createPublicKey } = await import("node:crypto");
  const publicPem = createPublicKey({ key: jwk as never, format: "jwk" }).export({ type: "spki", format: "pem" }).toString();
  const build = (claims: JWTPayload, opts: Parameters<Keys["sign"]>[1] = {}) => {
    let jwt = new SignJWT(claims).setProtectedHeader({ alg: "RS256", kid: opts.kid ?? "k1" }).setIssuedAt()
      .setIssuer(opts.issuer ?? issuer).setAudience(opts.audience ?? audience);
    if (!opts.noExp) jwt = jwt.setExpirationTime(opts.expiresIn ?? "10m");
    if (opts.notBefore !== undefined) jwt = jwt.setNotBefore(opts.notBefore);
    return jwt;
  };
  return {
    dir, jwksFile, publicPem,
    sign: (claims, opts) => build(claims, opts).sign(privateKey),
    signWithStranger: (claims) => build(claims).sign(stranger.privateKey),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** An API key and the hash the config holds. */
export function apiKey(label: string): { key: string; sha256: string } {
  const key = `sr_test_${label}_${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
  return { key, sha256: sha256Hex(key) };
}

export interface Certificates {
  dir: string;
  ca: string; serverCert: string; serverKey: string;
  /** A second CA's certificate, unrelated to the first. */
  otherCa: string;
  /** Client key + certificate pairs (PEM text). */
  client(name: "orders" | "lookalike" | "expired" | "untrusted" | "uppercase" | "two-identities"): { cert: string; key: string };
  /** The files of a client certificate (one of `clients`, CN = its name, signed by the CA). */
  clientFiles(name: string): { certFile: string; keyFile: string };
  caPem: Buffer;
  cleanup(): void;
}

/** A CA, a server certificate for 127.0.0.1, and client certificates (one from another CA), plus `clients`. */
export function certificates(clients: string[] = []): Certificates {
  const dir = mkdtempSync(join(tmpdir(), "shardrouter-tls-"));
  const at = (f: string) => join(dir, f);
  const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  const ca = (name: string) => ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.crt`, "-subj", `/CN=${name}`, "-days", "2");
  ca("ca");
  ca("other-ca");
  let serial = 1;
  const issue = (name: string, san: string, opts: { ca?: string; days?: string } = {}) => {
    ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`);
    writeFileSync(at(`${name}.ext`), `subjectAltName=${san}\n`);
    const issuer = opts.ca ?? "ca";
    ssl("x509", "-req", "-in", `${name}.csr`, "-CA", `${issuer}.crt`, "-CAkey", `${issuer}.key`, "-set_serial", String(++serial), "-days", opts.days ?? "2", "-extfile", `${name}.ext`, "-out", `${name}.crt`);
  };
  issue("server", "IP:127.0.0.1,DNS:localhost");
  issue("orders", "DNS:orders");
  issue("lookalike", "DNS:orders-evil");
  issue("expired", "DNS:orders", { days: "-1" });
  issue("untrusted", "DNS:orders", { ca: "other-ca" });
  issue("uppercase", "DNS:ORDERS");
  issue("two-identities", "DNS:orders,DNS:billing");
  for (const name of clients) issue(name, `DNS:${name}`);
  return {
    dir, ca: at("ca.crt"), otherCa: at("other-ca.crt"), serverCert: at("server.crt"), serverKey: at("server.key"),
    clientFiles: (name) => ({ certFile: at(`${name}.crt`), keyFile: at(`${name}.key`) }),
    caPem: readFileSync(at("ca.crt")),
    client: (name) => ({ cert: readFileSync(at(`${name}.crt`), "utf8"), key: readFileSync(at(`${name}.key`), "utf8") }),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Sends `authorization: Bearer <token>` on every call. */
export function bearer(token: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

export type Protocol = "grpc" | "connect-binary" | "connect-json";
export const protocols: Protocol[] = ["grpc", "connect-binary", "connect-json"];

/** A client over one protocol: gRPC over HTTP/2, Connect (binary or JSON) over HTTP/1.1. */
export function clientFor<S extends DescService>(service: S, baseUrl: string, protocol: Protocol, opts: { token?: string; tls?: { ca?: Buffer | string; cert?: string; key?: string }; headers?: Record<string, string> } = {}): Client<S> {
  const interceptors: Interceptor[] = [];
  if (opts.token) interceptors.push(bearer(opts.token));
  if (opts.headers) interceptors.push((next) => (req) => { for (const [k, v] of Object.entries(opts.headers!)) req.header.set(k, v); return next(req); });
  const nodeOptions = opts.tls ? { ca: opts.tls.ca, cert: opts.tls.cert, key: opts.tls.key } : undefined;
  const transport = protocol === "grpc"
    ? createGrpcTransport({ baseUrl, interceptors, nodeOptions })
    : createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: protocol === "connect-binary", interceptors, nodeOptions });
  return createClient(service, transport);
}

/** The call fails with `code` (compared by name, so a mismatch reads well). */
export async function assertCode(call: Promise<unknown>, code: Code, what = ""): Promise<ConnectError> {
  const err = await call.then(() => undefined, (e) => e);
  assert.ok(err instanceof ConnectError, `${what}: expected ${Code[code]}, got ${err === undefined ? "success" : err}`);
  assert.is(Code[err.code], Code[code], `${what}: ${err.message}`);
  return err;
}

/**
 * A login role for an identity on a node: may use `accounts` as `privileges` says, and the router's
 * request log and commit decisions as docs/auth.md grants them (what Transfer and
 * ExecuteTransaction write). Idempotent.
 */
export async function ensureRole(admin: postgres.Sql, role: string, password: string, privileges: string): Promise<void> {
  const q = `"${role}"`;
  await admin.begin(async (tx) => {
    const [{ exists }] = await tx<{ exists: boolean }[]>`select exists (select from pg_roles where rolname = ${role}) as exists`;
    await tx.unsafe(`${exists ? "alter" : "create"} role ${q} login nosuperuser nocreatedb nocreaterole noreplication password '${scramVerifier(password)}'`);
    await tx.unsafe(`grant usage on schema public to ${q}`);
    await tx.unsafe(`grant ${privileges} on all tables in schema public to ${q}`);
    const [{ log }] = await tx<{ log: boolean }[]>`select to_regclass('shardrouter.requests') is not null as log`;
    if (log) {
      await tx.unsafe(`grant usage on schema shardrouter to ${q}`);
      // No privilege on shardrouter.requests: its records are reached through its functions only.
      // Decisions: the two columns a home commit writes; prepared_by is always its default, the role.
      await tx.unsafe(`grant insert (gid, decision) on shardrouter.commit_decisions to ${q}`);
    }
  });
}
