// The AdminService handlers: plan a reshard job and record it in the catalog (JobRunner runs it on
// whichever router holds its lease), and read or steer jobs. Planning validates the new map the same
// way routers will when they load it, so a job that starts can be served.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { type AddShardRequest, AdminService, ReshardPhase, type Reshard, ReshardSchema, type StartReshardRequest } from "../../gen/shardrouter/v1/admin_pb.js";
import { ShardSchema } from "../../gen/shardrouter/v1/router_pb.js";
import type { JobPhase, JobTarget, ReshardJobStore, StoredJob, StoredMove } from "../catalog/reshard-job-store.js";
import { shardMapOf } from "../catalog/shard-map-follower.js";
import type { ShardMapStore, StoredShard, StoredShardMap } from "../catalog/shard-map-store.js";
import { type Config, passwordOf, shardLoginOf } from "../config/config.js";
import type { ShardRegistry } from "../catalog/shard-registry.js";
import { unfitPrimary } from "../shards/node-probe.js";
import type { ShardDefinition, ShardSet } from "../shards/shard-set.js";
import { describeNodes, shardStatus } from "./topology.js";
import type { DirectoryStore } from "../placement/directory.js";
import { PlacementConfigSchema } from "../placement/placement-config.js";
import type { JobRunner } from "../resharding/job-runner.js";
import { resharderNode } from "../resharding/job-runner.js";
import { nodeClient } from "../resharding/node-client.js";
import { ReshardPlanError, planMoves } from "../resharding/plan.js";
import { readTableShape, shardKeys } from "../resharding/table-schema.js";
import { requestLogTable } from "../transactions/request-log.js";

export interface AdminServiceDeps {
  jobs: ReshardJobStore;
  maps: ShardMapStore;
  runner: JobRunner;
  config: Pick<Config, "shards" | "shardLogin" | "resharding" | "pool">;
  /** Every shard this router has nodes for; AddShard adds to it. */
  shards: ShardSet;
  registry: ShardRegistry;
  /** This router's id (who registered a shard). */
  router: string;
  /** A shard registered here: open its pools now (other routers follow the catalog). */
  onShardAdded(definition: ShardDefinition): Promise<void>;
  directory?: DirectoryStore;
  /**
   * Makes sure these shards hold the request log (idempotency records move with their keys, so the
   * log is one of the tables every job moves), created by the router's own role.
   */
  prepareShards?: (names: string[]) => Promise<void>;
  /** A job started: this router refuses schema changes from now on, not only from its next poll. */
  onJobsChanged?: () => Promise<void>;
}

const phases: Record<JobPhase, ReshardPhase> = {
  copying: ReshardPhase.COPYING, catching_up: ReshardPhase.CATCHING_UP, verifying: ReshardPhase.VERIFYING, ready: ReshardPhase.READY,
  cutting_over: ReshardPhase.CUTTING_OVER, done: ReshardPhase.DONE, failed: ReshardPhase.FAILED, cancelled: ReshardPhase.CANCELLED,
  reversed: ReshardPhase.REVERSED,
};

