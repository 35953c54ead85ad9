// The router's configuration: one JSON file (and a few CLI flags over it), validated at start with
// errors that name the bad field. Passwords may come from the environment and are never printed.
import { readFileSync } from "node:fs";
import { z } from "zod";
import { AuthConfigSchema } from "../auth/auth-config.js";
import { PlacementConfigSchema } from "../placement/placement-config.js";
import { type PostgresTls, PostgresTlsSchema, SharedPostgresTlsSchema } from "./postgres-tls.js";

const port = z.number().int().min(0).max(65535); // 0: any free port (tests)
const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, "use letters, digits, '_', '.', '-'");

const ConnectionSchema = z.object({
  host: z.string().min(1),
  port,
  database: z.string().min(1),
  user: z.string().min(1),
  password: z.string().optional(),
  /** Name of an environment variable holding the password. */
  passwordEnv: z.string().optional(),
  /**
   * TLS with the server's certificate verified: { caFile, serverName?, certFile?, keyFile? }
   * (postgres-tls.ts). Every connection to this server uses it, whichever login it carries.
   */
  ssl: PostgresTlsSchema.optional(),
}).strict();

const NodeSchema = ConnectionSchema.extend({
  name: name.optional(),
  role: z.enum(["primary", "replica"]).default("primary"),
}).strict();

const ShardSchema = z.object({
  name,
  weight: z.number().int().min(1).max(1000).default(1),
  /** Nodes the router can reach, left out of the shard map it seeds (version 1): it owns no keys. */
  spare: z.boolean().default(false),
  nodes: z.array(NodeSchema).min(1),
}).strict();

