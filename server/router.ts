// The composition root: from a validated config to a serving router. Data flows one way:
// RPC handlers → planner (placement) → execution (statement, scatter-gather, merge) → node pools.
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { RouterService } from "../gen/shardrouter/v1/router_pb.js";
import { Catalog } from "./catalog/catalog.js";
import { CatalogDirectoryStore } from "./catalog/directory-store.js";
import type { Config } from "./config/config.js";
import { Planner } from "./execution/planner.js";
import { buildShardMap } from "./placement/shard-map.js";
import { listen, type Listener } from "./rpc/listener.js";
import { routerService } from "./rpc/router-service.js";
import { rejectUnknownFields } from "./rpc/strict-fields.js";
import { ShardSet } from "./shards/shard-set.js";

export interface RunningRouter {
  readonly url: string;
  readonly planner: Planner;
  close(): Promise<void>;
}

export async function startRouter(config: Config): Promise<RunningRouter> {
  const catalog = config.catalog ? await Catalog.open(config.catalog) : undefined;
  if (config.placement.strategy === "directory" && !catalog) {
    throw new Error("placement.strategy: \"directory\" needs a catalog database (config field catalog)");
  }
  const shardMap = buildShardMap(
    config.placement,
    config.shards.map((s) => ({ name: s.name, weight: s.weight })),
    { version: 1, directory: catalog && new CatalogDirectoryStore(catalog) },
  );
  const shards = new ShardSet(config);
  const planner = new Planner(shardMap, shards);

  const handler = connectNodeAdapter({
    routes: (router: ConnectRouter) => router.service(RouterService, routerService(planner, config.limits)),
    interceptors: [rejectUnknownFields],
    jsonOptions: { ignoreUnknownFields: false },
    readMaxBytes: 16 * 1024 * 1024,
  });
  let listener: Listener;
  try {
    listener = await listen(handler, config.listen.host, config.listen.port);
  } catch (err) {
    await shards.close();
    await catalog?.close();
    throw new Error(`cannot listen on ${config.listen.host}:${config.listen.port}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  return {
    url: `http://${config.listen.host}:${listener.port}`,
    planner,
    async close() {
      await listener.close();
      await shards.close();
      await catalog?.close();
    },
  };
}