export function adminService(deps: AdminServiceDeps): ServiceImpl<typeof AdminService> {
  const get = async (id: string) => {
    const job = await deps.jobs.get(id);
    if (!job) throw new ConnectError(`no reshard job "${id}"`, Code.NotFound);
    return job;
  };
  /** Plans and records a job, and takes its lease here. */
  const start = async (id: string, current: StoredShardMap, to: Omit<JobTarget, "tables">, autoCutover: boolean): Promise<Reshard> => {
    const target: JobTarget = { ...to, tables: [...deps.config.resharding.tables, requestLogTable] };
    await deps.prepareShards?.([...new Set([...current.shards, ...to.shards].map((s) => s.name))]);
    const moves = await plan(current, target, deps);
    const outcome = await deps.jobs.create({ id, fromVersion: current.version, target, autoCutover, moves });
    if (outcome === "exists") throw new ConnectError(`reshard job "${id}" exists already`, Code.AlreadyExists);
    if (outcome === "busy") throw new ConnectError("another reshard job is still running: wait for it, or cancel it, first", Code.FailedPrecondition);
    await deps.runner.tick(); // this router takes the job at once
    await deps.onJobsChanged?.();
    return toProto(await get(id));
  };
  return {
    async addShard(req) {
      const definition = shardDefinition(req, deps);
      const primary = definition.nodes.find((n) => n.role === "primary")!;
      const unfit = await unfitPrimary({ ...primary, name: primary.name!, password: passwordOf(primary) }, deps.config.pool.connectTimeoutMs);
      if (unfit) throw new ConnectError(`AddShard ${definition.name}: ${unfit}`, Code.FailedPrecondition);
      const addresses = definition.nodes.map(({ name, host, port, database, role }) => ({ name: name!, host, port, database, role }));
      if (!(await deps.registry.add({ name: definition.name, weight: definition.weight, nodes: addresses }, deps.router))) {
        throw new ConnectError(`shard "${definition.name}" is registered already`, Code.AlreadyExists);
      }
      await deps.onShardAdded(definition);
      const shard = deps.shards.shard(definition.name);
      return {
        shard: create(ShardSchema, {
          name: shard.name, status: shardStatus(shard), nodes: describeNodes(shard), weight: shard.weight, state: "spare",
          ownership: { description: "owns no keys (spare)", keyspaceFraction: 0 },
        }),
      };
    },
    async startReshard(req) {
      const id = req.jobId || `reshard_${Date.now().toString(36)}`;
      if (!/^[a-z0-9_]{1,40}$/.test(id)) throw new ConnectError("job_id: use 1-40 lower-case letters, digits and '_'", Code.InvalidArgument);
      const current = await deps.maps.latest();
      if (!current) throw new ConnectError("the catalog holds no shard map yet", Code.FailedPrecondition);
      const target = req.directoryMoves.length ? await directoryTarget(req, current, deps) : targetOf(req, current, deps.shards);
      return { reshard: await start(id, current, target, req.autoCutover) };
    },
    async reverseReshard(req) {
      const job = await get(req.jobId);
      if (job.phase !== "done" || job.toVersion === undefined) {
        throw new ConnectError(`reshard job "${job.id}" is ${job.phase}: only a job that is done can be reversed (before its cutover, cancel it)`, Code.FailedPrecondition);
      }
      const current = await deps.maps.latest();
      if (!current || current.version !== job.toVersion) {
        throw new ConnectError(`the shard map is version ${current?.version}, no longer the one job "${job.id}" made (${job.toVersion}): reshard to the map you want instead`, Code.FailedPrecondition);
      }
      const before = await deps.maps.at(job.fromVersion);
      if (!before) throw new ConnectError(`shard map version ${job.fromVersion} is not in the catalog`, Code.FailedPrecondition);
      // The shards the job gave keys to and the old map does not name own none again.
      const retired = current.shards.filter((s) => !before.shards.some((b) => b.name === s.name)).map((s) => ({ ...s, state: "retired" as const }));
      // A directory job's keys go back to the owners they had.
      const keyMoves = job.target.keyMoves && Object.fromEntries(Object.entries(job.target.keyMoves).map(([key, m]) => [key, { from: m.to, to: m.from }]));
      return {
        reshard: await start(`${job.id}_reverse`.slice(0, 40), current, { placement: before.placement, shards: [...before.shards, ...retired], reverses: job.id, ...(keyMoves ? { keyMoves } : {}) }, true),
      };
    },
    async completeReshard(req) {
      const job = await get(req.jobId);
      if (job.phase === "done" || job.phase === "reversed") return { reshard: toProto(job) };
      if (job.phase === "cutting_over" && job.toVersion !== undefined) {
        throw new ConnectError(`reshard job "${job.id}" is cut over and still cleaning up its sources${job.error ? `: ${job.error}` : ""}; it finishes by itself`, Code.FailedPrecondition);
      }
      throw new ConnectError(`reshard job "${job.id}" is ${job.phase}: only a job past its cutover has a clean-up to complete`, Code.FailedPrecondition);
    },
    async getReshard(req) {
      return { reshard: toProto(await get(req.jobId)) };
    },
    async listReshards() {
      return { reshards: (await deps.jobs.list()).map(toProto) };
    },
    async cutOver(req) {
      const job = await get(req.jobId);
      if (!(await deps.jobs.requestCutover(job.id))) throw new ConnectError(`reshard job "${job.id}" is ${job.phase}: nothing to cut over`, Code.FailedPrecondition);
      return { reshard: toProto(await get(job.id)) };
    },
    async cancelReshard(req) {
      const job = await get(req.jobId);
      if (!(await deps.jobs.requestCancel(job.id))) {
        throw new ConnectError(`reshard job "${job.id}" is ${job.phase}: only a job before its cutover can be cancelled`, Code.FailedPrecondition);
      }
      return { reshard: toProto(await get(job.id)) };
    },
  };
}

