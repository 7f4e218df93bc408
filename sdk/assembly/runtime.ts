// What a plain AssemblyScript module would import from `env` and Envoy does not provide. The SDK's asconfig preset
// points the compiler at these with `--use abort=skiffAbort --use seed=skiffSeed`; they are globals so the preset
// works wherever the SDK sits on disk.
import { proxy_log, wasi_random_get } from "./imports";
import { LogLevel } from "./types";

// @ts-ignore: decorator
@global function skiffAbort(message: string | null, fileName: string | null = null, line: u32 = 0, column: u32 = 0): void {
  let text = "abort: " + (message !== null ? message : "");
  if (fileName !== null) text += " at " + fileName + ":" + line.toString() + ":" + column.toString();
  const bytes = String.UTF8.encode(text);
  proxy_log(LogLevel.Critical, changetype<usize>(bytes), bytes.byteLength);
  unreachable();
}

// Math.random's seed comes from the host's CSPRNG (WASI random_get), not from `env.seed`.
// @ts-ignore: decorator
@global function skiffSeed(): f64 {
  const slot = memory.data(8);
  wasi_random_get(slot, 8);
  return reinterpret<f64>(load<u64>(slot));
}
