// Percentiles and medians for latency samples and repeated runs.

/** The p-th percentile (0..100) of `values`, nearest-rank. */
export function percentile(values: ArrayLike<number>, p: number): number {
  const sorted = Float64Array.from(values).sort();
  if (sorted.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}

export function median(values: number[]): number {
  return percentile(values, 50);
}

/** Spread of repeated measurements: (max - min) / median, as a percentage. */
export function spreadPercent(values: number[]): number {
  if (values.length < 2) return 0;
  return ((Math.max(...values) - Math.min(...values)) / median(values)) * 100;
}