/** The new map a request asks for, from the one in force. */
function targetOf(req: StartReshardRequest, current: StoredShardMap, knownShards: ShardSet): Omit<JobTarget, "tables"> {
  const known = (name: string, field: string) => {
    if (!knownShards.has(name)) throw new ConnectError(`${field}: shard "${name}" is unknown here: register it with AddShard (or add its nodes to every router's config)`, Code.InvalidArgument);
  };
  const weight = (w: number, field: string) => {
    if (w > 1000) throw new ConnectError(`${field}: weight ${w} must be 1..1000`, Code.InvalidArgument);
    return w || 1;
  };
  if (req.placementJson) {
    let raw: unknown;
    try { raw = JSON.parse(req.placementJson); } catch (err) {
      throw new ConnectError(`placement_json is not valid JSON: ${(err as Error).message}`, Code.InvalidArgument);
    }
    const parsed = PlacementConfigSchema.safeParse(raw);
    if (!parsed.success) throw new ConnectError(`placement_json: ${parsed.error.issues[0].message} at ${parsed.error.issues[0].path.join(".") || "top"}`, Code.InvalidArgument);
    if (req.shards.length === 0) throw new ConnectError("shards: name the shards that own keys under placement_json", Code.InvalidArgument);
    req.shards.forEach((s, i) => known(s.name, `shards[${i}]`));
    const owning: StoredShard[] = req.shards.map((s, i) => ({ name: s.name, weight: weight(s.weight, `shards[${i}]`), state: "active" }));
    const retired: StoredShard[] = current.shards.filter((s) => !req.shards.some((o) => o.name === s.name)).map((s) => ({ ...s, state: "retired" }));
    return { placement: parsed.data, shards: [...owning, ...retired] };
  }
  if (current.placement.strategy !== "hash_ring") {
    throw new ConnectError(`add_shards, drain_shards and set_weights change a hash ring; this map is ${current.placement.strategy}: give placement_json and shards`, Code.InvalidArgument);
  }
  const shards = new Map(current.shards.map((s) => [s.name, { ...s }]));
  req.addShards.forEach((s, i) => {
    known(s.name, `add_shards[${i}]`);
    const had = shards.get(s.name);
    if (had && (had.state === "active" || had.state === "draining")) throw new ConnectError(`add_shards[${i}]: shard "${s.name}" owns keys already`, Code.InvalidArgument);
    // Weight 0: the weight it was registered (or configured) with.
    shards.set(s.name, { name: s.name, weight: weight(s.weight || knownShards.shard(s.name).weight, `add_shards[${i}]`), state: "active" });
  });
  req.drainShards.forEach((name, i) => {
    const had = shards.get(name);
    if (!had || had.state !== "active") throw new ConnectError(`drain_shards[${i}]: shard "${name}" owns no keys`, Code.InvalidArgument);
    had.state = "retired";
  });
  req.setWeights.forEach((s, i) => {
    const had = shards.get(s.name);
    if (!had || had.state !== "active") throw new ConnectError(`set_weights[${i}]: shard "${s.name}" owns no keys`, Code.InvalidArgument);
    had.weight = weight(s.weight, `set_weights[${i}]`);
  });
  if (req.addShards.length + req.drainShards.length + req.setWeights.length === 0) {
    throw new ConnectError("nothing to do: give add_shards, drain_shards, set_weights, or placement_json with shards", Code.InvalidArgument);
  }
  return { placement: current.placement, shards: [...shards.values()] };
}

