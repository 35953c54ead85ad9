// What the coordinator, recovery and the request log's pruning report, turned into metrics and log
// lines. They only call an observer; counting and wording live here. Transaction ids (gids) are safe to
// log: a prefix, the router id and a number.
import type { TransactionObserver } from "../transactions/coordinator.js";
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
