// The shardrouter command.
//   npm start                      local cluster (embedded PostgreSQL, 4 shards + catalog) and a router
//   node --import tsx server/main.ts --config shardrouter.json    a router over configured shards
import { parseArgs } from "node:util";
import { ConfigError, loadConfigFile, parseConfig, type Config } from "./config/config.js";
import { seedDemoAccounts } from "./dev-cluster/demo-accounts.js";
import { type DevAuth, ensureDevAuth, READER_ROLE, READER_RPCS } from "./dev-cluster/dev-auth.js";
import { devConfig } from "./dev-cluster/dev-config.js";
import { type LocalCluster, startLocalCluster } from "./dev-cluster/local-cluster.js";
import { createLogger, defaultLogLevel, isLogLevel, type Logger, logLevels } from "./observability/logger.js";
import { type RunningRouter, startRouter } from "./router.js";

const usage = `usage: shardrouter [--config FILE] [--dev] [--fresh] [--insecure] [--shards N] [--spare-shards N] [--replicas N] [--data-dir DIR] [--host HOST] [--port PORT] [--strategy NAME] [--log-level LEVEL]
  --config FILE   router configuration (JSON); without it, --dev is implied
  --dev           start a local PostgreSQL cluster (embedded) and serve it, with development
                  API keys (kept in the data dir, printed at start)
  --insecure      serve without auth: anyone who reaches the port runs SQL as the router's login.
                  Without it, a config with no "auth" section is refused
  --fresh         (dev) wipe the local cluster's data first
  --shards N      (dev) number of shards, default 4
  --spare-shards N  (dev) N more shards, empty and outside the shard map (own no keys), default 0
  --replicas N    (dev) streaming replicas per shard, default 1
  --data-dir DIR  (dev) where the local cluster lives, default .data/dev-cluster
  --host, --port  where to listen, default 127.0.0.1:8080
  --strategy S    placement: hash_ring (default), hash_mod, legacy_md5_mod
  --log-level L   JSON logs on stdout at ${logLevels.join(", ")}; default ${defaultLogLevel}
                  (also SHARDROUTER_LOG_LEVEL); "info" adds one access line per RPC`;

let startedCluster: LocalCluster | undefined;
let logger: Logger | undefined;

async function main(): Promise<void> {
  const { values: args } = parseArgs({
    options: {
      config: { type: "string" }, dev: { type: "boolean" }, fresh: { type: "boolean" }, insecure: { type: "boolean" },
      shards: { type: "string" }, "spare-shards": { type: "string" }, replicas: { type: "string" }, "data-dir": { type: "string" }, host: { type: "string" },
      port: { type: "string" }, strategy: { type: "string" }, "log-level": { type: "string" }, help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (args.help) { console.log(usage); return; }
  const port = args.port === undefined ? undefined : Number(args.port);
  const shardCount = args.shards === undefined ? 4 : Number(args.shards);
  const replicaCount = args.replicas === undefined ? 1 : Number(args.replicas);
  const spareCount = args["spare-shards"] === undefined ? 0 : Number(args["spare-shards"]);
  if (!Number.isInteger(spareCount) || spareCount < 0 || spareCount > 16) throw new ConfigError(`--spare-shards: "${args["spare-shards"]}" must be 0..16`);
  if (!Number.isInteger(replicaCount) || replicaCount < 0 || replicaCount > 8) throw new ConfigError(`--replicas: "${args.replicas}" must be 0..8`);
  if (port !== undefined && !Number.isInteger(port)) throw new ConfigError(`--port: "${args.port}" is not a port number`);
  if (!Number.isInteger(shardCount) || shardCount < 1 || shardCount > 64) throw new ConfigError(`--shards: "${args.shards}" must be 1..64`);
  const level = args["log-level"] ?? process.env.SHARDROUTER_LOG_LEVEL ?? defaultLogLevel;
  if (!isLogLevel(level)) throw new ConfigError(`--log-level: "${level}" must be one of ${logLevels.join(", ")}`);
  const log = (logger = createLogger({ level }));

  let cluster: LocalCluster | undefined;
  let router: RunningRouter | undefined;
  let devAuth: DevAuth | undefined;
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) { log.warn({ signal }, `${signal} again: exiting now`); process.exit(130); }
    stopping = true;
    log.notice({ signal }, `${signal}: stopping router${cluster ? " and local cluster" : ""}`);
    await router?.close().catch((err) => log.error({ err }, "router close failed"));
    await cluster?.stop().catch((err) => log.error({ err }, "local cluster stop failed"));
    log.notice("stopped");
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));

  let config: Config;
  if (args.config && !args.dev) {
    const fileConfig = loadConfigFile(args.config);
    config = parseConfig({ ...fileConfig, listen: { ...fileConfig.listen, ...(args.host ? { host: args.host } : {}), ...(port ? { port } : {}) } }, args.config);
    if (!config.auth && !args.insecure) {
      throw new ConfigError(`${args.config} has no "auth" section: the router would let anyone who reaches its port run any SQL as its own login. ` +
        "Add one (docs/auth.md), or start with --insecure to serve without auth on purpose.");
    }
    if (config.auth && args.insecure) throw new ConfigError(`--insecure: ${args.config} has an "auth" section; remove one or the other`);
  } else {
    const dataDir = args["data-dir"] ?? ".data/dev-cluster";
    log.notice({ shards: shardCount, spareShards: spareCount, replicas: replicaCount, dataDir, fresh: !!args.fresh }, "starting local cluster");
    cluster = startedCluster = await startLocalCluster({
      dataDir, shards: shardCount + spareCount, replicas: replicaCount, fresh: args.fresh, log: (line) => log.notice({ component: "dev-cluster" }, line),
    });
    devAuth = args.insecure ? undefined : await ensureDevAuth(cluster, dataDir);
    config = parseConfig({
      ...(devConfig(cluster, { host: args.host, port, spareShards: spareCount, placement: args.strategy ? { strategy: args.strategy } : undefined }) as object),
      ...(devAuth ? { auth: devAuth.config } : {}),
    }, "local cluster config");
  }

  router = await startRouter(config, { logger: log });
  // SIGHUP re-reads the config file's auth section: revoked keys and identities stop working at once.
  if (args.config && !args.dev && config.auth) {
    const file = args.config;
    process.on("SIGHUP", () => {
      try {
        const next = loadConfigFile(file).auth;
        if (!next) throw new ConfigError(`${file} no longer has an "auth" section; keeping the one in force`);
        router!.reloadAuth(next);
        log.notice({ identities: next.identities.length }, `SIGHUP: auth reloaded from ${file}`);
      } catch (err) {
        log.error({ err: { message: (err as Error).message } }, `SIGHUP: auth not reloaded, the one in force stays: ${(err as Error).message}`);
      }
    });
  }
  if (cluster) {
    const { created } = await seedDemoAccounts(router.planner);
    log.notice(created ? "seeded accounts: acct-0 … acct-999, balance 1000 each" : "accounts table already seeded (use --fresh to reset)");
    const spare = router.planner.shards.shards.map((sh) => sh.name).filter((name) => !(name in router!.planner.map.states));
    printReady(router.url, spare, devAuth); // the dev command's banner, for a person at a terminal
  } else {
    log.notice({ url: router.url, metrics: `${router.url}/metrics` }, `shardrouter is serving on ${router.url}`);
  }
}

