// The same package from require() (dist/cjs), on the node entry's lean transport.
const { createClient, ShardRouterError } = require("@shardrouter/sdk/node");

const router = createClient({ baseUrl: process.env.SHARDROUTER_URL });
router.route(process.env.FROM_KEY)
  .then((r) => console.log(JSON.stringify({ shard: r.shard, errorClass: typeof ShardRouterError })))
  .finally(() => router.close());
