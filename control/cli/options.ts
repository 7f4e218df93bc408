// Option parsers shared by the skiff commands (commander calls them with each value given).
import { InvalidArgumentError } from "commander";

export function port(value: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 0 || number > 65535) throw new InvalidArgumentError("expected a port number (0-65535)");
  return number;
}

/** `--label key=value`, repeatable: collects the labels into one record. */
export function label(value: string, labels: Record<string, string>): Record<string, string> {
  const at = value.indexOf("=");
  if (at <= 0) throw new InvalidArgumentError("expected key=value");
  return { ...labels, [value.slice(0, at)]: value.slice(at + 1) };
}
