// A small Node backend over the SDK: an HTTP API that answers from the sharded accounts table.
//   npm start                  (another terminal: the router with the demo accounts)
//   SHARDROUTER_TOKEN=sr_…  npm run example:node   (the dev key npm start prints), then: curl localhost:3000/accounts/acct-42
//                                     curl -X POST 'localhost:3000/transfers?from=acct-1&to=acct-2&amount=5'
// Env: SHARDROUTER_URL (default http://127.0.0.1:8080), SHARDROUTER_TOKEN (the API key or JWT), PORT (default 3000).
import { createServer, type ServerResponse } from "node:http";
import { Code, ConnectError, createClient, type ShardRouterError } from "../src/node.ts";

const router = createClient({
  baseUrl: process.env.SHARDROUTER_URL ?? "http://127.0.0.1:8080",
  protocol: "grpc", // HTTP/2 to the router; "connect" works too
  token: process.env.SHARDROUTER_TOKEN,
  timeoutMs: 2000,
});

// bigint balances travel as JSON strings.
const send = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body, (_, v) => (typeof v === "bigint" ? v.toString() : v)));
};

// The router's codes say what the client did wrong; everything else is ours.
const httpStatus: Partial<Record<Code, number>> = {
  [Code.InvalidArgument]: 400, [Code.NotFound]: 404, [Code.FailedPrecondition]: 409, [Code.AlreadyExists]: 409,
  [Code.Unavailable]: 503, [Code.DeadlineExceeded]: 504, [Code.Unimplemented]: 501,
};

const server = createServer(async (req, res) => {
  const url = new URL(req.url ?? "/", "http://localhost");
  try {
    const account = /^\/accounts\/([^/]+)$/.exec(url.pathname);
    if (req.method === "GET" && account) {
      const id = decodeURIComponent(account[1]);
      const { rows, shard } = await router.onShard(id).query("select id, balance from accounts where id = $1", [id]);
      return rows.length ? send(res, 200, { ...rows[0], shard }) : send(res, 404, { error: `no account ${id}` });
    }
    if (req.method === "POST" && url.pathname === "/transfers") {
      const amount = BigInt(url.searchParams.get("amount") ?? "0");
      const result = await router.transfer(url.searchParams.get("from") ?? "", url.searchParams.get("to") ?? "", amount, {
        requestId: req.headers["idempotency-key"] as string | undefined,
      });
      return send(res, 200, result);
    }
    send(res, 404, { error: "try GET /accounts/acct-1 or POST /transfers?from=acct-1&to=acct-2&amount=5" });
  } catch (err) {
    if (!(err instanceof ConnectError)) return send(res, 400, { error: String(err) });
    const e = err as ShardRouterError;
    send(res, httpStatus[e.code] ?? 500, { error: e.rawMessage, code: Code[e.code], sqlstate: e.sqlstate });
  }
});

const port = Number(process.env.PORT ?? 3000);
server.listen(port, "127.0.0.1", () => console.log(`accounts API on http://127.0.0.1:${port} (try /accounts/acct-1)`));
process.on("SIGINT", () => { server.close(); router.close(); });
process.on("SIGTERM", () => { server.close(); router.close(); });
