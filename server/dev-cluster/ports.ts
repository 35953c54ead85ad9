// Free TCP port selection for local Postgres nodes.
//
// Why this range: ports at or above 32768 are Linux's ephemeral range, where outgoing connections
// (and their TIME-WAIT sockets) take ports at random; a server port there can be stolen between
// "checked free" and "postgres binds". 15000–32000 is clear of that and of well-known services.
import net from "node:net";

export const PORT_RANGE = { low: 15000, high: 32000 } as const;

// Ports handed out (or claimed by a remembered cluster) in this process. Several clusters start in
// one test process; a port checked free but not yet bound by postgres must not be handed out twice.
const handedOut = new Set<number>();

/** True when 127.0.0.1:port can be bound now (a wildcard listener on the port also makes it false). */
export function isPortFree(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once("error", () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** Marks a port as taken in this process (e.g. a port remembered in cluster.json). */
export function reservePort(port: number): void {
  handedOut.add(port);
}

/**
 * Returns `count` distinct ports in PORT_RANGE that are free now and were never handed out by this
 * process. The scan starts at a random point so concurrent processes rarely race for the same port.
 */
export async function pickFreePorts(count: number): Promise<number[]> {
  const { low, high } = PORT_RANGE;
  const span = high - low + 1;
  const start = Math.floor(Math.random() * span);
  const picked: number[] = [];
  for (let i = 0; i < span && picked.length < count; i++) {
    const port = low + ((start + i) % span);
    if (handedOut.has(port)) continue;
    if (!(await isPortFree(port))) continue;
    handedOut.add(port);
    picked.push(port);
  }
  if (picked.length < count) {
    throw new Error(`no ${count} free TCP ports left in ${low}-${high} on 127.0.0.1`);
  }
  return picked;
}
