// The composition root: from a validated config to a serving router. Data flows one way:
// RPC handlers → planner (placement) → execution (statement, scatter-gather, merge) → node pools.
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { RouterService } from "../gen/shardrouter/v1/router_pb.js";
import { readFileSync } from "node:fs";
import * as reflectionV1 from "../gen/grpc/reflection/v1/reflection_pb.js";
import { AuthConfigSchema } from "./auth/auth-config.js";
import { Authenticator } from "./auth/authenticator.js";
import { authInterceptor, withCaller, withPeer } from "./rpc/auth-interceptor.js";
import { Catalog } from "./catalog/catalog.js";
import { CatalogDirectoryStore } from "./catalog/directory-store.js";
import { ShardMapFollower } from "./catalog/shard-map-follower.js";
import { ShardMapStore } from "./catalog/shard-map-store.js";
import { definitionOf, ShardRegistry } from "./catalog/shard-registry.js";
import { FenceStore } from "./catalog/fence-store.js";
import { FenceFollower } from "./resharding/fence-follower.js";
import { WriteFence } from "./resharding/write-fence.js";
import { JobRunner } from "./resharding/job-runner.js";
import { replicationSlots } from "./resharding/slot-lag.js";
import { ReshardJobStore } from "./catalog/reshard-job-store.js";
import { AdminService } from "../gen/shardrouter/v1/admin_pb.js";
import { adminService } from "./rpc/admin-service.js";
import { type Config, ConfigError, shardLoginOf } from "./config/config.js";
import { Planner } from "./execution/planner.js";
import { buildShardMap } from "./placement/shard-map.js";
import { loadParser } from "./sql/parser.js";
import { type Logger, lineLogger, silentLogger } from "./observability/logger.js";
import { observability } from "./observability/observability.js";
import { healthService } from "./rpc/health.js";
import { HealthMonitor } from "./rpc/health-monitor.js";
import { listen, type Listener } from "./rpc/listener.js";
import { unaryHandler } from "./rpc/unary-handler.js";
import { registerReflection } from "./rpc/reflection.js";
import { routerService } from "./rpc/router-service.js";
import { rejectUnknownFields } from "./rpc/strict-fields.js";
import { HealthChecker } from "./shards/health-checker.js";
import { type ShardDefinition, ShardSet } from "./shards/shard-set.js";
import { Coordinator } from "./transactions/coordinator.js";
import { DecisionLog } from "./transactions/decision-log.js";
import { Failpoints } from "./transactions/failpoints.js";
import { Recovery } from "./transactions/recovery.js";
import { ensureRequestLog } from "./transactions/request-log.js";
import { InteractiveTransactions } from "./transactions/interactive.js";
import { type PruneRound, RequestPruning } from "./transactions/request-pruning.js";
import { newRouterId, TransactionIds } from "./transactions/transaction-id.js";
import { fixedWorker, noWorker, Snowflake, type WorkerSource } from "./ids/snowflake.js";
import { CatalogWorkerStore, WorkerLease } from "./ids/worker-lease.js";

export interface RunningRouter {
  readonly url: string;
  readonly planner: Planner;
  /** This instance's id (transaction ids, fence acknowledgements). */
  readonly routerId: string;
  /** The worker id of this router's global ids (NextIds) now; undefined when it has none. */
  readonly idWorkerId: number | undefined;
  /**
   * Takes a new auth section (SIGHUP): keys, identities, rights and JWT keys, for every call from now
   * on. A section that fails validation throws and leaves the one in force. Without auth at start: throws.
   */
  reloadAuth(auth: unknown): void;
  /** One pass deleting expired idempotency records (it also runs by itself, see RequestPruning). */
  pruneRequests(): Promise<PruneRound>;
  close(): Promise<void>;
}

export interface RouterOptions {
  /** The structured logger (main.ts creates one); default: silent. */
  logger?: Logger;
  /** Without `logger`: gets each JSON log line at the default level. */
  log?: (line: string) => void;
  /** The wall clock of global ids, Unix ms (default Date.now): a test turns it back. */
  clock?: () => number;
}