function printReady(url: string, spare: string[], auth: DevAuth | undefined): void {
  const svc = `${url}/shardrouter.v1.RouterService`;
  const curl = `npx buf curl --http2-prior-knowledge${auth ? ` -H "authorization: Bearer ${auth.devToken}"` : ""}`;
  console.log(`
shardrouter is serving on ${url} (Connect/gRPC-Web over HTTP/1.1, gRPC over h2c). Ctrl-C stops everything.
${auth ? `
Every call needs a bearer token (they are kept in the data dir; --fresh makes new ones):
  dev     ${auth.devToken}
          every RPC, as the router's own login
  reader  ${auth.readerToken}
          ${READER_RPCS.join(", ")}, as ${READER_ROLE}: SELECT only
` : `
No auth (--insecure): anyone who reaches this port runs any SQL as the router's login.
`}
Try it (the router answers gRPC reflection, so no .proto files are needed):
  ${curl} --protocol grpc -d '{"key":"acct-1"}' ${svc}/Route
  ${curl} -d '{"key":"acct-1","sql":"select id, balance from accounts where id = $1","params":[{"stringValue":"acct-1"}]}' ${svc}/ExecuteOnShard
  ${curl} -d '{"sql":"select id, balance from accounts where id = $1","params":[{"stringValue":"acct-1"}]}' ${svc}/Execute
  ${curl} -d '{"sql":"select count(*) as n, sum(balance) as total from accounts"}' ${svc}/Execute
  ${curl} -d '{"sql":"select id, balance from accounts order by balance desc, id limit 5"}' ${svc}/Execute
  ${curl} -d '{"sql":"select id, balance from accounts order by balance desc, id limit 5","merge":{"orderBy":[{"column":"balance","descending":true},{"column":"id"}],"limit":"5"}}' ${svc}/ExecuteOnAll
  ${curl} -d '{"fromKey":"acct-1","toKey":"acct-2","amount":"10","requestId":"demo-1"}' ${svc}/Transfer
  ${curl} --protocol grpc ${svc}/GetTopology
  ${curl} --protocol grpc ${url}/grpc.health.v1.Health/Check
  curl ${url}/metrics

Or with the command line (npm run shardrouter -- --help):
  export SHARDROUTER_URL=${url}${auth ? ` SHARDROUTER_TOKEN=${auth.devToken}` : ""}
  npm run shardrouter -- topology
  npm run shardrouter -- execute 'select id, balance from accounts order by balance desc, id limit 5'
  npm run shardrouter -- query --key acct-1 'select id, balance from accounts where id = $1' acct-1
${spare.length ? `
Spare shards (their nodes are configured, the shard map in the catalog does not name them, so they own
no keys): ${spare.join(", ")}. Move keys onto one online (copy, stream, verify, fenced cutover):
  npm run shardrouter -- reshard add ${spare[0]} --wait
` : ""}`);
}

main().catch(async (err) => {
  // A configuration or usage mistake is for the person who typed the command: plain text.
  if (err instanceof ConfigError || !logger) console.error(err instanceof ConfigError ? err.message : `shardrouter failed to start: ${err?.message ?? err}`);
  else logger.fatal({ err }, "shardrouter failed to start");
  await startedCluster?.stop().catch(() => {});
  process.exit(1);
});
