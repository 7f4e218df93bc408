// The outlier detector's state of every upstream host, shared by all workers through proxy-wasm shared data as
// text, one host a line: `<address> <consecutive 5xx> <consecutive gateway errors> <ejections> <ejected until ms>`
// (0 = not ejected). Pure logic, no host calls: the filter reads, changes and writes it back with CAS.

export class OutlierSettings {
  consecutive5xxErrors: i32 = 5;
  consecutiveGatewayErrors: i32 = 0;
  baseEjectionMs: i64 = 30_000;
  maxEjectionMs: i64 = 300_000;
  maxEjectionPercent: f64 = 10;
}

export class HostState {
  consecutive5xx: i32 = 0;
  consecutiveGateway: i32 = 0;
  ejections: i32 = 0;
  ejectedUntilMs: i64 = 0;
  constructor(readonly address: string) {}

  get ejected(): bool {
    return this.ejectedUntilMs != 0;
  }
}

export enum ErrorOutcome {
  /** Counted; the host stays in. */
  Counted,
  /** This error made the host's streak reach a threshold and the host is ejected now. */
  Ejected,
  /** A threshold was reached but maxEjectionPercent forbids another ejection. */
  Overflow,
}

export class HostTable {
  hosts: HostState[] = [];

  static decode(text: string): HostTable {
    const table = new HostTable();
    const lines = text.split("\n");
    for (let i = 0; i < lines.length; i++) {
      const fields = lines[i].split(" ");
      if (fields.length != 5) continue;
      const host = new HostState(fields[0]);
      host.consecutive5xx = I32.parseInt(fields[1]);
      host.consecutiveGateway = I32.parseInt(fields[2]);
      host.ejections = I32.parseInt(fields[3]);
      host.ejectedUntilMs = I64.parseInt(fields[4]);
      table.hosts.push(host);
    }
    return table;
  }

  encode(): string {
    let out = "";
    for (let i = 0; i < this.hosts.length; i++) {
      const h = this.hosts[i];
      out += h.address + " " + h.consecutive5xx.toString() + " " + h.consecutiveGateway.toString() + " " + h.ejections.toString() + " " + h.ejectedUntilMs.toString() + "\n";
    }
    return out;
  }

  find(address: string): HostState | null {
    for (let i = 0; i < this.hosts.length; i++) if (this.hosts[i].address == address) return this.hosts[i];
    return null;
  }

  /** The host, added when the table does not have it yet. */
  host(address: string): HostState {
    const found = this.find(address);
    if (found !== null) return found;
    const added = new HostState(address);
    this.hosts.push(added);
    return added;
  }

  ejectedCount(): i32 {
    let n = 0;
    for (let i = 0; i < this.hosts.length; i++) if (this.hosts[i].ejected) n++;
    return n;
  }

  /** Counts a 5xx answer from `address` (`gateway`: a 502, 503 or 504) and ejects the host when a streak reaches
   * its threshold and maxEjectionPercent allows: for baseEjectionTime x its ejections so far, at most
   * maxEjectionTime. */
  recordError(address: string, gateway: bool, nowMs: i64, settings: OutlierSettings): ErrorOutcome {
    const host = this.host(address);
    if (host.ejected) return ErrorOutcome.Counted; // an answer to a request sent before the ejection
    host.consecutive5xx++;
    host.consecutiveGateway = gateway ? host.consecutiveGateway + 1 : 0;
    const over5xx = settings.consecutive5xxErrors > 0 && host.consecutive5xx >= settings.consecutive5xxErrors;
    const overGateway = settings.consecutiveGatewayErrors > 0 && host.consecutiveGateway >= settings.consecutiveGatewayErrors;
    if (!over5xx && !overGateway) return ErrorOutcome.Counted;
    if (!this.mayEject(settings.maxEjectionPercent)) return ErrorOutcome.Overflow;
    host.ejections++;
    host.ejectedUntilMs = nowMs + min(settings.baseEjectionMs * <i64>host.ejections, max(settings.maxEjectionMs, settings.baseEjectionMs));
    host.consecutive5xx = 0;
    host.consecutiveGateway = 0;
    return ErrorOutcome.Ejected;
  }

  /** A non-5xx answer from `address` ends its streaks; true when that changed anything. */
  recordSuccess(address: string): bool {
    const host = this.find(address);
    if (host === null || (host.consecutive5xx == 0 && host.consecutiveGateway == 0)) return false;
    host.consecutive5xx = 0;
    host.consecutiveGateway = 0;
    return true;
  }

  /** Brings back every host whose ejection time is up; returns how many came back. */
  returnDue(nowMs: i64): i32 {
    let n = 0;
    for (let i = 0; i < this.hosts.length; i++) {
      const host = this.hosts[i];
      if (host.ejected && host.ejectedUntilMs <= nowMs) {
        host.ejectedUntilMs = 0;
        n++;
      }
    }
    return n;
  }

  /** One more ejection keeps the ejected hosts within maxEjectionPercent of all hosts (with 0 ejected, one is
   * always allowed unless the percentage is 0, as in Envoy). */
  private mayEject(maxEjectionPercent: f64): bool {
    if (maxEjectionPercent <= 0) return false;
    const ejected = this.ejectedCount();
    if (ejected == 0) return true;
    return <f64>(ejected + 1) * 100.0 <= maxEjectionPercent * <f64>this.hosts.length;
  }
}
