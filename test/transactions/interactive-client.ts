// A client process for interactive-crash.test.ts (not a test file): begins an interactive transaction,
// updates a row (holding its lock), says so on stdout, then waits inside a long statement until the
// test SIGKILLs it.   node --import tsx interactive-client.ts <router url> <key> <row id> <idle ms>
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { RouterService } from "../../gen/shardrouter/v1/router_pb.js";

const [url, key, id, idleMs] = process.argv.slice(2);
const client = createClient(RouterService, createGrpcTransport({ baseUrl: url }));
const { transactionToken } = await client.beginTransaction({ key, idleTimeoutMs: Number(idleMs) });
await client.executeInTransaction({
  transactionToken, sql: "update items set n = n + 1 where id = $1", params: [{ kind: { case: "stringValue", value: id } }],
});
process.stdout.write("updated\n");
await client.executeInTransaction({ transactionToken, sql: "select pg_sleep(60), 'killed-client-probe'" });
