// Prometheus on 127.0.0.1 (and on a mesh bridge address when given one, where the pods reach the host), scraping what
// it is given (the control plane's /metrics, Envoys' /stats/prometheus) every second, with an instant-query helper.
// The binary is the `prometheus` component (control/components).
import { stringify } from "yaml";
import { componentPath } from "../components/build.js";
import { Backend, checkBackendHost, freeLocalPort } from "./process.js";

export interface ScrapeTarget {
  /** Targets of one job share its path: one scrape config per job, a static config per target. */
  job: string;
  /** host:port */
  address: string;
  path: string;
  /** Labels on every series of this target (e.g. `pod`), beside Prometheus's `job` and `instance`. */
  labels?: Record<string, string>;
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

  static async start(
    targets: ScrapeTarget[],
    options: { port?: number; scrapeInterval?: string; env?: Record<string, string>; meshAddress?: string } = {},
  ): Promise<Prometheus> {
    const port = options.port ?? (await freeLocalPort());
    const interval = options.scrapeInterval ?? "1s";
    const jobs = new Map<string, ScrapeTarget[]>();
    for (const target of targets) jobs.set(target.job, [...(jobs.get(target.job) ?? []), target]);
    const config = {
      global: { scrape_interval: interval, evaluation_interval: interval },
      scrape_configs: [...jobs].map(([job, group]) => {
        const paths = new Set(group.map((target) => target.path));
        if (paths.size > 1) throw new Error(`Prometheus job ${job}: its targets have different paths (${[...paths].join(", ")})`);
        return {
          job_name: job,
          metrics_path: group[0]!.path,
          static_configs: group.map((target) => ({ targets: [target.address], ...(target.labels ? { labels: target.labels } : {}) })),
        };
      }),
    };
    const listen = [`127.0.0.1:${port}`, ...(options.meshAddress ? [`${checkBackendHost("prometheus", options.meshAddress)}:${port}`] : [])];
    const url = `http://127.0.0.1:${port}`;
    const backend = await Backend.start({
      name: "prometheus",
      binary: componentPath("prometheus"),
      files: () => ({ "prometheus.yml": stringify(config) }),
      args: (dir) => [
        `--config.file=${dir}/prometheus.yml`,
        `--storage.tsdb.path=${dir}/data`,
        ...listen.map((address) => `--web.listen-address=${address}`),
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
