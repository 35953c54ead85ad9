// A logical replication stream from one source node: a permanent slot (it survives the router, so a
// job resumes where its target says it stopped), changes decoded from pgoutput, and acknowledgements
// sent only for what the caller says is applied and durable. Built on a postgres.js connection in
// replication mode (simple protocol, copy-both stream), not on its `subscribe` (temporary slot, no
// positions, acknowledges before the change is applied).
import type { Duplex } from "node:stream";
import type postgres from "postgres";
import { nodeClient } from "./node-client.js";
import type { NodeConfig } from "../shards/node-pool.js";
import { type Lsn, formatLsn, parseLsn } from "./lsn.js";
import { type Change, PgoutputDecoder } from "./pgoutput.js";

export interface CreatedSlot { slot: string; consistentPoint: Lsn; snapshot: string }

/** Slot and publication names are built by the router from safe characters only (no quoting games). */
export function assertSafeName(name: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`not a safe replication object name: ${JSON.stringify(name)}`);
  return name;
}

/** A connection in replication mode: it creates slots and streams from them. */
export class ReplicationConnection {
  readonly sql: postgres.Sql;

  constructor(node: NodeConfig, connectTimeoutMs: number) {
    this.sql = nodeClient(node, { connectTimeoutMs, connection: { replication: "database" } });
  }

  /**
   * A permanent pgoutput slot, and a snapshot of the moment it starts at. The snapshot can be
   * imported (SET TRANSACTION SNAPSHOT) only while this connection runs no other command: copy first.
   * Creating a slot waits for every transaction in progress, prepared ones included.
   */
  async createSlot(slot: string): Promise<CreatedSlot> {
    const [row] = await this.sql.unsafe(`CREATE_REPLICATION_SLOT ${assertSafeName(slot)} LOGICAL pgoutput (SNAPSHOT 'export')`);
    return { slot, consistentPoint: parseLsn(String(row.consistent_point)), snapshot: String(row.snapshot_name) };
  }

  /**
   * Streams the slot's changes from `from` (the server starts at the later of `from` and what the
   * slot last confirmed). `onChange` is awaited for each change, in order, with the position of the
   * message: the stream reads no further until it returns.
   */
  async start(
    slot: string, publication: string, from: Lsn,
    onChange: (change: Change, at: Lsn) => Promise<void> | void,
    idle: () => boolean = () => false,
  ): Promise<ChangeStream> {
    const options = `proto_version '1', publication_names '${assertSafeName(publication)}', messages 'true'`;
    const stream = await this.sql.unsafe(`START_REPLICATION SLOT ${assertSafeName(slot)} LOGICAL ${formatLsn(from)} (${options})`).writable() as unknown as Duplex;
    return new ChangeStream(stream, from, onChange, idle);
  }

  async close(): Promise<void> {
    await this.sql.end({ timeout: 1 });
  }
}

/** The copy-both stream of START_REPLICATION: decodes, hands over in order, and acknowledges. */
export class ChangeStream {
  /** Settles when the stream ends: rejects with what broke it (the connection, or onChange). */
  readonly ended: Promise<void>;
  private readonly decoder = new PgoutputDecoder();
  private received: Lsn = 0n;
  private flushed: Lsn = 0n;
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(
    private readonly stream: Duplex, from: Lsn,
    onChange: (change: Change, at: Lsn) => Promise<void> | void,
    idle: () => boolean,
  ) {
    this.received = from;
    this.flushed = from;
    // wal_sender_timeout is 60 s by default: say where we are well within it, even when idle.
    this.heartbeat = setInterval(() => this.status(false), 10_000);
    this.heartbeat.unref();
    // Each CopyData message is one chunk, and an XLogData message has no length of its own: read in
    // flowing mode ('data' events keep the chunks apart; an async iterator would join buffered ones),
    // and pause the socket while a change is being applied.
    this.ended = new Promise<void>((resolve, reject) => {
      const queue: Buffer[] = [];
      let busy = false;
      let finished = false;
      const fail = (err: unknown) => { finished = true; stream.destroy(); reject(err); };
      const pump = async () => {
        if (busy) return;
        busy = true;
        try {
          for (let chunk = queue.shift(); chunk && !finished; chunk = queue.shift()) await this.handle(chunk, onChange, idle);
        } catch (err) {
          return fail(err);
        } finally {
          busy = false;
        }
        if (!finished) stream.resume();
      };
      stream.on("data", (chunk: Buffer) => {
        queue.push(chunk);
        stream.pause();
        void pump();
      });
      stream.once("error", (err) => { if (!finished) fail(err); });
      stream.once("close", () => { finished = true; resolve(); });
    }).finally(() => clearInterval(this.heartbeat));
    this.ended.catch(() => {});
  }

  private async handle(chunk: Buffer, onChange: (change: Change, at: Lsn) => Promise<void> | void, idle: () => boolean): Promise<void> {
    if (chunk[0] === 0x77) { // w: XLogData
      const at = chunk.readBigUInt64BE(1);
      if (at > this.received) this.received = at;
      await onChange(this.decoder.decode(chunk.subarray(25)), at);
    } else if (chunk[0] === 0x6b) { // k: keepalive
      const end = chunk.readBigUInt64BE(1);
      if (end > this.received) this.received = end;
      // Between transactions everything sent is applied: the slot may move on (else it holds WAL
      // for as long as no moving table changes).
      if (idle() && end > this.flushed) this.acknowledge(end);
      else if (chunk[17]) this.status(false);
    }
  }

  /** Everything up to `lsn` is applied and durable where it went: the source may recycle that WAL. */
  acknowledge(lsn: Lsn): void {
    if (lsn <= this.flushed) return;
    this.flushed = lsn;
    this.status(false);
  }

  /** What the source has sent, as far as the stream has read. */
  get position(): Lsn { return this.received; }
  get acknowledged(): Lsn { return this.flushed; }

  /** Ends the stream (the slot stays, at its last acknowledged position). */
  async stop(): Promise<void> {
    clearInterval(this.heartbeat);
    this.stream.end();
    this.stream.destroy();
    await this.ended.catch(() => {});
  }

  private status(replyNow: boolean): void {
    const x = Buffer.alloc(34);
    x[0] = 0x72; // r: standby status update
    x.writeBigUInt64BE(this.flushed, 1); // written: report only what is durable, so nothing is skipped on a restart
    x.writeBigUInt64BE(this.flushed, 9); // flushed
    x.writeBigUInt64BE(this.flushed, 17); // applied
    x.writeBigInt64BE(BigInt(Date.now() - Date.UTC(2000, 0, 1)) * 1000n, 25);
    x[33] = replyNow ? 1 : 0;
    if (!this.stream.destroyed) this.stream.write(x);
  }
}
