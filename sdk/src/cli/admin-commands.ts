// The operator's commands, on AdminService (the SDK's generated client): shard add, reshard add |
// drain | status | cutover | cancel. With --json they print the answer in protobuf's JSON mapping
// (every field, int64 as strings, enums by name).
import { type DescMessage, type MessageShape, create, toJson as protoJson } from "@bufbuild/protobuf";
import {
  AddShardResponseSchema, ListReshardsResponseSchema, type Reshard, ReshardPhase, ReshardSchema, type ShardNodeAddress, ShardNodeAddressSchema,
} from "../gen/shardrouter/v1/admin_pb.ts";
import { type Command, type Context, UsageError, expectArgs, intFlag } from "./command.ts";
import { printable, toJson } from "./output.ts";

const phaseNames: Record<number, string> = {
  [ReshardPhase.COPYING]: "copying", [ReshardPhase.CATCHING_UP]: "catching_up", [ReshardPhase.VERIFYING]: "verifying",
  [ReshardPhase.READY]: "ready", [ReshardPhase.CUTTING_OVER]: "cutting_over", [ReshardPhase.DONE]: "done",
  [ReshardPhase.FAILED]: "failed", [ReshardPhase.CANCELLED]: "cancelled", [ReshardPhase.REVERSED]: "reversed",
};
const final = new Set([ReshardPhase.DONE, ReshardPhase.FAILED, ReshardPhase.CANCELLED, ReshardPhase.REVERSED]);

/** One line per job: phase, rows, lag, verification, cutover, versions, error. */
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
  return printable(parts.join(" · "));
}

const json = <D extends DescMessage>(schema: D, message: MessageShape<D>) => `${toJson(protoJson(schema, message, { alwaysEmitImplicit: true }))}\n`;

/** HOST:PORT/DATABASE as a node's address. */
function address(text: string, role: "primary" | "replica"): ShardNodeAddress {
  const m = /^(.+):(\d{1,5})\/(.+)$/.exec(text);
  if (!m) throw new UsageError(`--${role}: "${text}" is not HOST:PORT/DATABASE`);
  return create(ShardNodeAddressSchema, { host: m[1], port: Number(m[2]), database: m[3], role });
}

const shardAdd: Command = {
  name: "shard add",
  args: "SHARD --primary HOST:PORT/DB [--replica HOST:PORT/DB …] [--weight N]",
  summary: "register an empty shard (its server running, its tables created); then `reshard add SHARD` gives it keys",
  help: `  Every router connects to it with its own shard login. --weight N (default 1) is its weight when it
  joins the hash ring.`,
  options: { primary: { type: "string" }, replica: { type: "string", multiple: true }, weight: { type: "string" } },
  async run(ctx) {
    const [name] = expectArgs(ctx, 1, 1, "SHARD");
    const primary = ctx.values.primary as string | undefined;
    if (!primary) throw new UsageError("--primary HOST:PORT/DB is required");
    const weight = intFlag(ctx.values, "weight", 1) ?? 1;
    const nodes = [address(primary, "primary"), ...((ctx.values.replica as string[] | undefined) ?? []).map((r) => address(r, "replica"))];
    const answer = await ctx.admin().addShard({ name, nodes, weight });
    if (ctx.json) {
      ctx.out(json(AddShardResponseSchema, answer));
      return 0;
    }
    const shard = answer.shard!;
    ctx.out(printable(`${shard.name}: registered (${shard.state}, weight ${shard.weight}): ${shard.nodes.map((n) => `${n.name} ${n.address}`).join(", ")}`) + "\n");
    ctx.out(`  next: shardrouter reshard add ${printable(shard.name)} --wait\n`);
    return 0;
  },
};

const waitHelp = "  --wait          follow the job until it is done, failed or cancelled (exit 1 unless it ended as asked)";

/** Prints a job, following it with --wait; the exit status says whether it ended as `verb` asked. */
async function report(ctx: Context, verb: string, job: Reshard): Promise<number> {
  if (!ctx.json && (verb === "add" || verb === "drain")) {
    for (const m of job.moves) ctx.out(printable(`  ${m.source} → ${m.target}: about ${m.estimatedRows} rows`) + "\n");
  }
  if (!ctx.values.wait) {
    ctx.out(ctx.json ? json(ReshardSchema, job) : `${describe(job)}\n`);
    return 0;
  }
  // On a terminal the status line is rewritten in place; piped, each change is a line of its own.
  // With --json the progress goes to stderr and stdout gets the finished job only.
  const tty = !ctx.json && process.stdout.isTTY;
  const show = (line: string) => (ctx.json ? ctx.note(line) : tty ? ctx.out(`\r\x1b[2K${line}`) : ctx.out(`${line}\n`));
  let last = "";
  for (;;) {
    const line = describe(job);
    if (line !== last) {
      show(line);
      last = line;
    }
    if (final.has(job.phase)) break;
    await new Promise((r) => setTimeout(r, 500));
    job = (await ctx.admin().getReshard({ jobId: job.jobId })).reshard!;
  }
  if (tty) ctx.out("\n");
  if (ctx.json) ctx.out(json(ReshardSchema, job));
  return job.phase === (verb === "cancel" ? ReshardPhase.CANCELLED : ReshardPhase.DONE) ? 0 : 1;
}

