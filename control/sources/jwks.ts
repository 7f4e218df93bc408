// The JSON Web Key Sets that RequestAuthentication `jwksUri`s name, fetched by the control plane and inlined into
// Envoy's configuration, as istiod does by default (PILOT_JWT_ENABLE_REMOTE_JWKS=false, pilot/pkg/model/jwks_resolver.go):
// proxies then need no route to the issuer. A key set is fetched on first use, refreshed every 20 minutes (istiod's
// PILOT_JWT_PUB_KEY_REFRESH_INTERVAL); while none could be fetched, translation inlines an empty set, so tokens of
// that issuer are refused, never accepted unchecked.
export const JWKS_REFRESH_MS = 20 * 60 * 1000;
const RETRY_MS = 30_000;

export class JwksCache {
  private readonly sets = new Map<string, string>();
  private readonly inFlight = new Set<string>();
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    /** A key set arrived or changed: translation should run again. */
    private readonly onChange: () => void,
    private readonly log: (line: string) => void,
    private readonly timeoutMs = 5000,
  ) {}

  /** The key set of `uri` if fetched; starts fetching it otherwise. */
  get(uri: string): string | undefined {
    const known = this.sets.get(uri);
    if (known === undefined) this.fetch(uri);
    return known;
  }

  stop(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }

  private fetch(uri: string): void {
    if (this.inFlight.has(uri)) return;
    this.inFlight.add(uri);
    void this.load(uri).finally(() => this.inFlight.delete(uri));
  }

  private async load(uri: string): Promise<void> {
    let next = JWKS_REFRESH_MS;
    try {
      const response = await fetch(uri, { signal: AbortSignal.timeout(this.timeoutMs) });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const text = await response.text();
      const parsed = JSON.parse(text) as { keys?: unknown };
      if (!Array.isArray(parsed.keys)) throw new Error('not a JSON Web Key Set (no "keys" list)');
      if (this.sets.get(uri) !== text) {
        this.sets.set(uri, text);
        this.log(`jwks: fetched ${uri} (${parsed.keys.length} key(s))`);
        this.onChange();
      }
    } catch (error) {
      next = RETRY_MS;
      this.log(`jwks: cannot fetch ${uri} (${(error as Error).message}); tokens of its issuer are refused until it can`);
    }
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.fetch(uri);
    }, next);
    timer.unref();
    this.timers.add(timer);
  }
}