export const ConfigSchema = z.object({
  listen: z.object({
    host: z.string().default("127.0.0.1"),
    port: port.default(8080),
    /**
     * Serve TLS only (gRPC over HTTP/2 and Connect over HTTP/1.1 on the one port, by ALPN). With
     * clientCaFile, clients may present certificates signed by it (mTLS identities, see auth).
     */
    tls: z.object({ certFile: z.string().min(1), keyFile: z.string().min(1), clientCaFile: z.string().min(1).optional() }).strict().optional(),
  }).strict().prefault({}),
  /** Who may call and as which Postgres login (server/auth). Without it the router starts only with --insecure. */
  auth: AuthConfigSchema.optional(),
  placement: PlacementConfigSchema.prefault({ strategy: "hash_ring" }),
  shards: z.array(ShardSchema).min(1),
  catalog: ConnectionSchema.optional(),
  /**
   * The login for the nodes of shards registered with AdminService.AddShard (their addresses live
   * in the catalog, never a password). Default: the login of the first configured shard's primary.
   * `ssl` (no serverName: each node is checked against its own host) defaults to that primary's
   * too, with or without a shardLogin, so shards added later never get less TLS than the first.
   */
  shardLogin: z.object({
    user: z.string().min(1), password: z.string().optional(), passwordEnv: z.string().optional(), ssl: SharedPostgresTlsSchema.optional(),
  }).strict().optional(),
  pool: z.object({
    max: z.number().int().min(1).max(1000).default(10),
    maxWaiting: z.number().int().min(0).default(1000),
    connectTimeoutMs: z.number().int().min(1).default(5000),
    idleTimeoutMs: z.number().int().min(0).default(60_000),
    statementTimeoutMs: z.number().int().min(0).default(30_000),
    maxPreparedStatements: z.number().int().min(0).default(1000),
    /** Statements (or transactions) at once per node on connections of their own (see the statement guard). */
    maxIsolated: z.number().int().min(1).max(1000).default(2),
  }).strict().prefault({}),
  health: z.object({
    /** How often every node is asked whether it is up, in recovery, and how far behind. */
    intervalMs: z.number().int().min(10).default(1000),
    /** A check slower than this counts as a failure (a hung node). */
    timeoutMs: z.number().int().min(10).default(1000),
  }).strict().prefault({}),
  breaker: z.object({
    /** Consecutive connection failures (or failed health checks) that open a node's breaker. */
    failureThreshold: z.number().int().min(1).default(5),
    /** How long an open breaker fails calls at once before letting one through to probe. */
    halfOpenAfterMs: z.number().int().min(10).default(5000),
  }).strict().prefault({}),
  transactions: z.object({
    /** Names this router instance in its transaction ids; default: random per process. */
    routerId: z.string().regex(/^[a-z0-9]{1,16}$/, "use 1-16 lowercase letters and digits").optional(),
    /** Prefix of every global transaction id (PREPARE TRANSACTION gid) this router family uses. */
    gidPrefix: z.string().regex(/^[a-z][a-z0-9]{0,15}$/, "use 1-16 lowercase letters and digits, starting with a letter").default("sr"),
    /** A lock wait longer than this fails the transaction (ABORTED) instead of a cross-shard deadlock. */
    lockTimeoutMs: z.number().int().min(1).default(2000),
    /** How often in-doubt prepared transactions are looked for and resolved. */
    recoveryIntervalMs: z.number().int().min(10).default(5000),
    /** A prepared transaction without a decision younger than this may still be in flight: leave it. */
    inDoubtGraceMs: z.number().int().min(0).default(10_000),
    /** Idempotency records are kept this long after their transaction began; a retry later than that runs again. */
    requestRetentionMs: z.number().int().min(60_000).default(7 * 24 * 3600_000),
    /** How often each router deletes expired idempotency records (small batches, never waiting on a lock). */
    requestPruneIntervalMs: z.number().int().min(1000).default(600_000),
    /** Crash points for fault-injection tests, e.g. ["after_prepare@3"]; also SHARDROUTER_FAILPOINTS. */
    failpoints: z.array(z.string()).default([]),
    /** Interactive transactions (BeginTransaction … CommitTransaction): each holds one connection of a shard's primary. */
    interactive: z.object({
      /** Open at once on this router; beyond it BeginTransaction is refused (resource_exhausted). 0 turns them off. */
      max: z.number().int().min(0).default(100),
      /**
       * Open at once on one node, below pool.max so pooled statements always keep a connection.
       * Default: half of pool.max, rounded down.
       */
      maxPerNode: z.number().int().min(0).optional(),
      /** Rolled back when no call arrives for this long after the last one ended (a request may ask for another). */
      idleTimeoutMs: z.number().int().min(1).default(10_000),
      /** The longest idle timeout a BeginTransaction may ask for. */
      maxIdleTimeoutMs: z.number().int().min(1).default(60_000),
      /** Rolled back this long after BEGIN, however busy. */
      maxLifetimeMs: z.number().int().min(1).default(300_000),
    }).strict().prefault({}),
  }).strict().prefault({}),
  /**
   * Which tables are sharded (table -> shard key column) and which are reference tables (a full copy
   * on every shard), as PostgreSQL names them (unquoted names fold to lower case; "schema.table" to
   * name one schema's table). The router reads statements against it (Explain); a table it does not
   * name is unknown: a statement touching one goes to every shard. Empty: every statement does.
   */
  tables: z.object({
    sharded: z.record(z.string().min(1), z.string().min(1)).default({}),
    reference: z.array(z.string().min(1)).default([]),
  }).strict().prefault({}),
  transfer: z.object({
    table: z.string().min(1).default("accounts"),
    keyColumn: z.string().min(1).default("id"),
    balanceColumn: z.string().min(1).default("balance"),
  }).strict().prefault({}),
  resharding: z.object({
    /** The sharded tables a reshard moves, each with its shard key column; each needs a primary key holding it. */
    tables: z.array(z.object({ name: z.string().min(1), keyColumn: z.string().min(1) }).strict()).min(1).default([{ name: "accounts", keyColumn: "id" }]),
    /**
     * The login the resharder uses on every shard's primary (default: the node's own). It needs
     * REPLICATION and ownership of the tables (publications, triggers); the router's role has neither.
     */
    user: z.string().min(1).optional(),
    password: z.string().optional(),
    passwordEnv: z.string().optional(),
    /** How long a router's claim on a job lasts without renewal: another router takes the job over after it. */
    leaseMs: z.number().int().min(100).default(10_000),
    /** A cutover gives up (and the sources serve on) after this long. */
    cutoverTimeoutMs: z.number().int().min(100).default(5000),
  }).strict().prefault({}),
  shardMap: z.object({
    /** How often a router asks the catalog for a newer shard map (it also hears of one at once). */
    pollMs: z.number().int().min(10).default(1000),
  }).strict().prefault({}),
  /** Global ids (NextIds, server/ids): Snowflake-style int8 ids for primary keys of sharded tables. */
  ids: z.object({
    /**
     * The worker id of a router without a catalog (0-1023; unique among the routers issuing ids).
     * Without a catalog and without it, NextIds is unavailable. With a catalog it must be left out:
     * each router leases a worker id there.
     */
    workerId: z.number().int().min(0).max(1023).optional(),
    /** How long a worker id lease lasts without renewal (renewed every third of it). */
    leaseMs: z.number().int().min(300).default(10_000),
    /** An expired lease is taken over by another router only this long after it ended. */
    takeoverMarginMs: z.number().int().min(0).default(5000),
    /** Worker ids the routers on one catalog share, 0 to maxWorkers-1. */
    maxWorkers: z.number().int().min(1).max(1024).default(1024),
    /** A clock that steps back by up to this is waited out; further back, NextIds is refused until it catches up. */
    maxClockBackwardsMs: z.number().int().min(0).max(10_000).default(10),
  }).strict().prefault({}),
  limits: z.object({
    maxRows: z.number().int().min(1).default(100_000),
    maxBytes: z.number().int().min(1).default(64 * 1024 * 1024),
  }).strict().prefault({}),
}).strict();

