// One PostgreSQL node (a shard's primary or a replica): a long-lived postgres.js pool behind our own
// admission control, plus the little the router remembers about the node (last outcome, type names).
import postgres from "postgres";
import { Admission } from "./admission.js";
import { decodedOids } from "../execution/pg-types.js";

export interface NodeConfig {
  name: string;
  host: string;
  port: number;
  database: string;
  user: string;
  password?: string;
  role: "primary" | "replica";
}

export interface PoolOptions {
  max: number;
  maxWaiting: number;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  statementTimeoutMs: number;
  /** Distinct statement texts kept as named prepared statements per node; others run unnamed. */
  maxPreparedStatements: number;
}

export type NodeStatus = "up" | "down" | "unknown";

export interface RawParam { text: string | null; oid: number }
export interface RawColumn { name: string; type: number }
export interface RawResult { command: string; count: number; columns: RawColumn[] }

/** Everything a running statement can be told to do. */
export interface RunningStatement { done: Promise<RawResult>; cancel(): void }

// postgres.js parses some types itself (int4 → number, timestamptz → Date, ...), losing precision.
// Hand every type the router decodes over as its untouched text, and send parameters as given.
const passThrough = { to: 25, from: decodedOids, serialize: (x: unknown) => x, parse: (x: string) => x };

export class NodePool {
  readonly name: string;
  readonly address: string;
  readonly role: NodeConfig["role"];
  readonly admission: Admission;
  status: NodeStatus = "unknown";
  private readonly sql: postgres.Sql;
  private readonly prepared = new Set<string>();
  private readonly typeNames = new Map<number, string>();

  constructor(config: NodeConfig, private readonly options: PoolOptions) {
    this.name = config.name;
    this.address = `${config.host}:${config.port}`;
    this.role = config.role;
    this.admission = new Admission(options.max, options.maxWaiting, `node ${config.name} (${this.address})`);
    this.sql = postgres({
      host: config.host,
      port: config.port,
      database: config.database,
      user: config.user,
      password: config.password,
      max: options.max,
      idle_timeout: options.idleTimeoutMs / 1000,
      connect_timeout: options.connectTimeoutMs / 1000,
      fetch_types: true,
      types: { passThrough } as never,
      onnotice: () => {},
      connection: {
        application_name: "shardrouter",
        TimeZone: "UTC",
        DateStyle: "ISO, MDY",
        bytea_output: "hex",
        statement_timeout: String(options.statementTimeoutMs),
      } as never,
    });
  }

  /**
   * Starts one statement (the caller holds an admission slot). Rows are handed to onRow as they
   * arrive, as arrays of text cells (arrays already split), so nothing is buffered here.
   */
  start(text: string, params: RawParam[], onRow: (cells: unknown[], columns: RawColumn[]) => void): RunningStatement {
    const prepare = this.prepared.has(text) || (this.prepared.size < this.options.maxPreparedStatements && !!this.prepared.add(text));
    const args = params.map((p) => this.sql.typed(p.text as never, p.oid));
    const query = this.sql.unsafe(text, args as never[], { prepare }).values();
    const done = query.forEach((row, result) => onRow(row as unknown[], (result as never as { statement: { columns: RawColumn[] } }).statement.columns))
      .then((result) => {
        const r = result as unknown as { command: string; count: number | null; statement?: { columns: RawColumn[] } };
        return { command: r.command ?? "", count: r.count ?? 0, columns: r.statement?.columns ?? [] };
      });
    return { done, cancel: () => void query.cancel() };
  }

  /** Names for type OIDs the router does not know by heart (enums, domains, extensions), cached. */
  async typeNamesFor(oids: number[]): Promise<Map<number, string>> {
    const missing = oids.filter((o) => !this.typeNames.has(o));
    if (missing.length) {
      const rows = await this.sql.unsafe("select oid::int8 as oid, format_type(oid, null) as name from pg_type where oid = any($1::oid[])", [`{${missing.join(",")}}`]);
      for (const r of rows) this.typeNames.set(Number(r.oid), String(r.name));
      for (const o of missing) if (!this.typeNames.has(o)) this.typeNames.set(o, `oid:${o}`);
    }
    return this.typeNames;
  }

  async close(): Promise<void> {
    await this.sql.end({ timeout: 5 });
  }
}
