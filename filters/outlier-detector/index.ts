// outlier-detector: ejects an upstream host (the `upstream.address` of its answers) after `consecutive5xxErrors`
// (or `consecutiveGatewayErrors`) in a row, for `baseEjectionTime` x its ejections so far, keeping at most
// `maxEjectionPercent` of the hosts out; every `interval` each worker syncs with the shared state and brings back
// hosts whose time is up. Ejection steers traffic inside Envoy: while any host is out, the filter names the hosts
// that are in, in the request header the cluster's override_host load-balancing policy reads (first the host to
// use, then those for retries); with none out it sets nothing and the fallback policy balances as usual.
// See README.md for why this mechanism and what the shared state costs.
import {
  ConfigReader, Counter, Gauge, HeadersAction, HttpContext, LogLevel, PropertyPath, RootContext, WasmResult, getPropertyString,
  getSharedData, log, nowNanos, registerRootContext, setSharedData,
} from "@skiff/proxy-wasm";
import { ErrorOutcome, HostTable, OutlierSettings } from "./table";
export * from "@skiff/proxy-wasm/dispatcher";

const UPSTREAM_ADDRESS = new PropertyPath(["upstream", "address"]);
const PLUGIN_NAME = new PropertyPath(["plugin_name"]);
const CAS_ATTEMPTS: i32 = 8;
/** While no host has a streak, a worker reads `upstream.address` on its first EAGER_LEARNING successes and then on
 * one success in LEARN_ONE_IN (at random, so that no round-robin order hides a host), to learn the hosts. */
const EAGER_LEARNING: u32 = 64;
const LEARN_ONE_IN: u32 = 16;

function nowMs(): i64 {
  return <i64>(nowNanos() / 1_000_000);
}

class OutlierRoot extends RootContext {
  settings: OutlierSettings = new OutlierSettings();
  hostHeader: string = "x-skiff-outlier-host";
  key: string = "";

  // This worker's view of the shared table, rebuilt whenever it reads or writes it.
  known: Set<string> = new Set();
  /** Hosts with a streak running: a success from one of them must reset it in the shared table. */
  streaky: Set<string> = new Set();
  ejected: Set<string> = new Set();
  /** Hosts this worker learned from answers that the shared table does not list yet. */
  pending: string[] = [];
  /** Header values naming the hosts that are in, one rotation each; empty when no host is out. */
  rotations: string[] = [];
  next: u32 = 0;
  successes: u32 = 0;
  /** xorshift32 state: a sampling decision per success without a host call. */
  random: u32 = 0x9e3779b9;

  readonly ejections: Counter = new Counter("outlier_detector.ejections");
  readonly overflows: Counter = new Counter("outlier_detector.ejections_overflow");
  readonly returned: Counter = new Counter("outlier_detector.returned");
  readonly ejectionsSeen: Counter = new Counter("outlier_detector.ejections_seen");
  readonly steered: Counter = new Counter("outlier_detector.steered");
  readonly ejectedHosts: Gauge = new Gauge("outlier_detector.ejected_hosts");

  onConfigure(configurationSize: usize): bool {
    const config = ConfigReader.parse(configurationSize > 0 ? this.pluginConfiguration() : "");
    const settings = new OutlierSettings();
    settings.consecutive5xxErrors = <i32>config.integer("consecutive5xxErrors", 5, 0, 1_000_000);
    settings.consecutiveGatewayErrors = <i32>config.integer("consecutiveGatewayErrors", 0, 0, 1_000_000);
    // At most a day: it is the tick period, which must fit the host's u32 milliseconds.
    const intervalMs = config.durationMs("interval", 10_000, 10, 86_400_000);
    settings.baseEjectionMs = config.durationMs("baseEjectionTime", 30_000, 1);
    settings.maxEjectionMs = config.durationMs("maxEjectionTime", 300_000, 1);
    settings.maxEjectionPercent = config.number("maxEjectionPercent", 10, 0, 100);
    const hostHeader = config.headerName("hostHeader", "x-skiff-outlier-host");
    config.rejectUnknownFields();
    if (config.ok && settings.consecutive5xxErrors == 0 && settings.consecutiveGatewayErrors == 0) {
      config.problem("consecutive5xxErrors", "expected at least 1 when consecutiveGatewayErrors is 0 (nothing would be detected)");
    }
    if (!config.ok) {
      log(LogLevel.Error, "outlier-detector: invalid configuration: " + config.error);
      return false;
    }
    this.settings = settings;
    this.hostHeader = hostHeader;
    const name = getPropertyString(PLUGIN_NAME);
    this.key = "skiff.outlier_detector." + (name === null ? "" : name) + ".hosts";
    this.sync();
    this.setTickPeriod(<u32>intervalMs);
    return true;
  }

  /** Every interval: publish learned hosts, bring back hosts whose time is up, refresh the view. */
  onTick(): void {
    this.sync();
  }

  createHttpContext(contextId: u32): HttpContext | null {
    return new OutlierStream(contextId, this);
  }

  /** The header value for the next request, or null when no host is out. */
  nextHosts(): string | null {
    const n = <u32>this.rotations.length;
    if (n == 0) return null;
    const value = unchecked(this.rotations[<i32>(this.next % n)]);
    this.next++;
    return value;
  }

