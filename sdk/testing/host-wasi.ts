// The WASI functions Envoy provides to a proxy-wasm module (under both wasi_snapshot_preview1 and wasi_unstable):
// output to Envoy's log, the clocks, the CSPRNG, empty environment and arguments, and a proc_exit that only logs.
// Envoy's source/extensions/common/wasm/context.cc and proxy-wasm-cpp-host's src/exports.cc.
import { webcrypto } from "node:crypto";
import { LogLevel } from "./abi.js";
import type { Vm } from "./host.js";

const ERRNO_SUCCESS = 0;
const ERRNO_BADF = 8;
const ERRNO_INVAL = 28;

export function wasiFunctions(vm: Vm): Record<string, unknown> {
  const m = () => vm.memory;
  const log = (level: number, message: string) => vm.process.log(vm.index, vm.effectiveId, level, message);
  return {
    fd_write: (fd: number, iovs: number, iovsLength: number, writtenPtr: number): number => {
      if (fd !== 1 && fd !== 2) return ERRNO_BADF;
      let text = "";
      let written = 0;
      for (let i = 0; i < iovsLength; i++) {
        const ptr = m().readU32(iovs + i * 8);
        const length = m().readU32(iovs + i * 8 + 4);
        text += m().text(ptr, length);
        written += length;
      }
      // Envoy logs a module's stdout at info and its stderr at error, without the trailing newline.
      if (written > 0) log(fd === 1 ? LogLevel.Info : LogLevel.Error, text.replace(/\n$/, ""));
      m().u32(writtenPtr, written);
      return ERRNO_SUCCESS;
    },
    clock_time_get: (clockId: number, _precision: bigint, timePtr: number): number => {
      if (clockId === 0) m().u64(timePtr, vm.process.clock.realtimeNanos());
      else if (clockId === 1) m().u64(timePtr, vm.process.clock.monotonicNanos());
      else return ERRNO_INVAL;
      return ERRNO_SUCCESS;
    },
    random_get: (ptr: number, length: number): number => {
      // Envoy serves at most 64 KiB a call (BoringSSL RAND_bytes per call), and answers INVAL beyond.
      if (length > 65536) return ERRNO_INVAL;
      const bytes = new Uint8Array(length);
      webcrypto.getRandomValues(bytes);
      m().write(ptr, bytes);
      return ERRNO_SUCCESS;
    },
    environ_sizes_get: (countPtr: number, sizePtr: number): number => {
      m().u32(countPtr, 0);
      m().u32(sizePtr, 0);
      return ERRNO_SUCCESS;
    },
    environ_get: (): number => ERRNO_SUCCESS,
    args_sizes_get: (countPtr: number, sizePtr: number): number => {
      m().u32(countPtr, 0);
      m().u32(sizePtr, 0);
      return ERRNO_SUCCESS;
    },
    args_get: (): number => ERRNO_SUCCESS,
    // Envoy only notes the call (at trace level) and returns; a guest that expects no return traps right after.
    proc_exit: (code: number): void => log(LogLevel.Trace, `wasi proc_exit(${code})`),
  };
}
