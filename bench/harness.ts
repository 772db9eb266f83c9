/**
 * The benchmark harness: each case times our path and a raw baseline on the
 * same bytes in the same run (or takes a cost each round measures, such as
 * a server's CPU time), several rounds, and reports the ratio of the
 * medians (absolute times are noise on a shared 2-core machine; a ratio
 * taken in one run is not), with the peak RSS growth during our path.
 *
 * @module
 */

/** One benchmark case. Throughput is `size` bytes per timed call. */
export interface BenchCase {
  /** The case's name, as `--only` matches it. */
  name: string;
  /** Bytes each timed call processes (or operations, with `unit: "ops"`). */
  size: number;
  /** What a round measures: bytes (MB/s) or operations (ops/s). */
  unit?: "bytes" | "ops";
  /**
   * Instead of a rate from the wall time: the unit of a cost (such as
   * `"ms/MiB"` or `"ms"`, lower being better) that `ours` and `baseline`
   * measure and return from each round themselves. The row gives the
   * medians and the ratio baseline / ours, so that, as for rates, above 1
   * means ours does better.
   */
  cost?: string;
  /** The least acceptable ratio ours / baseline, when there is one. */
  target?: number;
  /**
   * The target as words, for a case whose target is not a ratio (a rate, a
   * memory bound, "report time"); shown in the table and the JSON `target`.
   */
  targetText?: string;
  /** At most how many rounds this case runs (fewer than the default). */
  rounds?: number;
  /** Called once before the rounds, untimed (e.g. store what `open` reads). */
  setup?(): Promise<void>;
  /** Called before each round, untimed (e.g. remove the last round's copies). */
  beforeRound?(): Promise<void>;
  /** A line to print under the table once the row is known. */
  note?(row: BenchRow): string | undefined;
  /** The least acceptable rate of ours (MB/s or ops/s), when there is one. */
  minRate?: number;
  /** The most acceptable peak RSS growth in MiB, when there is one. */
  maxRssGrowthMiB?: number;
  /** Our path: one timed call (with `cost`, returning the round's cost). */
  ours(): Promise<void | number>;
  /** The raw baseline: one timed call over the same bytes (likewise). */
  baseline?(): Promise<void | number>;
  /** Called once after the rounds. */
  teardown?(): Promise<void>;
}

/** A group of cases that needs a service: `open` says why it is skipped. */
export interface BenchSuite {
  /** The suite's name. */
  name: string;
  /** Returns the cases, or a reason to skip them all. */
  open(options: { quick: boolean }): Promise<BenchCase[] | string>;
  /** Releases what `open` took. */
  close?(): Promise<void>;
  /** A line to print under the table once the suite is closed. */
  note?(): string | undefined;
}

/** One row of the results. */
export interface BenchRow {
  case: string;
  size: number;
  ours: number;
  baseline: number | null;
  ratio: number | null;
  target: number | string | null;
  met: boolean | null;
  peakRssGrowthMiB: number;
  /** The baseline's peak RSS growth (reported in notes, not in the JSON). */
  baselinePeakRssGrowthMiB: number | null;
  /** `"MB/s"`, `"ops/s"`, or a case's `cost` unit. */
  unit: string;
}

/**
 * Runs one case for `rounds` rounds (or its own count), timing ours and the
 * baseline in each, which goes first alternating from round to round.
 */
