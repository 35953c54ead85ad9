// The catalog's commit decisions, kept for transactions prepared by routers before home decisions
// (their ids name no home shard; today's are decided on their home shard, see coordinator.ts). Such
// a router wrote "commit" after every participant had prepared; recovery writes "abort" for an old
// in-doubt transaction with no decision (presumed abort). Both are insert-if-absent on the same row,
// so whichever comes first decides, and both then obey it.
import type { Catalog } from "../catalog/catalog.js";

export type Decision = "commit" | "abort";

export class DecisionLog {
  constructor(private readonly catalog: Catalog) {}

  /** Records `decision` unless one exists; returns the decision that stands. */
  async decide(gid: string, decision: Decision, participants: string[], router: string): Promise<Decision> {
    const rows = await this.catalog.sql`
      with inserted as (
        insert into shardrouter.decisions (gid, decision, participants, router)
        values (${gid}, ${decision}, ${participants}, ${router})
        on conflict (gid) do nothing
        returning decision)
      select decision from inserted
      union all
      select decision from shardrouter.decisions where gid = ${gid}
      limit 1`;
    return (rows[0]?.decision ?? (await this.get(gid)) ?? decision) as Decision;
  }

  async get(gid: string): Promise<Decision | undefined> {
    const rows = await this.catalog.sql`select decision from shardrouter.decisions where gid = ${gid}`;
    return rows[0]?.decision as Decision | undefined;
  }

  /** Every participant has resolved it: recovery no longer needs the row (kept a while for operators). */
  async complete(gid: string): Promise<void> {
    await this.catalog.sql`update shardrouter.decisions set completed_at = now() where gid = ${gid} and completed_at is null`;
  }

  /** Decisions not known to be finished, older than `olderThanMs`: recovery checks their participants. */
  async unfinished(olderThanMs: number): Promise<{ gid: string; participants: string[] }[]> {
    const rows = await this.catalog.sql`
      select gid, participants from shardrouter.decisions
      where completed_at is null and decided_at < now() - make_interval(secs => ${olderThanMs / 1000})
      limit 1000`;
    return rows.map((r) => ({ gid: r.gid as string, participants: r.participants as string[] }));
  }

  async forgetCompleted(olderThanHours: number): Promise<void> {
    await this.catalog.sql`delete from shardrouter.decisions where completed_at < now() - make_interval(hours => ${olderThanHours})`;
  }
}