export type Config = z.infer<typeof ConfigSchema>;
export type ConnectionConfig = z.infer<typeof ConnectionSchema>;
export type ShardConfig = z.infer<typeof ShardSchema>;

export interface ShardLogin { user: string; password?: string; passwordEnv?: string; ssl?: PostgresTls }

/** The login for registered shards' nodes: shardLogin, or the first configured primary's; its TLS, or that primary's. */
export function shardLoginOf(config: Pick<Config, "shards" | "shardLogin">): ShardLogin {
  const primary = config.shards[0].nodes.find((n) => n.role === "primary") ?? config.shards[0].nodes[0];
  const ssl = config.shardLogin?.ssl ?? primary.ssl?.withoutServerName();
  const login = config.shardLogin ?? { user: primary.user, password: primary.password, passwordEnv: primary.passwordEnv };
  return { user: login.user, password: login.password, passwordEnv: login.passwordEnv, ...(ssl ? { ssl } : {}) };
}

export class ConfigError extends Error {}

/** Validates a parsed config; every problem is reported as `field.path: reason`. */
export function parseConfig(raw: unknown, source = "config"): Config {
  const parsed = ConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${formatPath(i.path)}: ${i.message}`);
    throw new ConfigError(`${source} is invalid:\n${lines.join("\n")}`);
  }
  const config = parsed.data;
  const problems: string[] = [];
  const seen = new Set<string>();
  config.shards.forEach((shard, s) => {
    if (seen.has(shard.name)) problems.push(`shards[${s}].name: duplicate shard name "${shard.name}"`);
    seen.add(shard.name);
    const primaries = shard.nodes.filter((n) => n.role === "primary").length;
    if (primaries !== 1) problems.push(`shards[${s}].nodes: needs exactly one node with role "primary", found ${primaries}`);
    shard.nodes.forEach((node, n) => {
      if (node.passwordEnv && process.env[node.passwordEnv] === undefined) {
        problems.push(`shards[${s}].nodes[${n}].passwordEnv: environment variable ${node.passwordEnv} is not set`);
      }
    });
  });
  if (config.shards.every((s) => s.spare)) problems.push("shards: every shard is spare; at least one must own keys");
  if (config.shardLogin?.passwordEnv && process.env[config.shardLogin.passwordEnv] === undefined) {
    problems.push(`shardLogin.passwordEnv: environment variable ${config.shardLogin.passwordEnv} is not set`);
  }
  const interactive = config.transactions.interactive;
  if (interactive.maxPerNode !== undefined && interactive.max > 0 && interactive.maxPerNode >= config.pool.max) {
    problems.push(`transactions.interactive.maxPerNode: ${interactive.maxPerNode} must be below pool.max (${config.pool.max}), so pooled statements always keep a connection`);
  }
  if (interactive.idleTimeoutMs > interactive.maxIdleTimeoutMs) {
    problems.push(`transactions.interactive.idleTimeoutMs: ${interactive.idleTimeoutMs} is above transactions.interactive.maxIdleTimeoutMs (${interactive.maxIdleTimeoutMs})`);
  }
  if (config.catalog && config.ids.workerId !== undefined) {
    problems.push("ids.workerId: leave it out when there is a catalog: each router leases a worker id there (a fixed one could collide with a leased one)");
  }
  for (const table of config.tables.reference) {
    if (Object.hasOwn(config.tables.sharded, table)) problems.push(`tables.reference: "${table}" is also in tables.sharded; a table is one or the other`);
  }
  if (problems.length) throw new ConfigError(`${source} is invalid:\n${problems.map((p) => `  ${p}`).join("\n")}`);
  return config;
}

export function loadConfigFile(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    // Not the parser's message: it quotes the text around the error, which may be a password.
    throw new ConfigError(`config file ${path} is not valid JSON${jsonErrorLine(text, err)}`);
  }
  return parseConfig(raw, path);
}

/** The password of a node or catalog: inline, or from the named environment variable. */
export function passwordOf(c: { password?: string; passwordEnv?: string }): string | undefined {
  return c.passwordEnv ? process.env[c.passwordEnv] : c.password;
}

function formatPath(path: PropertyKey[]): string {
  return path.reduce<string>((acc, p) => (typeof p === "number" ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)), "") || "(top level)";
}

/** " (line N)" where the parser stopped, when it says (a position), else "". */
function jsonErrorLine(text: string, err: unknown): string {
  const at = /position (\d+)/.exec((err as Error).message ?? "");
  if (!at) return "";
  return ` (line ${text.slice(0, Number(at[1])).split("\n").length})`;
}
