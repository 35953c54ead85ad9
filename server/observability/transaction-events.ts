// What the coordinator, recovery and the request log's pruning report, turned into metrics and log
// lines. They only call an observer; counting and wording live here. Transaction ids (gids) are safe to
// log: a prefix, the router id and a number.
import type { TransactionObserver } from "../transactions/coordinator.js";
import type { InteractiveObserver } from "../transactions/interactive.js";
import type { RecoveryObserver } from "../transactions/recovery.js";
import type { PruneObserver } from "../transactions/request-pruning.js";
import type { Logger } from "./logger.js";
import type { RouterMetrics } from "./metrics.js";

export function transactionEvents(metrics: RouterMetrics, logger: Logger): TransactionObserver & RecoveryObserver & PruneObserver {
  return {
    finished({ transactionId, shards, outcome }) {
      metrics.transactions.inc({ outcome });
      if (outcome === "in_doubt") {
        logger.warn({ transactionId, shards, outcome }, "transaction left in doubt: its commit decision was not recorded; recovery will settle it");
      } else if (logger.isLevelEnabled("debug")) {
        logger.debug({ transactionId, shards, outcome }, "transaction finished");
      }
    },
    settled({ shard, gid, decision, ageMs }) {
      metrics.recovered.inc({ shard, decision });
      logger.notice({ transactionId: gid, shard, decision, ageMs }, decision === "commit" ? "recovery committed a prepared transaction" : "recovery rolled back a prepared transaction");
    },
    notSettled({ shard, gid, error }) {
      logger.warn({ transactionId: gid, shard, err: error }, "recovery could not settle a prepared transaction yet");
    },
    round({ committed, rolledBack, inDoubt }) {
      if (committed || rolledBack) logger.notice({ committed, rolledBack, inDoubt }, "recovery round settled prepared transactions");
    },
    requestsPruned({ shard, records }) {
      metrics.requestsPruned.inc({ shard }, records);
      logger.info({ shard, records }, "expired idempotency records deleted");
    },
    requestsNotPruned({ shard, error }) {
      logger.warn({ shard, err: error }, "expired idempotency records could not be deleted this time; the next pass tries again");
    },
    requestLogUnindexed({ shard }) {
      logger.warn({ shard }, "shardrouter.requests has no index on created_at (built in place only below 32 MB): each prune batch scans the table; " +
        "create it once: create index concurrently if not exists requests_created_at on shardrouter.requests (created_at)");
    },
  };
}

/**
 * How interactive transactions end. A commit or a rollback the caller asked for is routine (debug);
 * one the router ended for the caller is worth a line. Never the token (it is the transaction's
 * only credential) nor a statement or its parameters.
 */
export function interactiveEvents(metrics: RouterMetrics, logger: Logger): InteractiveObserver {
  return {
    ended({ shard, node, reason, ageMs, identity }) {
      metrics.interactiveEnded.inc({ reason });
      const fields = { shard, node, reason, ageMs, ...(identity ? { identity } : {}) };
      switch (reason) {
        case "commit": case "rollback":
          if (logger.isLevelEnabled("debug")) logger.debug(fields, "interactive transaction ended");
          return;
        case "idle_timeout":
          return logger.notice(fields, "interactive transaction rolled back: its caller sent nothing within its idle timeout");
        case "lifetime":
          return logger.notice(fields, "interactive transaction rolled back: it reached transactions.interactive.maxLifetimeMs");
        case "shutdown":
          return logger.info(fields, "interactive transaction rolled back: the router is shutting down");
        case "error":
          return logger.info(fields, "interactive transaction ended by a failure (its connection lost, a failed commit, or its key moved)");
      }
    },
  };
}