  onError(address: string, gateway: bool): void {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const current = getSharedData(this.key);
      const table = HostTable.decode(current.value === null ? "" : String.UTF8.decode(current.value!));
      this.addPending(table);
      const now = nowMs();
      const outcome = table.recordError(address, gateway, now, this.settings);
      if (setSharedData(this.key, String.UTF8.encode(table.encode()), current.cas) != WasmResult.Ok) continue;
      this.pending = [];
      if (outcome == ErrorOutcome.Ejected) {
        this.ejections.increment();
        const host = table.find(address)!;
        log(LogLevel.Info, "outlier-detector: ejected " + address + " for " + (host.ejectedUntilMs - now).toString() + "ms (ejection " + host.ejections.toString() + ")");
      } else if (outcome == ErrorOutcome.Overflow) {
        this.overflows.increment();
      }
      this.adopt(table);
      return;
    }
  }

  onSuccess(address: string): void {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const current = getSharedData(this.key);
      const table = HostTable.decode(current.value === null ? "" : String.UTF8.decode(current.value!));
      if (!table.recordSuccess(address)) {
        this.adopt(table);
        return;
      }
      if (setSharedData(this.key, String.UTF8.encode(table.encode()), current.cas) == WasmResult.Ok) {
        this.adopt(table);
        return;
      }
    }
  }

  learnFromThisSuccess(): bool {
    if (this.successes < EAGER_LEARNING) {
      this.successes++;
      return true;
    }
    let x = this.random;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    this.random = x;
    return x % LEARN_ONE_IN == 0;
  }

  learn(address: string): void {
    if (this.known.has(address)) return;
    this.known.add(address);
    this.pending.push(address);
  }

  private sync(): void {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const current = getSharedData(this.key);
      const table = HostTable.decode(current.value === null ? "" : String.UTF8.decode(current.value!));
      const added = this.addPending(table);
      const back = table.returnDue(nowMs());
      if (added == 0 && back == 0) {
        this.adopt(table);
        return;
      }
      if (setSharedData(this.key, String.UTF8.encode(table.encode()), current.cas) != WasmResult.Ok) continue;
      this.pending = [];
      if (back > 0) {
        this.returned.increment(back);
        log(LogLevel.Info, "outlier-detector: " + back.toString() + " host(s) back from ejection");
      }
      this.adopt(table);
      return;
    }
  }

  private addPending(table: HostTable): i32 {
    let added = 0;
    for (let i = 0; i < this.pending.length; i++) {
      if (table.find(this.pending[i]) === null) {
        table.host(this.pending[i]);
        added++;
      }
    }
    return added;
  }

  /** Makes `table` this worker's view. */
  private adopt(table: HostTable): void {
    const known = new Set<string>();
    const streaky = new Set<string>();
    const ejected = new Set<string>();
    const inHosts: string[] = [];
    let newlyEjected = 0;
    for (let i = 0; i < table.hosts.length; i++) {
      const host = table.hosts[i];
      known.add(host.address);
      if (host.consecutive5xx > 0 || host.consecutiveGateway > 0) streaky.add(host.address);
      if (host.ejected) {
        ejected.add(host.address);
        if (!this.ejected.has(host.address)) newlyEjected++;
      } else {
        inHosts.push(host.address);
      }
    }
    for (let i = 0; i < this.pending.length; i++) {
      if (!known.has(this.pending[i])) {
        known.add(this.pending[i]);
        inHosts.push(this.pending[i]);
      }
    }
    if (newlyEjected > 0) this.ejectionsSeen.increment(newlyEjected);
    if (ejected.size != this.ejected.size) this.ejectedHosts.set(<u64>ejected.size);
    this.known = known;
    this.streaky = streaky;
    this.ejected = ejected;
    this.rotations = ejected.size == 0 || inHosts.length == 0 ? [] : rotationsOf(inHosts);
  }
}

/** "a,b,c", "b,c,a", "c,a,b": each request starts at the next host that is in, the rest serve its retries. */
function rotationsOf(hosts: string[]): string[] {
  const out: string[] = [];
  for (let start = 0; start < hosts.length; start++) {
    let value = "";
    for (let i = 0; i < hosts.length; i++) {
      if (i > 0) value += ",";
      value += hosts[(start + i) % hosts.length];
    }
    out.push(value);
  }
  return out;
}

class OutlierStream extends HttpContext {
  constructor(contextId: u32, readonly plugin: OutlierRoot) {
    super(contextId);
  }

  onRequestHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    const root = this.plugin;
    const hosts = root.nextHosts();
    if (hosts === null) {
      // Nobody but this filter may steer: drop a value the client sent. (Look first: a removal, like any change to
      // the request headers, also clears Envoy's route cache.)
      if (this.request.headers.has(root.hostHeader)) this.request.headers.remove(root.hostHeader);
    } else {
      this.request.headers.set(root.hostHeader, hosts);
      root.steered.increment();
    }
    return HeadersAction.Continue;
  }

  onResponseHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    const root = this.plugin;
    const status = this.response.headers.get(":status");
    if (status === null || status.length != 3) return HeadersAction.Continue;
    if (status.charCodeAt(0) == 0x35 /* 5 */) {
      const address = getPropertyString(UPSTREAM_ADDRESS);
      if (address !== null) root.onError(address, status == "502" || status == "503" || status == "504");
      return HeadersAction.Continue;
    }
    // A success costs no property read unless a streak may need resetting, or it is this worker's sample to learn.
    const sample = root.learnFromThisSuccess();
    if (root.streaky.size == 0 && !sample) return HeadersAction.Continue;
    const address = getPropertyString(UPSTREAM_ADDRESS);
    if (address === null) return HeadersAction.Continue;
    if (root.streaky.has(address)) root.onSuccess(address);
    else if (sample) root.learn(address);
    return HeadersAction.Continue;
  }
}

registerRootContext((contextId: u32): RootContext => new OutlierRoot(contextId));
