// istiod's push debounce, shared by every source (the folder, Kubernetes): a burst of changes becomes one update.

/** istiod's PILOT_DEBOUNCE_AFTER (100 ms without changes) and PILOT_DEBOUNCE_MAX (never longer than 10 s after the
 * first change of a burst). */
export const DEBOUNCE = { quietMs: 100, maxMs: 10_000 };

/** Calls `fire(firstChangeAt)` once a burst of `changed()` calls is over: after `quietMs` without another one, and
 * never later than `maxMs` after the burst's first (epoch ms, where istiod starts its convergence clock). */
export class Debouncer {
  private quietTimer?: NodeJS.Timeout;
  private maxTimer?: NodeJS.Timeout;
  private burstStart?: number;

  constructor(
    private readonly fire: (firstChangeAt: number) => void,
    private readonly timing = DEBOUNCE,
  ) {}

  changed(): void {
    this.burstStart ??= Date.now();
    clearTimeout(this.quietTimer);
    this.quietTimer = setTimeout(() => this.flush(), this.timing.quietMs);
    this.maxTimer ??= setTimeout(() => this.flush(), this.timing.maxMs);
  }

  /** Fires now (if a burst is pending, with its start; else with now). */
  flush(): void {
    const firstChangeAt = this.burstStart ?? Date.now();
    this.cancel();
    this.fire(firstChangeAt);
  }

  cancel(): void {
    clearTimeout(this.quietTimer);
    clearTimeout(this.maxTimer);
    this.quietTimer = this.maxTimer = this.burstStart = undefined;
  }
}
