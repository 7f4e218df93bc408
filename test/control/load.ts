// Steady load for update-under-load tests: requests in a loop on 4 keep-alive connections until stopped, tallying
// statuses (or client errors) and the values of one response header.
import { Agent } from "node:http";
import { send } from "../harness/client.js";

export interface SteadyLoad {
  statuses: Map<number | string, number>;
  /** Responses by the value of the watched header ("(none)" when absent). */
  values: Map<string, number>;
  total(): number;
  stop(): Promise<void>;
}

export function steadyLoad(port: number, header: string, headers: Record<string, string> = {}): SteadyLoad {
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });
  const statuses = new Map<number | string, number>();
  const values = new Map<string, number>();
  let running = true;
  const count = <K>(map: Map<K, number>, key: K) => map.set(key, (map.get(key) ?? 0) + 1);
  const worker = async () => {
    while (running) {
      try {
        const response = await send(port, { path: "/load", headers, agent });
        count(statuses, response.status);
        count(values, response.headers[header] ?? "(none)");
      } catch (error) {
        count(statuses, `error: ${(error as Error).message}`);
      }
    }
  };
  const workers = Array.from({ length: 4 }, worker);
  return {
    statuses,
    values,
    total: () => [...statuses.values()].reduce((sum, n) => sum + n, 0),
    stop: async () => {
      running = false;
      await Promise.all(workers);
      agent.destroy();
    },
  };
}
