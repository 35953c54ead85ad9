// The router's supervisor: it starts the router as a process, and whenever that process dies starts
// the next incarnation on the same port (so clients only see refused connections meanwhile), as a
// process manager does in production. Each incarnation carries the next failpoint of the plan; one
// killed from outside before its failpoint fired hands that failpoint on. Every death is classified:
// at its failpoint, killed by the torture, or unexpected (a real crash: the run fails).
import type { Client } from "@connectrpc/connect";
import type { RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import type { LocalCluster } from "../../server/dev-cluster/local-cluster.js";
import { pickFreePorts } from "../../server/dev-cluster/ports.js";
import { type RouterProcess, startRouterProcess } from "../harness/router-process.js";
import { within } from "./bounded.js";

export interface Death { incarnation: number; failpoint: string; how: string; cause: "failpoint" | "killed" | "unexpected"; detail?: string }

/** Every live supervisor, so a Ctrl-C of the torture command does not leave router processes behind. */
export const liveSupervisors = new Set<RouterSupervisor>();

/** A failed start is retried this often before the supervisor gives up (and the run fails). */
const START_ATTEMPTS = 3;

export class RouterSupervisor {
  readonly deaths: Death[] = [];
  incarnations = 0;
  /** Set when no incarnation could be started any more. */
  broken?: Error;
  private current!: RouterProcess;
  private live = false;
  private nextFailpoint = 0;
  private killing = false;
  private closed = false;
  private signalClosed!: () => void;
  private readonly closedSignal = new Promise<void>((r) => (this.signalClosed = r));
  private servingWaiters: (() => void)[] = [];
  private watching!: Promise<void>;

  private constructor(
    private readonly cluster: LocalCluster,
    private readonly port: number,
    private readonly failpoints: string[],
    private readonly transactions: object,
  ) {}

  static async start(cluster: LocalCluster, opts: { failpoints: string[]; transactions: object }): Promise<RouterSupervisor> {
    const [port] = await pickFreePorts(1);
    const s = new RouterSupervisor(cluster, port, opts.failpoints, opts.transactions);
    liveSupervisors.add(s);
    s.current = await s.spawn();
    s.live = true;
    s.watching = s.watch();
    return s;
  }

  /** The client of the current incarnation (read at every attempt by the retrying clients). */
  get client(): Client<typeof RouterService> {
    return this.current.client;
  }

  get url(): string {
    return this.current.url;
  }

  /** What the current incarnation has written (its JSON log lines). */
  output(): string {
    return this.current.output();
  }

  /** The failpoint the current incarnation carries ("" for none). */
  get armedFailpoint(): string {
    return this.failpoints[this.nextFailpoint] ?? "";
  }

  /** The failpoints that never fired. */
  get unfiredFailpoints(): string[] {
    return this.failpoints.slice(this.nextFailpoint);
  }

  /** Resolves once an incarnation is serving (at once if one is), waiting through a restart for at most `ms`. */
  async serving(ms: number): Promise<RouterProcess> {
    const deadline = Date.now() + ms;
    while (!this.live || this.current.process.exitCode !== null || this.current.process.signalCode !== null) {
      if (this.broken) throw this.broken;
      if (this.closed) throw new Error("the supervisor is closed");
      await within(`a router incarnation to serve (${ms} ms in all)`, Math.max(1, deadline - Date.now()), new Promise<void>((r) => this.servingWaiters.push(r)));
    }
    return this.current;
  }

  /** SIGKILLs the serving incarnation from outside (a random moment of its work); the watch restarts it. */
  async kill(): Promise<string> {
    const victim = await this.serving(120_000);
    this.killing = true;
    return within(`router incarnation ${this.incarnations} to die of SIGKILL`, 10_000, victim.kill("SIGKILL"));
  }

  /** Stops restarting and SIGKILLs the current incarnation. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.signalClosed();
    for (const w of this.servingWaiters.splice(0)) w();
    await within("the supervisor's watch to end", 90_000, this.watching).catch(() => {});
    await within("the last router incarnation to exit", 10_000, this.current.kill("SIGKILL")).catch(() => {});
    liveSupervisors.delete(this);
  }

  /** For a signal handler: SIGKILL the current incarnation now, synchronously. */
  killNow(): void {
    try { this.current.process.kill("SIGKILL"); } catch { /* gone */ }
  }

  private spawn(): Promise<RouterProcess> {
    this.incarnations++;
    return startRouterProcess(this.cluster, { port: this.port, failpoints: this.armedFailpoint, transactions: this.transactions });
  }

  private async watch(): Promise<void> {
    while (!this.closed) {
      const how = await Promise.race([this.current.exited, this.closedSignal.then(() => undefined)]);
      if (how === undefined) return;
      this.live = false;
      this.classify(how);
      for (let attempt = 1; ; attempt++) {
        if (this.closed) return;
        try {
          this.current = await this.spawn();
          break;
        } catch (err) {
          const message = (err as Error).message;
          this.deaths.push({ incarnation: this.incarnations, failpoint: this.armedFailpoint, how: "failed to start", cause: "unexpected", detail: message.slice(-2000) });
          if (attempt >= START_ATTEMPTS) {
            this.broken = new Error(`no router incarnation could be started (${attempt} attempts); last: ${message.slice(-500)}`);
            for (const w of this.servingWaiters.splice(0)) w();
            return;
          }
        }
      }
      if (this.closed) return; // close() kills it
      this.live = true;
      for (const w of this.servingWaiters.splice(0)) w();
    }
  }

  private classify(how: string): void {
    const failpoint = this.armedFailpoint;
    const output = this.current.output();
    const firedFailpoint = how === "SIGKILL" && failpoint !== "" && output.includes(`failpoint ${failpoint}: crashing`);
    const death: Death = { incarnation: this.incarnations, failpoint, how, cause: "unexpected" };
    if (firedFailpoint) {
      death.cause = "failpoint";
      this.nextFailpoint++;
    } else if (this.killing && how === "SIGKILL") {
      death.cause = "killed"; // its failpoint, if any, goes to the next incarnation
    } else {
      death.detail = output.slice(-3000);
    }
    this.killing = false;
    this.deaths.push(death);
  }
}