export async function startRouter(config: Config, options: RouterOptions = {}): Promise<RunningRouter> {
  const logger = options.logger ?? (options.log ? lineLogger(options.log) : silentLogger());
  // Every service a right may name (AdminService too: a router without a catalog just does not serve it).
  const services = [RouterService, AdminService, Health, reflectionV1.ServerReflection];
  const auth = config.auth && Authenticator.create(config.auth, services);
  const tls = config.listen.tls && readTls(config.listen.tls);
  await loadParser(); // every statement is read with it: without it the router must not serve
  const catalog = config.catalog ? await Catalog.open(config.catalog) : undefined;
  if (config.placement.strategy === "directory" && !catalog) {
    throw new Error("placement.strategy: \"directory\" needs a catalog database (config field catalog)");
  }
  const tx = config.transactions;
  const ids = new TransactionIds(tx.gidPrefix, tx.routerId ?? newRouterId());
  const directory = catalog && new CatalogDirectoryStore(catalog);
  const seedShards = config.shards.filter((s) => !s.spare).map((s) => ({ name: s.name, weight: s.weight }));
  const shards = new ShardSet(config);
  // With a catalog, the shard map is the catalog's (this config seeds version 1 when there is none)
  // and followed live; without one it is this config's, version 1, for good.
  let follower: ShardMapFollower | undefined;
  let planner: Planner;
  // The write epoch this router's connections carry (resharding/epoch-guard.ts); it only goes up.
  let epoch = -1;
  const adoptEpoch = (next: number) => {
    if (next <= epoch) return;
    epoch = next;
    shards.setEpoch(next);
  };
  let fence: WriteFence | undefined;
  let fenceFollower: FenceFollower | undefined;
  let runner: JobRunner | undefined;
  let admin: ReturnType<typeof adminService> | undefined;
  let registered: Awaited<ReturnType<ShardRegistry["follow"]>> | undefined;
  if (catalog) {
    // Shards registered with AddShard first: the map in force may give them keys.
    const registry = new ShardRegistry(catalog);
    const login = shardLoginOf(config);
    const malformed = new Set<string>();
    const adopt = async (definition: ShardDefinition) => {
      if (!shards.add(definition)) return; // configured (or adopted) already: the config wins
      logger.notice({ shard: definition.name }, `shard ${definition.name} is registered in the catalog: its nodes are served from now on`);
      await ensureRequestLog(shards.shard(definition.name), AbortSignal.timeout(10_000)).catch(() => {});
    };
    registered = await registry.follow(config.shardMap.pollMs, (r) => void adopt(definitionOf(r, login)), (name, reason) => {
      if (!malformed.has(name) && malformed.add(name)) logger.error({ shard: name }, `registered shard ${name} cannot be served: ${reason}`);
    });
    const maps = new ShardMapStore(catalog);
    const started = await ShardMapFollower.start(maps, { placement: config.placement, shards: seedShards, by: ids.routerId }, {
      known: shards, learnShards: () => registered!.check(), directory, pollMs: config.shardMap.pollMs,
      // Called only after catalog I/O, so never before `planner` below exists.
      onMap: (map) => {
        adoptEpoch(map.epoch);
        planner.swapMap(map);
        fence?.wake(); // writes held for the cutover that made this map go on, to the new owners
        logger.notice({ shardMapVersion: map.version }, `shard map version ${map.version} is in force`);
      },
      onRejected: (version, reason) => logger.error({ shardMapVersion: version }, `shard map version ${version} cannot be served here, keeping version ${planner.map.version}: ${reason}`),
    }).catch(async (err) => {
      await registered?.stop();
      await shards.close();
      await catalog.close();
      throw err;
    });
    follower = started.follower;
    planner = new Planner(started.map, shards);
    adoptEpoch(started.map.epoch);
    fence = new WriteFence({ map: () => planner.map, maxHeld: 10_000, holdAtMostMs: 6000 });
    const jobs = new ReshardJobStore(catalog);
    fenceFollower = new FenceFollower(new FenceStore(catalog), fence, {
      router: ids.routerId, jobs, pollMs: config.shardMap.pollMs, drainMs: 1000, known: shards, directory,
      mapVersion: () => planner.map.version, adoptEpoch, onLifted: () => void follower?.check(),
      log: (line) => logger.warn(line),
    });
    await fenceFollower.start();
    runner = new JobRunner({
      jobs, fences: new FenceStore(catalog), maps, router: ids.routerId, planner, config, directory,
      log: (line) => logger.warn({ component: "resharding" }, line),
    });
    runner.start();
    admin = adminService({
      jobs, maps, runner, config, directory, onJobsChanged: () => fenceFollower!.check(),
      shards, registry, router: ids.routerId, onShardAdded: adopt,
      prepareShards: async (names) => { await Promise.all(names.map((n) => ensureRequestLog(shards.shard(n), AbortSignal.timeout(10_000)))); },
    });
    const mapped = started.map.shards.map((s) => s.name).join(",");
    if (started.map.strategy.name !== config.placement.strategy || mapped !== seedShards.map((s) => s.name).join(",")) {
      logger.notice({ shardMapVersion: started.map.version },
        `placement comes from the catalog's shard map version ${started.map.version} (${started.map.strategy.name} over ${mapped}); ` +
        "this config's placement and shard list only seed version 1 of a new catalog");
    }
  } else {
    planner = new Planner(buildShardMap(config.placement, seedShards, { version: 1 }), shards);
    adoptEpoch(0);
  }
  const obs = observability({
    shards, logger, inDoubt: () => recovery.inDoubt, healthIntervalMs: config.health.intervalMs,
    interactiveOpen: () => interactive.openByShard(),
    replicationSlots: async () => (await Promise.all(shards.shards.map(async (s) => (await replicationSlots(s)).map((x) => ({ shard: s.name, ...x }))))).flat(),
  });
  const healthChecker = new HealthChecker(shards, config.health);
  await healthChecker.start(); // serve with the roles the nodes report, not the configured ones
  obs.watchNodes();

  const decisions = catalog && new DecisionLog(catalog);
  const inflight = new Set<string>();
  const coordinator = new Coordinator({ ids, failpoints: Failpoints.fromEnv(tx.failpoints), lockTimeoutMs: tx.lockTimeoutMs,
    settleTimeoutMs: (config.pool.statementTimeoutMs || 30_000) + config.pool.connectTimeoutMs, inflight, observer: obs.transactions });
  const recovery = new Recovery(shards, decisions, ids, inflight, { graceMs: tx.inDoubtGraceMs, intervalMs: tx.recoveryIntervalMs }, obs.transactions,
    (role) => auth?.loginOfRole(role), (a, b, routerUser) => auth?.sameCaller(a, b, routerUser) ?? false);
  // Best effort: a shard that is down now gets its table on its first transaction.
  await Promise.all(shards.shards.map((s) => ensureRequestLog(s, AbortSignal.timeout(10_000)).catch(() => {})));
  recovery.start();
  const pruning = new RequestPruning(shards, { retentionMs: tx.requestRetentionMs, intervalMs: tx.requestPruneIntervalMs }, obs.transactions);
  pruning.start();

  const health = new HealthMonitor(shards);
  const onStaleMap = async () => {
    // Bounded: a router cut off from the catalog answers with the source's refusal, not a hang.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([follower?.check(), new Promise((r) => { timer = setTimeout(r, 1000); })]);
    clearTimeout(timer);
  };
  const { maxPerNode, ...interactiveLimits } = tx.interactive;
  const interactive = new InteractiveTransactions({
    planner, routerId: ids.routerId, fence, onStaleMap, observer: obs.interactive,
    limits: { ...interactiveLimits, maxPerNode: maxPerNode ?? Math.floor(config.pool.max / 2) },
    results: config.limits, settleTimeoutMs: (config.pool.statementTimeoutMs || 30_000) + config.pool.connectTimeoutMs,
  });
  // Global ids: a worker id leased from the catalog, or the configured one (ids.workerId).
  const idConfig = config.ids;
  const lease = catalog && new WorkerLease({
    store: new CatalogWorkerStore(catalog), owner: ids.routerId, leaseMs: idConfig.leaseMs, marginMs: idConfig.takeoverMarginMs,
    maxWorkers: idConfig.maxWorkers, wall: options.clock, log: (line) => logger.warn({ component: "ids" }, line),
  });
  await lease?.start();
  const worker: WorkerSource = lease ?? (idConfig.workerId !== undefined ? fixedWorker(idConfig.workerId)
    : noWorker("this router has no catalog to lease a worker id from and no ids.workerId in its config: NextIds is off"));
  const snowflake = new Snowflake({
    worker, maxBackwardsMs: idConfig.maxClockBackwardsMs, now: options.clock,
    observer: {
      issued: (n) => obs.metrics.idsIssued.inc(n),
      clockBackwards: (behindMs, refused) => {
        obs.metrics.idsClockBackwards.inc({ outcome: refused ? "refused" : "waited" });
        logger.warn({ component: "ids", behindMs }, refused ? `the clock is ${behindMs} ms behind the last id issued: NextIds refused` : `the clock stepped back ${behindMs} ms: waiting it out`);
      },
    },
  });
  const handlers = routerService({ planner, coordinator, recovery, interactive, config, fence, onStaleMap, ids: snowflake });
  const readMaxBytes = 16 * 1024 * 1024;
  const connectAdapter = connectNodeAdapter({
    routes: (router: ConnectRouter) => {
      router.service(RouterService, withCaller(handlers));
      // Health and reflection (buf curl without --schema); reflection needs HTTP/2 (bidi stream).
      if (admin) router.service(AdminService, admin);
      router.service(Health, healthService(health, [RouterService.typeName, ...(admin ? [AdminService.typeName] : [])]));
      registerReflection(router, [RouterService, ...(admin ? [AdminService] : []), Health]);
    },
    // Observing first: it sees every outcome, refusals of auth included.
    interceptors: [obs.interceptor, ...(auth ? [authInterceptor(auth)] : []), rejectUnknownFields],
    contextValues: withPeer(obs.contextValues), // the request id, and the socket (client certificates)
    jsonOptions: { ignoreUnknownFields: false },
    readMaxBytes,
  });
  // Binary unary RouterService calls take the fast path; everything else goes to connect-node.
  const unary = unaryHandler({
    service: RouterService, handlers, observer: obs.rpcs, requestIdOf: obs.requestIdOf, requestIdFrom: obs.requestIdFrom,
    readMaxBytes, fallback: connectAdapter, admit: auth && auth.admit.bind(auth),
  });
  const handler = obs.withRequestIds(unary.http1);
  let listener: Listener;
  try {
    listener = await listen(handler, config.listen.host, config.listen.port, { http1: obs.http1, http2Stream: unary.http2, tls }); // GET /metrics
  } catch (err) {
    obs.close();
    await healthChecker.stop();
    await recovery.stop();
    await pruning.stop();
    await runner?.stop();
    await lease?.stop();
    await fenceFollower?.stop();
    await follower?.stop();
    await registered?.stop();
    await shards.close();
    await catalog?.close();
    throw new Error(`cannot listen on ${config.listen.host}:${config.listen.port}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  if (auth && !tls && !/^(127\.|::1$|localhost$)/.test(config.listen.host)) {
    logger.warn({ host: config.listen.host }, "auth is on without listen.tls: bearer tokens and API keys cross the network in clear; give listen.tls, or listen on 127.0.0.1 behind a TLS proxy");
  }
  return {
    url: `${tls ? "https" : "http"}://${config.listen.host}:${listener.port}`,
    reloadAuth(next) {
      if (!auth) throw new ConfigError("this router was started without auth (--insecure): restart it to turn auth on");
      const parsed = AuthConfigSchema.safeParse(next);
      if (!parsed.success) throw new ConfigError(`auth is invalid:\n${parsed.error.issues.map((i) => `  auth.${i.path.join(".")}: ${i.message}`).join("\n")}`);
      auth.reload(parsed.data);
      for (const shard of shards.shards) for (const node of shard.nodes) node.keepLogins(auth.logins);
    },
    planner,
    routerId: ids.routerId,
    get idWorkerId() {
      try {
        return worker.current().workerId;
      } catch {
        return undefined;
      }
    },
    pruneRequests: () => pruning.runOnce(),
    async close() {
      health.close(); // ends Watch streams, which would otherwise hold the listener open
      // Open interactive transactions are rolled back and their connections released first: their
      // calls in flight end now, and nothing is left for the pools' close to cut.
      await interactive.close();
      await listener.close();
      await recovery.stop();
      await pruning.stop();
      obs.close();
      await healthChecker.stop();
      await runner?.stop();
      await lease?.stop();
      await fenceFollower?.stop();
      await follower?.stop();
      await registered?.stop();
      await shards.close();
      await catalog?.close();
    },
  };
}


function readTls(files: NonNullable<Config["listen"]["tls"]>): { cert: Buffer; key: Buffer; ca?: Buffer } {
  const read = (what: string, path: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new ConfigError(`listen.tls.${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
  };
  return { cert: read("certFile", files.certFile), key: read("keyFile", files.keyFile), ca: files.clientCaFile ? read("clientCaFile", files.clientCaFile) : undefined };
}
