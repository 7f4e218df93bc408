// Option parsers shared by the skiff commands (commander calls them with each value given).
import { isIPv4 } from "node:net";
import { InvalidArgumentError } from "commander";

export function port(value: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 0 || number > 65535) throw new InvalidArgumentError("expected a port number (0-65535)");
  return number;
}

/** `HOST` or `HOST:PORT`: an IPv4 address, and a port when given (else the command's port option applies). */
export function address(value: string): { host: string; port?: number } {
  const [host, portText, ...rest] = value.split(":");
  if (rest.length > 0 || !isIPv4(host)) throw new InvalidArgumentError("expected an IPv4 address, optionally with a port, e.g. 198.18.0.1:18000");
  return portText === undefined ? { host } : { host, port: port(portText) };
}

/** `--label key=value`, repeatable: collects the labels into one record. */
export function label(value: string, labels: Record<string, string>): Record<string, string> {
  const at = value.indexOf("=");
  if (at <= 0) throw new InvalidArgumentError("expected key=value");
  return { ...labels, [value.slice(0, at)]: value.slice(at + 1) };
}

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** A lifetime such as "30s", "10m", "24h" or "90d", in seconds. */
export function seconds(value: string): number {
  const match = /^(\d+)(s|m|h|d)$/.exec(value);
  if (!match || Number(match[1]) === 0) throw new InvalidArgumentError('expected a duration such as "30s", "10m", "24h" or "90d"');
  return Number(match[1]) * UNIT_SECONDS[match[2]!]!;
}

/** Where the control plane keeps its CA and token key unless --data-dir says otherwise. */
export const DEFAULT_DATA_DIR = process.env.SKIFF_DATA_DIR ?? `${process.env.HOME ?? "."}/.skiff/control-plane`;