/**
 * directory_moves: the listed keys go to the named shards, each from the shard the directory names
 * now (kept with the job, since the directory changes at the cutover). A target outside the map
 * joins it (new keys may then be assigned to it as well).
 */
async function directoryTarget(req: StartReshardRequest, current: StoredShardMap, deps: AdminServiceDeps): Promise<Omit<JobTarget, "tables">> {
  if (current.placement.strategy !== "directory") {
    throw new ConnectError(`directory_moves move keys of a directory map; this map is ${current.placement.strategy}: give placement_json and shards`, Code.InvalidArgument);
  }
  if (req.addShards.length + req.drainShards.length + req.setWeights.length > 0 || req.placementJson) {
    throw new ConnectError("directory_moves go alone: no add_shards, drain_shards, set_weights or placement_json with them", Code.InvalidArgument);
  }
  const from = shardMapOf(current, { known: deps.shards, directory: deps.directory });
  const shards = new Map(current.shards.map((s) => [s.name, { ...s }]));
  const keyMoves: NonNullable<JobTarget["keyMoves"]> = {};
  for (const [i, m] of req.directoryMoves.entries()) {
    if (!deps.shards.has(m.shard)) throw new ConnectError(`directory_moves[${i}].shard: shard "${m.shard}" is unknown here: register it with AddShard`, Code.InvalidArgument);
    if (keyMoves[m.key]) throw new ConnectError(`directory_moves[${i}].key: key ${JSON.stringify(m.key)} is listed twice`, Code.InvalidArgument);
    const owner = (await from.strategy.place(m.key)).shard; // a key not in the directory yet is assigned now
    keyMoves[m.key] = { from: owner, to: m.shard };
    const had = shards.get(m.shard);
    if (!had || had.state !== "active") shards.set(m.shard, { name: m.shard, weight: had?.weight ?? deps.shards.shard(m.shard).weight, state: "active" });
  }
  if (Object.values(keyMoves).every((m) => m.from === m.to)) throw new ConnectError("nothing to do: every key is on its shard already", Code.InvalidArgument);
  return { placement: current.placement, shards: [...shards.values()], keyMoves };
}

const shardName = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** An AddShard request as a shard definition with the shard login; refuses what could not be served. */
function shardDefinition(req: AddShardRequest, deps: AdminServiceDeps): ShardDefinition {
  const problems: string[] = [];
  if (!shardName.test(req.name)) problems.push("name: use 1-63 letters, digits, '_', '.', '-', starting with a letter or digit");
  if (req.weight > 1000) problems.push(`weight: ${req.weight} must be 1..1000 (0 means 1)`);
  if (req.nodes.length === 0) problems.push("nodes: give at least the shard's primary");
  const primaries = req.nodes.filter((n) => n.role === "primary").length;
  if (req.nodes.length > 0 && primaries !== 1) problems.push(`nodes: needs exactly one node with role "primary", found ${primaries}`);
  const taken = new Set(deps.shards.shards.flatMap((s) => s.nodes.map((n) => n.name)));
  const names = req.nodes.map((n, i) => n.name || `${req.name}-${n.role}${n.role === "replica" ? `-${i}` : ""}`);
  req.nodes.forEach((n, i) => {
    if (n.role !== "primary" && n.role !== "replica") problems.push(`nodes[${i}].role: "primary" or "replica", not "${n.role}"`);
    if (!n.host) problems.push(`nodes[${i}].host: required`);
    if (n.port < 1 || n.port > 65535) problems.push(`nodes[${i}].port: ${n.port} is not a port`);
    if (!n.database) problems.push(`nodes[${i}].database: required`);
    if (!shardName.test(names[i])) problems.push(`nodes[${i}].name: use letters, digits, '_', '.', '-'`);
    if (taken.has(names[i]) || names.indexOf(names[i]) !== i) problems.push(`nodes[${i}].name: "${names[i]}" names another node already`);
  });
  if (deps.shards.has(req.name)) throw new ConnectError(`shard "${req.name}" is configured or registered already`, Code.AlreadyExists);
  if (problems.length) throw new ConnectError(`AddShard: ${problems.join("; ")}`, Code.InvalidArgument);
  const login = shardLoginOf(deps.config);
  return {
    name: req.name,
    weight: req.weight || 1,
    nodes: req.nodes.map((n, i) => ({ name: names[i], host: n.host, port: n.port, database: n.database, role: n.role as "primary" | "replica", ...login })),
  };
}

