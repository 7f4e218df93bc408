// Prometheus on 127.0.0.1, scraping what it is given (the control plane's /metrics, Envoys' /stats/prometheus) every
// second, with an instant-query helper. The binary is the `prometheus` component (control/components).
import { stringify } from "yaml";
import { componentPath } from "../components/build.js";
import { Backend, freeLocalPort } from "./process.js";

export interface ScrapeTarget {
  job: string;
  /** host:port */
  address: string;
  path: string;
}

export interface PromSample {
  metric: Record<string, string>;
  value: number;
}

export class Prometheus {
  private constructor(
    readonly backend: Backend,
    readonly url: string,
  ) {}

  static async start(targets: ScrapeTarget[], options: { port?: number; scrapeInterval?: string; env?: Record<string, string> } = {}): Promise<Prometheus> {
    const port = options.port ?? (await freeLocalPort());
    const interval = options.scrapeInterval ?? "1s";
    const config = {
      global: { scrape_interval: interval, evaluation_interval: interval },
      scrape_configs: targets.map((target) => ({
        job_name: target.job,
        metrics_path: target.path,
        static_configs: [{ targets: [target.address] }],
      })),
    };
    const url = `http://127.0.0.1:${port}`;
    const backend = await Backend.start({
      name: "prometheus",
      binary: componentPath("prometheus"),
      files: () => ({ "prometheus.yml": stringify(config) }),
      args: (dir) => [
        `--config.file=${dir}/prometheus.yml`,
        `--storage.tsdb.path=${dir}/data`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--log.level=warn",
      ],
      readyUrl: `${url}/-/ready`,
      env: options.env,
    });
    return new Prometheus(backend, url);
  }

  /** An instant PromQL query; throws with Prometheus's error for a bad query. */
  async query(promql: string): Promise<PromSample[]> {
    const response = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await response.json()) as { status: string; error?: string; data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
    if (body.status !== "success") throw new Error(`PromQL ${promql}: ${body.error ?? response.status}`);
    if (body.data!.resultType !== "vector") throw new Error(`PromQL ${promql}: expected a vector, got ${body.data!.resultType}`);
    return body.data!.result.map((sample) => ({ metric: sample.metric, value: Number(sample.value[1]) }));
  }

  /** Whether every target was scraped successfully at least once. */
  async targetsUp(): Promise<boolean> {
    const up = await this.query("up");
    return up.length > 0 && up.every((sample) => sample.value === 1);
  }

  stop(): Promise<void> {
    return this.backend.stop();
  }
}
