// Host functions over what Envoy keeps per process or per VM rather than per stream: the log, time and timers, shared
// data and queues, metrics. Semantics from Envoy's source/extensions/common/wasm/context.cc and proxy-wasm-cpp-host's
// src/exports.cc, src/shared_data.cc, src/shared_queue.cc.
import { LogLevel, WasmResult } from "./abi.js";
import type { Vm } from "./host.js";
import type { Metric } from "./shared.js";

export function processFunctions(vm: Vm): Record<string, unknown> {
  const m = () => vm.memory;
  const process = vm.process;
  // Metric ids are per VM, with the metric type in their low two bits (Envoy's kMetricTypeMask); the metrics
  // themselves are process-wide, by name.
  const metricIds = new Map<number, Metric>();
  const lastMetricId = [0, 1, 2];

  return {
    // ----- logging, time, timers
    proxy_log: (level: number, ptr: number, size: number): number => {
      if (level < 0 || level > LogLevel.Critical) return WasmResult.BadArgument;
      process.log(vm.index, vm.effectiveId, level, m().text(ptr, size));
      return WasmResult.Ok;
    },
    proxy_get_log_level: (levelPtr: number): number => {
      m().u32(levelPtr, process.logLevel);
      return WasmResult.Ok;
    },
    proxy_get_current_time_nanoseconds: (timePtr: number): number => {
      m().u64(timePtr, process.clock.realtimeNanos());
      return WasmResult.Ok;
    },
    proxy_set_tick_period_milliseconds: (periodMs: number): number => {
      const root = vm.rootOf(vm.effectiveId);
      if (root === undefined) return WasmResult.BadArgument;
      root.tickPeriodMs = periodMs >>> 0;
      root.nextTickAt = root.tickPeriodMs > 0 ? process.clock.nowMs + root.tickPeriodMs : Infinity;
      return WasmResult.Ok;
    },

    // ----- shared data and queues
    proxy_get_shared_data: (keyPtr: number, keySize: number, ptrPtr: number, sizePtr: number, casPtr: number): number => {
      const entry = process.sharedData.get(m().text(keyPtr, keySize));
      if (entry === undefined) return WasmResult.NotFound;
      m().returnBytes(entry.value, ptrPtr, sizePtr);
      m().u32(casPtr, entry.cas);
      return WasmResult.Ok;
    },
    proxy_set_shared_data: (keyPtr: number, keySize: number, valuePtr: number, valueSize: number, cas: number): number =>
      process.sharedData.set(m().text(keyPtr, keySize), m().bytes(valuePtr, valueSize), cas >>> 0),
    proxy_register_shared_queue: (namePtr: number, nameSize: number, tokenPtr: number): number => {
      const root = vm.rootOf(vm.effectiveId);
      if (root === undefined) return WasmResult.BadArgument;
      m().u32(tokenPtr, process.queues.register(m().text(namePtr, nameSize), vm.index, root.id));
      return WasmResult.Ok;
    },
    proxy_resolve_shared_queue: (vmIdPtr: number, vmIdSize: number, namePtr: number, nameSize: number, tokenPtr: number): number => {
      if (m().text(vmIdPtr, vmIdSize) !== process.vmId) return WasmResult.NotFound;
      const token = process.queues.resolve(m().text(namePtr, nameSize));
      if (token === undefined) return WasmResult.NotFound;
      m().u32(tokenPtr, token);
      return WasmResult.Ok;
    },
    proxy_enqueue_shared_queue: (token: number, valuePtr: number, valueSize: number): number =>
      process.queues.enqueueByToken(token, m().bytes(valuePtr, valueSize)),
    proxy_dequeue_shared_queue: (token: number, ptrPtr: number, sizePtr: number): number => {
      const { result, value } = process.queues.dequeueByToken(token);
      if (value !== undefined) m().returnBytes(value, ptrPtr, sizePtr);
      return result;
    },

    // ----- metrics (counters only go up)
    proxy_define_metric: (type: number, namePtr: number, nameSize: number, idPtr: number): number => {
      const metric = process.metrics.define(type, m().text(namePtr, nameSize));
      if (metric === undefined) return WasmResult.BadArgument;
      const id = (lastMetricId[type] += 4);
      metricIds.set(id, metric);
      m().u32(idPtr, id);
      return WasmResult.Ok;
    },
    proxy_increment_metric: (id: number, offset: bigint): number => {
      const type = id & 3;
      const metric = metricIds.get(id >>> 0);
      if (type === 0) {
        if (metric === undefined) return WasmResult.NotFound;
        if (offset <= 0n) return WasmResult.BadArgument;
        metric.value += offset;
        return WasmResult.Ok;
      }
      if (type === 1) {
        if (metric === undefined) return WasmResult.NotFound;
        metric.value = BigInt.asUintN(64, metric.value + offset);
        return WasmResult.Ok;
      }
      return WasmResult.BadArgument;
    },
    proxy_record_metric: (id: number, value: bigint): number => {
      const metric = metricIds.get(id >>> 0);
      if (metric === undefined) return WasmResult.NotFound;
      const unsigned = BigInt.asUintN(64, value);
      if (metric.kind === "counter") metric.value += unsigned;
      else if (metric.kind === "gauge") metric.value = unsigned;
      else metric.samples.push(unsigned);
      return WasmResult.Ok;
    },
    proxy_get_metric: (id: number, valuePtr: number): number => {
      if ((id & 3) === 2) return WasmResult.BadArgument;
      const metric = metricIds.get(id >>> 0);
      if (metric === undefined) return WasmResult.NotFound;
      m().u64(valuePtr, metric.value);
      return WasmResult.Ok;
    },
  };
}
