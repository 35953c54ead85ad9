// The standard gRPC health service (grpc.health.v1.Health) for load balancers and orchestrators.
// The overall status ("") and each served service share one answer: the HealthMonitor's.
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { Health, type HealthCheckResponse, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import type { HealthMonitor, Serving } from "./health-monitor.js";

const asStatus = (s: Serving): Status => (s === "serving" ? Status.SERVING : Status.NOT_SERVING);
const response = (status: Status): HealthCheckResponse => ({ $typeName: "grpc.health.v1.HealthCheckResponse", status });

/** `serviceNames`: the services whose health can be asked by name, besides "" (the whole router). */
export function healthService(monitor: HealthMonitor, serviceNames: string[]): ServiceImpl<typeof Health> {
  const known = new Set(["", ...serviceNames]);
  return {
    async check(req) {
      if (!known.has(req.service)) throw new ConnectError(`unknown service ${JSON.stringify(req.service)}`, Code.NotFound);
      return response(asStatus(await monitor.status()));
    },

    async *watch(req, ctx) {
      // Per the protocol, an unknown service is reported (SERVICE_UNKNOWN), not an error, and the
      // stream stays open; services never appear later here, so it stays open until the caller leaves.
      if (!known.has(req.service)) {
        yield response(Status.SERVICE_UNKNOWN);
        for await (const _ of monitor.watch(ctx.signal)) { /* wait for the caller or shutdown */ }
        return;
      }
      for await (const serving of monitor.watch(ctx.signal)) yield response(asStatus(serving));
    },

    async list() {
      const status = asStatus(await monitor.status());
      return { statuses: Object.fromEntries([...known].map((name) => [name, response(status)])) };
    },
  };
}
