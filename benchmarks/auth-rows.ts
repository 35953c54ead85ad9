// What auth costs the router per call: the same point select through the SDK (gRPC), at the same
// concurrency, to the bench's router (no auth) and to a second router process over the same cluster
// with auth on, called with an API key and with a JWT. Both identities log in as the router's own
// role, so Postgres does the same work: the difference is the router's CPU per call.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { createClient } from "../sdk/src/node.js";
import { sha256Hex } from "../server/auth/api-keys.js";
import { devConfig } from "../server/dev-cluster/dev-config.js";
import { newToken } from "../server/dev-cluster/dev-auth.js";
import { pickFreePorts } from "../server/dev-cluster/ports.js";
import type { BenchCluster } from "./bench-cluster.js";
import type { CpuProbe } from "./closed-loop.js";
import { processCpuUs } from "./process-cpu.js";
import { spawnRouter } from "./router-process.js";
import type { Row, Rows } from "./rows.js";

export const authGroup = "auth";
export const authRowNames = {
  off: "router, auth off (SDK gRPC)",
  apiKey: "router, auth on: API key (SDK gRPC)",
  jwt: "router, auth on: RS256 JWT, verified once then by its hash (SDK gRPC)",
} as const;
const sql = "select id, balance from accounts where id = $1";

export async function measureAuth(rows: Rows, env: BenchCluster, routerCpu: CpuProbe, inFlight: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "shardrouter-bench-auth-"));
  const { privateKey, publicKey } = await generateKeyPair("RS256");
  const jwksFile = join(dir, "jwks.json");
  writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: "bench", alg: "RS256" }] }));
  const key = newToken();
  const jwt = await new SignJWT({ sub: "bench-jwt" }).setProtectedHeader({ alg: "RS256", kid: "bench" })
    .setIssuer("https://bench").setAudience("shardrouter").setExpirationTime("1h").sign(privateKey);
  const [port] = await pickFreePorts(1);
  const config = {
    ...(devConfig(env.cluster, { port, transactions: {} }) as { listen: { port: number } }),
    auth: {
      jwt: { issuer: "https://bench", audience: "shardrouter", algorithms: ["RS256"], jwksFile },
      identities: [
        { name: "bench-key", apiKeys: [{ id: "bench", sha256: sha256Hex(key) }], login: "router", rpcs: ["RouterService/*"], maxConcurrent: 10_000 },
        { name: "bench-jwt", jwtSubjects: ["bench-jwt"], login: "router", rpcs: ["RouterService/*"], maxConcurrent: 10_000 },
      ],
    },
  };
  const authed = await spawnRouter(config);
  const clients = [
    createClient({ baseUrl: env.router.url, protocol: "grpc" }),
    createClient({ baseUrl: authed.url, protocol: "grpc", token: key }),
    createClient({ baseUrl: authed.url, protocol: "grpc", token: jwt }),
  ];
  try {
    let k = 0;
    const op = (client: (typeof clients)[number]) => () => {
      const id = env.homeKeys[k++ % env.homeKeys.length];
      return client.onShard(id).query(sql, [id]);
    };
    const authedCpu: CpuProbe = () => processCpuUs(authed.pid);
    await rows.measure(authGroup, authRowNames.off, inFlight, op(clients[0]), { proxy: routerCpu });
    await rows.measure(authGroup, authRowNames.apiKey, inFlight, op(clients[1]), { vs: authRowNames.off, proxy: authedCpu });
    await rows.measure(authGroup, authRowNames.jwt, inFlight, op(clients[2]), { vs: authRowNames.off, proxy: authedCpu });
  } finally {
    for (const c of clients) c.close();
    await authed.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Issue 13's target: auth adds at most 5 µs of router CPU per point select. */
export function authTargets(all: readonly Row[]): { target: string; measured: string; met?: boolean }[] {
  const find = (name: string) => all.find((r) => r.group === authGroup && r.name === name && !r.skipped);
  const off = find(authRowNames.off)?.cpuUsPerOp?.proxy;
  const delta = (name: string) => {
    const on = find(name)?.cpuUsPerOp?.proxy;
    return on === undefined || off === undefined ? undefined : on - off;
  };
  const [apiKey, jwt] = [delta(authRowNames.apiKey), delta(authRowNames.jwt)];
  const f = (x: number | undefined) => (x === undefined ? "–" : `${x >= 0 ? "+" : ""}${x.toFixed(1)}`);
  const known = [apiKey, jwt].filter((x) => x !== undefined) as number[];
  return [{
    target: "auth adds ≤ 5 µs of router CPU per point select",
    measured: `API key ${f(apiKey)} µs; JWT ${f(jwt)} µs (auth off: ${off === undefined ? "–" : off.toFixed(0)} µs per call)`,
    met: known.length === 2 ? known.every((x) => x <= 5) : undefined,
  }];
}
