// The operator's command line: drives a router's AdminService.
//   npm run shardrouter -- shard add shard-4 --primary HOST:PORT/DB [--replica HOST:PORT/DB …] [--weight N]
//   npm run shardrouter -- reshard add shard-4 [--weight 2] [--wait] [--no-cutover]
//   npm run shardrouter -- reshard drain shard-2 [--wait]
//   npm run shardrouter -- reshard status [JOB]
//   npm run shardrouter -- reshard cutover JOB [--wait]
//   npm run shardrouter -- reshard cancel JOB [--wait]
// --url (default http://127.0.0.1:8080, or SHARDROUTER_URL) names the router; --token (or
// SHARDROUTER_TOKEN) is the bearer token of an identity with the AdminService right. Flags are read with
// node:util parseArgs: the commands are few, a CLI framework would not pay for itself.
import { parseArgs } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { create } from "@bufbuild/protobuf";
import { AdminService, type Reshard, ReshardPhase, type ShardNodeAddress, ShardNodeAddressSchema } from "../gen/shardrouter/v1/admin_pb.js";

const usage = `usage: shardrouter shard add SHARD --primary HOST:PORT/DB [--replica HOST:PORT/DB …] [--weight N] [--url URL]
       shardrouter reshard <add SHARD | drain SHARD | status [JOB] | cutover JOB | cancel JOB> [--url URL] [--token TOKEN] [--wait]
  --token TOKEN   bearer token (JWT or API key) of an identity allowed AdminService; or SHARDROUTER_TOKEN
  shard add SHARD register an empty shard (its server running, its tables created): every router
                  connects to it with its own shard login; then \`reshard add SHARD\` gives it keys
  add SHARD       SHARD (registered with shard add, or configured on every router; owning no keys)
                  joins the hash ring; --weight N (default: its registered weight, or 1); cuts
                  over by itself once verified unless --no-cutover
  drain SHARD     every key of SHARD moves to the others (auto cutover as with add)
  status [JOB]    one job, or every job
  cutover JOB     switch a job that is ready (or once it is)
  cancel JOB      stop a job before its cutover; what it copied is removed
  --wait          follow the job until it is done, failed or cancelled (exit 1 unless it ended as asked)
  --job-id ID     name the new job (add, drain)`;

const phaseNames: Record<number, string> = {
  [ReshardPhase.COPYING]: "copying", [ReshardPhase.CATCHING_UP]: "catching_up", [ReshardPhase.VERIFYING]: "verifying",
  [ReshardPhase.READY]: "ready", [ReshardPhase.CUTTING_OVER]: "cutting_over", [ReshardPhase.DONE]: "done",
  [ReshardPhase.FAILED]: "failed", [ReshardPhase.CANCELLED]: "cancelled", [ReshardPhase.REVERSED]: "reversed",
};
const final = new Set([ReshardPhase.DONE, ReshardPhase.FAILED, ReshardPhase.CANCELLED, ReshardPhase.REVERSED]);

function describe(r: Reshard): string {
  const copied = r.sources.reduce((n, s) => n + s.rowsCopied, 0n);
  const estimated = r.moves.reduce((n, m) => n + m.estimatedRows, 0n);
  const lag = r.sources.reduce((n, s) => n + s.lagBytes, 0n);
  const behind = r.sources.reduce((n, s) => (s.lagMs > n ? s.lagMs : n), 0n);
  const parts = [`${r.jobId}: ${phaseNames[r.phase] ?? "unknown"}`, `rows ${copied}/${estimated}`];
  if (!final.has(r.phase)) parts.push(`lag ${lag} B, ${behind} ms`); // a finished job's last reading means nothing
  if (r.verify) parts.push(`verified ${r.verify.rowsCompared} rows, ${r.verify.mismatches} mismatches`);
  if (r.cutover) parts.push(`cutover fenced ${r.cutover.fencedMs.toFixed(0)} ms`);
  if (r.toVersion) parts.push(`shard map v${r.fromVersion} → v${r.toVersion}`);
  if (r.error) parts.push(`error: ${r.error}`);
  return parts.join(" · ");
}

/** --weight as a number >= 1, or 0 when it was not given. */
function weightFlag(text: string | undefined): number {
  if (text === undefined) return 0;
  const weight = Number(text);
  if (!Number.isInteger(weight) || weight < 1) throw new ConnectError(`--weight: "${text}" must be a whole number >= 1`, Code.InvalidArgument);
  return weight;
}