export async function runCase(c: BenchCase, rounds: number): Promise<BenchRow> {
  const ours: number[] = [];
  const base: number[] = [];
  let peak = 0;
  const runOurs = async () => {
    const sampled = await sampleRss(() => measure(c, c.ours));
    ours.push(sampled.result);
    peak = Math.max(peak, sampled.growthMiB);
  };
  let basePeak = 0;
  const runBaseline = async () => {
    if (!c.baseline) return;
    const sampled = await sampleRss(() => measure(c, c.baseline!));
    base.push(sampled.result);
    basePeak = Math.max(basePeak, sampled.growthMiB);
  };
  try {
    await c.setup?.();
    for (let r = 0; r < Math.min(c.rounds ?? rounds, rounds); r++) {
      await c.beforeRound?.();
      if (r % 2 === 0) {
        await runBaseline();
        await runOurs();
      } else {
        await runOurs();
        await runBaseline();
      }
    }
  } finally {
    await c.teardown?.();
  }
  const unit = c.cost ?? (c.unit === "ops" ? "ops/s" : "MB/s");
  const rate = (ms: number) =>
    c.cost !== undefined
      ? ms
      : c.unit === "ops"
      ? c.size / (ms / 1000)
      : c.size / 1e6 / (ms / 1000);
  const oursRate = rate(median(ours));
  const baseRate = c.baseline ? rate(median(base)) : null;
  const ratio = !baseRate
    ? null
    : c.cost !== undefined
    ? baseRate / oursRate
    : oursRate / baseRate;
  const round = c.cost !== undefined ? roundCost : roundRate;
  const metRatio = c.target === undefined || ratio === null
    ? null
    : ratio >= c.target;
  const metRss = c.maxRssGrowthMiB === undefined
    ? null
    : peak <= c.maxRssGrowthMiB;
  const metRate = c.minRate === undefined ? null : oursRate >= c.minRate;
  return {
    case: c.name,
    size: c.size,
    ours: round(oursRate),
    baseline: baseRate === null ? null : round(baseRate),
    ratio: ratio === null ? null : Math.round(ratio * 1000) / 1000,
    target: c.target ?? c.targetText ?? null,
    met: metRatio === null && metRss === null && metRate === null
      ? null
      : (metRatio ?? true) && (metRss ?? true) && (metRate ?? true),
    peakRssGrowthMiB: Math.round(peak * 10) / 10,
    baselinePeakRssGrowthMiB: c.baseline
      ? Math.round(basePeak * 10) / 10
      : null,
    unit,
  };
}

/** One call's wall time in ms, or with `c.cost` the cost it returns. */
async function measure(
  c: BenchCase,
  fn: () => Promise<void | number>,
): Promise<number> {
  const start = performance.now();
  const cost = await fn();
  if (c.cost === undefined) return performance.now() - start;
  if (typeof cost !== "number" || !Number.isFinite(cost)) {
    throw new Error(`${c.name}: a round returned no cost (got ${cost})`);
  }
  return cost;
}

/**
 * Runs `fn` while sampling the process's RSS every 5 ms; returns its result
 * and the peak growth above the RSS at the start, in MiB.
 */
export async function sampleRss<T>(
  fn: () => Promise<T>,
): Promise<{ result: T; growthMiB: number }> {
  const start = Deno.memoryUsage().rss;
  let peak = start;
  const timer = setInterval(() => {
    peak = Math.max(peak, Deno.memoryUsage().rss);
  }, 5);
  try {
    const result = await fn();
    peak = Math.max(peak, Deno.memoryUsage().rss);
    return { result, growthMiB: (peak - start) / 2 ** 20 };
  } finally {
    clearInterval(timer);
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function roundRate(x: number): number {
  return x >= 100 ? Math.round(x) : Math.round(x * 10) / 10;
}

/** Three significant digits: costs are often below 1. */
function roundCost(x: number): number {
  return Number(x.toPrecision(3));
}

/** Formats a size in bytes the way the table shows it. */
export function formatSize(bytes: number, unit: BenchRow["unit"]): string {
  if (unit === "ops/s") return `${bytes.toLocaleString("en")} ops`;
  for (
    const [u, n] of [["GiB", 2 ** 30], ["MiB", 2 ** 20], [
      "KiB",
      2 ** 10,
    ]] as const
  ) {
    if (bytes >= n && bytes % n === 0) return `${bytes / n} ${u}`;
  }
  return `${bytes} B`;
}

/** Renders the rows as one markdown table. */
export function markdownTable(rows: BenchRow[]): string {
  const lines = [
    "| case | size | ours | baseline | ratio | target | met | peak RSS growth |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.case} | ${formatSize(r.size, r.unit)} | ${r.ours} ${r.unit} | ${
        r.baseline === null ? "—" : `${r.baseline} ${r.unit}`
      } | ${r.ratio ?? "—"} | ${
        r.target === null
          ? "—"
          : typeof r.target === "number"
          ? `≥ ${r.target}`
          : r.target
      } | ${
        r.met === null ? "—" : r.met ? "yes" : "**no**"
      } | ${r.peakRssGrowthMiB} MiB |`,
    );
  }
  return lines.join("\n");
}
