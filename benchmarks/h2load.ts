// The router driven by h2load (Debian package nghttp2-client): gRPC frames from a prebuilt body
// file over h2c, so the router's own CPU per request is measured without a Node client in the way.
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import * as http2 from "node:http2";
import { join } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ExecuteOnShardRequestSchema, ExecuteOnShardResponseSchema } from "../gen/shardrouter/v1/router_pb.js";
import type { LoadStats } from "./closed-loop.js";
import { machineBusyUs, waitedChildrenCpuUs } from "./process-cpu.js";

/** A gRPC length-prefixed message: flag 0 (not compressed), 4-byte big-endian length, the bytes. */
export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

const grpcHeaders = { "content-type": "application/grpc", te: "trailers" };

/**
 * Sends `body` once the way h2load will and checks the answer is a gRPC success (h2load only sees
 * HTTP 200, and a gRPC error is a 200 too). Returns the response body (a length-prefixed message).
 */
export async function grpcCall(baseUrl: string, path: string, body: Uint8Array): Promise<Buffer> {
  const session = http2.connect(baseUrl);
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      session.once("error", reject);
      const req = session.request({ ":method": "POST", ":path": path, ...grpcHeaders });
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("trailers", (t) => {
        if (t["grpc-status"] !== "0") reject(new Error(`gRPC status ${t["grpc-status"]}: ${t["grpc-message"]}`));
      });
      req.on("end", () => resolve(Buffer.concat(chunks)));
      req.on("error", reject);
      req.end(body);
    });
  } finally {
    session.close();
  }
}

export interface H2loadRun {
  h2load: string;
  url: string;
  bodyFile: string;
  /** Streams in flight: one connection, this many concurrent streams (as the SDK's gRPC client does). */
  streams: number;
  seconds: number;
  /** Bytes of one successful response body; fewer bytes per request than this means errors. */
  responseBytes: number;
  logFile: string;
  probes: Record<string, () => number>;
}

/** Runs h2load once; CPU per request for `client` (h2load itself) and each probe. */
export async function runH2load(run: H2loadRun): Promise<LoadStats> {
  const args = [
    "-c", "1", "-t", "1", "-m", String(run.streams), "-D", `${Math.round(run.seconds * 1000)}ms`,
    "-d", run.bodyFile, "-H", `content-type: ${grpcHeaders["content-type"]}`, "-H", `te: ${grpcHeaders.te}`,
    `--log-file=${run.logFile}`, run.url,
  ];
  // The shell waits for h2load, then prints its own stat: cutime + cstime is h2load's CPU.
  const script = `"$@"; s=$?; read -r stat < /proc/$$/stat; echo "@@STAT $stat"; exit $s`;
  const sample = (): Record<string, number> => ({ machine: machineBusyUs(), ...Object.fromEntries(Object.entries(run.probes).map(([k, p]) => [k, p()])) });
  const before = sample();
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn("bash", ["-c", script, "bash", run.h2load, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let text = "";
    child.stdout.on("data", (d) => (text += d));
    child.stderr.on("data", (d) => (text += d));
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve(text) : reject(new Error(`h2load exited ${code}:\n${text}`))));
  });
  const after = sample();

  const num = (re: RegExp) => {
    const m = re.exec(out);
    if (!m) throw new Error(`cannot read h2load's output (${re}):\n${out}`);
    return Number(m[1]);
  };
  const finished = /finished in ([\d.]+)(ms|s)/.exec(out);
  if (!finished) throw new Error(`cannot read h2load's output:\n${out}`);
  const seconds = Number(finished[1]) / (finished[2] === "ms" ? 1000 : 1);
  const succeeded = num(/requests: .* (\d+) succeeded/);
  const dataBytes = num(/traffic: .*\((\d+)\) data/);
  const latencies: number[] = [];
  let non200 = 0;
  for (const line of readFileSync(run.logFile, "utf8").split("\n")) {
    const [, status, us] = line.split("\t");
    if (status === undefined) continue;
    if (status === "200") latencies.push(Number(us) / 1000);
    else non200++;
  }
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  // gRPC errors are HTTP 200 with an empty body: a shortfall in response bytes counts them.
  const short = Math.max(0, succeeded - Math.floor(dataBytes / run.responseBytes));
  const ops = succeeded - short;
  const clientCpu = waitedChildrenCpuUs(/@@STAT (.*)/.exec(out)![1]);
  const cpuUsPerOp: Record<string, number> = { client: clientCpu / Math.max(1, ops) };
  for (const k of Object.keys(run.probes)) cpuUsPerOp[k] = (after[k] - before[k]) / Math.max(1, ops);
  return {
    ops, errors: non200 + short + num(/requests: .* (\d+) failed/) + num(/requests: .* (\d+) errored/),
    seconds, opsPerSec: ops / seconds, p50Ms: at(0.5), p99Ms: at(0.99), cpuUsPerOp,
    machineBusyCores: (after.machine - before.machine) / 1e6 / seconds,
    ...(short ? { firstError: `${short} responses without a message (gRPC errors)` } : {}),
  };
}

/** An ExecuteOnShard request for one key (`sql` with the key as $1) as a gRPC body file, checked once to answer one row. */
export async function executeOnShardBody(baseUrl: string, dir: string, key: string, sql: string): Promise<{ path: string; bodyFile: string; responseBytes: number }> {
  const message = toBinary(ExecuteOnShardRequestSchema, create(ExecuteOnShardRequestSchema, {
    key, sql, params: [{ kind: { case: "stringValue", value: key } }],
  }));
  const frame = grpcFrame(message);
  const bodyFile = join(dir, `execute-on-shard-${new URL(baseUrl).port}.grpc`);
  writeFileSync(bodyFile, frame);
  const path = "/shardrouter.v1.RouterService/ExecuteOnShard";
  const response = await grpcCall(baseUrl, path, frame);
  const rows = fromBinary(ExecuteOnShardResponseSchema, response.subarray(5)).result?.rows.length;
  if (rows !== 1) throw new Error(`the h2load request body answers ${rows} rows, not 1`);
  return { path, bodyFile, responseBytes: response.length };
}