/** HOST:PORT/DATABASE as a node's address. */
function address(text: string, role: "primary" | "replica"): ShardNodeAddress {
  const m = /^(.+):(\d{1,5})\/(.+)$/.exec(text);
  if (!m) throw new ConnectError(`--${role}: "${text}" is not HOST:PORT/DATABASE`, Code.InvalidArgument);
  return create(ShardNodeAddressSchema, { host: m[1], port: Number(m[2]), database: m[3], role });
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true, strict: true,
    options: {
      url: { type: "string" }, token: { type: "string" }, wait: { type: "boolean" }, weight: { type: "string" }, "no-cutover": { type: "boolean" },
      "job-id": { type: "string" }, help: { type: "boolean", short: "h" },
      primary: { type: "string" }, replica: { type: "string", multiple: true },
    },
  });
  const [group, verb, arg] = positionals;
  if (values.help || (group !== "reshard" && group !== "shard") || !verb) {
    console.log(usage);
    return values.help ? 0 : 2;
  }
  const url = values.url ?? process.env.SHARDROUTER_URL ?? "http://127.0.0.1:8080";
  const token = values.token ?? process.env.SHARDROUTER_TOKEN;
  const admin = createClient(AdminService, createConnectTransport({
    baseUrl: url, httpVersion: "1.1",
    interceptors: token ? [(next) => (req) => { req.header.set("authorization", `Bearer ${token}`); return next(req); }] : [],
  }));
  const need = (what: string) => {
    if (!arg) throw new ConnectError(`reshard ${verb} needs ${what}`, Code.InvalidArgument);
    return arg;
  };
  if (group === "shard") {
    if (verb !== "add" || !arg || !values.primary) {
      console.log(usage);
      return 2;
    }
    const weight = weightFlag(values.weight) || 1;
    const nodes = [address(values.primary, "primary"), ...(values.replica ?? []).map((r) => address(r, "replica"))];
    const { shard } = await admin.addShard({ name: arg, nodes, weight });
    console.log(`${shard!.name}: registered (${shard!.state}, weight ${shard!.weight}): ${shard!.nodes.map((n) => `${n.name} ${n.address}`).join(", ")}`);
    console.log(`  next: shardrouter reshard add ${shard!.name} --wait`);
    return 0;
  }
  let job: Reshard | undefined;
  switch (verb) {
    case "add": {
      const weight = weightFlag(values.weight); // 0: the shard's own weight
      job = (await admin.startReshard({ jobId: values["job-id"], addShards: [{ name: need("a shard"), weight }], autoCutover: !values["no-cutover"] })).reshard;
      break;
    }
    case "drain":
      job = (await admin.startReshard({ jobId: values["job-id"], drainShards: [need("a shard")], autoCutover: !values["no-cutover"] })).reshard;
      break;
    case "status":
      if (!arg) {
        for (const r of (await admin.listReshards({})).reshards) console.log(describe(r));
        return 0;
      }
      job = (await admin.getReshard({ jobId: arg })).reshard;
      break;
    case "cutover":
      job = (await admin.cutOver({ jobId: need("a job id") })).reshard;
      break;
    case "cancel":
      job = (await admin.cancelReshard({ jobId: need("a job id") })).reshard;
      break;
    default:
      console.log(usage);
      return 2;
  }
  if (!job) return 1;
  if (verb === "add" || verb === "drain") {
    for (const m of job.moves) console.log(`  ${m.source} → ${m.target}: about ${m.estimatedRows} rows`);
  }
  if (!values.wait) {
    console.log(describe(job));
    return 0;
  }
  // On a terminal the status line is rewritten in place; piped, each change is a line of its own.
  const tty = process.stdout.isTTY;
  let last = "";
  for (;;) {
    const line = describe(job);
    if (line !== last) {
      if (tty) process.stdout.write(`\r\x1b[2K${line}`);
      else console.log(line);
      last = line;
    }
    if (final.has(job.phase)) break;
    await new Promise((r) => setTimeout(r, 500));
    job = (await admin.getReshard({ jobId: job.jobId })).reshard!;
  }
  if (tty) process.stdout.write("\n");
  return job.phase === (verb === "cancel" ? ReshardPhase.CANCELLED : ReshardPhase.DONE) ? 0 : 1;
}

main().then((code) => process.exit(code), (err) => {
  console.error(err instanceof ConnectError ? `shardrouter: ${err.rawMessage} (${Code[err.code]})` : `shardrouter: ${(err as Error).message}`);
  process.exit(1);
});