/** Each source's moves with the rows they carry, counted now; refuses a plan the job could not carry out. */
async function plan(current: StoredShardMap, target: JobTarget, deps: AdminServiceDeps): Promise<StoredMove[]> {
  const opts = { known: deps.shards, directory: deps.directory };
  let plans;
  try {
    const from = shardMapOf(current, opts);
    const to = shardMapOf({ version: current.version + 1, placement: target.placement, shards: target.shards }, opts);
    if (to.shards.length === 0) throw new Error("the new map would have no shard that owns keys");
    plans = planMoves(from, to, target.keyMoves);
  } catch (err) {
    throw new ConnectError(`the new shard map is not valid: ${(err as Error).message}`, err instanceof ReshardPlanError ? Code.Unimplemented : Code.InvalidArgument);
  }
  const moves: StoredMove[] = [];
  for (const p of plans) {
    const sql = nodeClient(resharderNode(deps.config, deps.shards, p.source), { max: 1, connectTimeoutMs: deps.config.pool.connectTimeoutMs });
    try {
      const counts = new Map<string, Record<string, number>>();
      for (const table of target.tables) {
        const shape = await readTableShape(sql, table, p.source).catch((err: Error) => {
          throw new ConnectError(`cannot move ${table.name} from ${p.source}: ${err.message}`, Code.FailedPrecondition);
        });
        for (const k of await shardKeys(sql, shape)) {
          const to = p.destination(k);
          if (!to) continue;
          const perTable = counts.get(to) ?? counts.set(to, {}).get(to)!;
          perTable[table.name] = (perTable[table.name] ?? 0) + 1;
        }
      }
      for (const [targetShard, tables] of counts) {
        moves.push({ source: p.source, target: targetShard, estimatedRows: Object.values(tables).reduce((a, b) => a + b, 0), tables });
      }
    } finally {
      await sql.end({ timeout: 1 });
    }
  }
  return moves;
}

function toProto(job: StoredJob): Reshard {
  return create(ReshardSchema, {
    jobId: job.id,
    phase: phases[job.phase] ?? ReshardPhase.UNSPECIFIED,
    fromVersion: BigInt(job.fromVersion),
    toVersion: BigInt(job.toVersion ?? 0),
    moves: job.moves.map((m) => ({ source: m.source, target: m.target, estimatedRows: BigInt(m.estimatedRows) })),
    sources: (job.progress ?? []).map((p) => ({
      source: p.source, phase: p.phase, rowsCopied: BigInt(p.rowsCopied), lagBytes: BigInt(p.lagBytes), lagMs: BigInt(p.lagMs ?? 0),
      attempts: p.attempts, error: p.error ?? "",
    })),
    tables: job.target.tables.map(({ name }) => ({
      table: name,
      rowsCopied: BigInt((job.progress ?? []).reduce((n, p) => n + (p.tables?.[name] ?? 0), 0)),
      rowsTotal: BigInt(job.moves.reduce((n, m) => n + (m.tables?.[name] ?? 0), 0)),
    })),
    reverses: job.target.reverses ?? "",
    verify: job.verify && { rowsCompared: BigInt(job.verify.rowsCompared), mismatches: BigInt(job.verify.mismatches), examples: job.verify.examples },
    cutover: job.cutover,
    error: job.error ?? "",
    autoCutover: job.autoCutover,
    runner: job.leaseOwner ?? "",
  });
}