const reshardAdd: Command = {
  name: "reshard add",
  args: "SHARD [--weight N] [--job-id ID] [--no-cutover] [--wait]",
  summary: "SHARD (registered with shard add, or a spare on every router) joins the hash ring and gets its keys, online",
  help: `  --weight N      its weight on the ring (default: its registered weight, or 1)
  --job-id ID     name the job (default: the router makes one)
  --no-cutover    stop at ready; \`reshard cutover JOB\` switches (default: it cuts over by itself once verified)
${waitHelp}`,
  options: { weight: { type: "string" }, "job-id": { type: "string" }, "no-cutover": { type: "boolean" }, wait: { type: "boolean" } },
  async run(ctx) {
    const [name] = expectArgs(ctx, 1, 1, "SHARD");
    const weight = intFlag(ctx.values, "weight", 1) ?? 0; // 0: the shard's own weight
    const { reshard } = await ctx.admin().startReshard({ jobId: ctx.values["job-id"] as string | undefined, addShards: [{ name, weight }], autoCutover: !ctx.values["no-cutover"] });
    return report(ctx, "add", reshard!);
  },
};

const reshardDrain: Command = {
  name: "reshard drain",
  args: "SHARD [--job-id ID] [--no-cutover] [--wait]",
  summary: "every key of SHARD moves to the others, online (cuts over by itself as add does)",
  help: `  --job-id ID     name the job\n  --no-cutover    stop at ready\n${waitHelp}`,
  options: { "job-id": { type: "string" }, "no-cutover": { type: "boolean" }, wait: { type: "boolean" } },
  async run(ctx) {
    const [name] = expectArgs(ctx, 1, 1, "SHARD");
    const { reshard } = await ctx.admin().startReshard({ jobId: ctx.values["job-id"] as string | undefined, drainShards: [name], autoCutover: !ctx.values["no-cutover"] });
    return report(ctx, "drain", reshard!);
  },
};

const reshardStatus: Command = {
  name: "reshard status",
  args: "[JOB] [--wait]",
  summary: "one job, or every job",
  help: waitHelp,
  options: { wait: { type: "boolean" } },
  async run(ctx) {
    const [jobId] = expectArgs(ctx, 0, 1, "JOB");
    if (jobId === undefined) {
      const list = await ctx.admin().listReshards({});
      ctx.out(ctx.json ? json(ListReshardsResponseSchema, list) : list.reshards.map((r) => `${describe(r)}\n`).join(""));
      return 0;
    }
    return report(ctx, "status", (await ctx.admin().getReshard({ jobId })).reshard!);
  },
};

/** A command on one job, JOB [--wait]: cutover, cancel. */
function jobCommand(verb: string, summary: string, call: (ctx: Context, jobId: string) => Promise<{ reshard?: Reshard }>): Command {
  return {
    name: `reshard ${verb}`, args: "JOB [--wait]", summary, help: waitHelp, options: { wait: { type: "boolean" } },
    async run(ctx) {
      const [jobId] = expectArgs(ctx, 1, 1, "JOB");
      return report(ctx, verb, (await call(ctx, jobId)).reshard!);
    },
  };
}

const reshardCutover = jobCommand("cutover", "switch a job that is ready (or once it is)", (ctx, jobId) => ctx.admin().cutOver({ jobId }));
const reshardCancel = jobCommand("cancel", "stop a job before its cutover; what it copied is removed", (ctx, jobId) => ctx.admin().cancelReshard({ jobId }));

const reshardComplete = jobCommand("complete", "confirm a done job's clean-up (old rows deleted, slots dropped); refused with what holds it until then",
  (ctx, jobId) => ctx.admin().completeReshard({ jobId }));
const reshardReverse = jobCommand("reverse", "undo a done job: a new job (JOB_reverse) moves the rows back, online, and cuts over by itself",
  (ctx, jobId) => ctx.admin().reverseReshard({ jobId }));

export const adminCommands: Command[] = [shardAdd, reshardAdd, reshardDrain, reshardStatus, reshardCutover, reshardCancel, reshardComplete, reshardReverse];
