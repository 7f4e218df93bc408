// Prometheus and Jaeger for tests (control/backends), tracked like Envoys: a test file that leaves one running fails,
// their log tails are printed when a test fails, and the run's final check finds them by their marker.
import { Jaeger } from "../../control/backends/jaeger.js";
import { Prometheus, type ScrapeTarget } from "../../control/backends/prometheus.js";
import { CHILD_MARKER, testRunId, track, untrack } from "./processes.js";

function tracked<T extends { backend: { description: string; logTail(lines?: number): string }; stop(): Promise<void> }>(started: T): T {
  const thing = { description: started.backend.description, stop: () => started.stop(), logTail: (lines?: number) => started.backend.logTail(lines) };
  track(thing);
  const stop = started.stop.bind(started);
  started.stop = async () => {
    untrack(thing, started.backend.logTail(20));
    await stop();
  };
  return started;
}

export async function startPrometheus(targets: ScrapeTarget[]): Promise<Prometheus> {
  return tracked(await Prometheus.start(targets, { env: { [CHILD_MARKER]: testRunId() } }));
}

export async function startJaeger(): Promise<Jaeger> {
  return tracked(await Jaeger.start({}, { env: { [CHILD_MARKER]: testRunId() } }));
}
