/**
 * Runs suites of benchmark cases and reports them: the argument parsing,
 * the loop and the report shared by `bench/main.ts` and each suite's
 * standalone entry.
 *
 * @module
 */

import { hashAloneCase } from "./bound.ts";
import {
  type BenchRow,
  type BenchSuite,
  markdownTable,
  runCase,
} from "./harness.ts";

/** What a run does. */
export interface RunOptions {
  /** Smaller sizes, one round: the whole run in under two minutes. */
  quick: boolean;
  /** Only the cases whose name holds this text (case-insensitive). */
  only?: string;
  /** Where to write the rows as JSON. */
  json?: string;
}

/** What a run found. */
export interface RunResult {
  rows: BenchRow[];
  /** One line per suite skipped: its name and why. */
  skipped: string[];
  /** Lines printed under the table (bounds, times, server memory). */
  notes: string[];
  rounds: number;
}

const MiB = 2 ** 20;

/**
 * Parses `[--quick] [--only NAME] [--json FILE]`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { parseArgs } from "./run.ts";
 *
 * assert.deepStrictEqual(parseArgs(["--quick"]), { quick: true });
 * ```
 */
export function parseArgs(args: string[]): RunOptions {
  const options: RunOptions = { quick: false };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--quick") options.quick = true;
    else if (arg === "--only" && i + 1 < args.length) options.only = args[++i];
    else if (arg === "--json" && i + 1 < args.length) options.json = args[++i];
    else {
      throw new Error(
        `unknown argument ${
          JSON.stringify(arg)
        } (expected --quick, --only NAME, --json FILE)`,
      );
    }
  }
  if (!options.only) delete options.only;
  if (!options.json) delete options.json;
  return options;
}

/**
 * Runs every case of `suites` (first SHA-384 alone, the bound later notes
 * use), skipping a suite whose `open` gives a reason; 5 rounds each, or 1
 * with `quick`.
 *
 * @example
 * ```ts ignore
 * import { runSuites } from "./run.ts";
 * import { coreSuite } from "./core.ts";
 *
 * const { rows } = await runSuites([coreSuite], { quick: true });
 * ```
 */
export async function runSuites(
  suites: BenchSuite[],
  options: RunOptions,
): Promise<RunResult> {
  const rounds = options.quick ? 1 : 5;
  const result: RunResult = { rows: [], skipped: [], notes: [], rounds };
  const hashAlone = hashAloneCase(options.quick ? 128 * MiB : 512 * MiB);
  const hashRow = await runCase(hashAlone, options.quick ? 1 : 3);
  hashAlone.note?.(hashRow);
  result.rows.push(hashRow);
  const only = options.only?.toLowerCase();
  for (const suite of suites) {
    console.error(`suite ${suite.name}: opening`);
    let cases;
    try {
      cases = await suite.open({ quick: options.quick });
    } catch (err) {
      cases = `could not open (${err instanceof Error ? err.message : err})`;
    }
    if (typeof cases === "string") {
      result.skipped.push(`${suite.name}: ${cases}`);
      console.error(`suite ${suite.name}: skipped: ${cases}`);
      await suite.close?.().catch(() => {});
      continue;
    }
    try {
      for (const c of cases) {
        if (only && !c.name.toLowerCase().includes(only)) continue;
        const n = Math.min(c.rounds ?? rounds, rounds);
        const started = performance.now();
        console.error(`running ${c.name} (${n} round${n > 1 ? "s" : ""})`);
        const row = await runCase(c, rounds);
        result.rows.push(row);
        console.error(
          `  ${row.ours} ${row.unit}${
            row.baseline === null ? "" : ` vs ${row.baseline} ${row.unit}`
          }, ratio ${
            row.ratio ?? "—"
          }, peak RSS growth ${row.peakRssGrowthMiB} MiB${
            row.baselinePeakRssGrowthMiB === null
              ? ""
              : ` (baseline ${row.baselinePeakRssGrowthMiB} MiB)`
          } (${((performance.now() - started) / 1000).toFixed(1)} s)`,
        );
        const note = c.note?.(row);
        if (note) result.notes.push(note);
      }
    } finally {
      await suite.close?.();
      const note = suite.note?.();
      if (note) result.notes.push(note);
    }
  }
  return result;
}

/**
 * Prints the table, then the notes, the suites skipped, and the machine.
 *
 * @example
 * ```ts ignore
 * import { printResult, runSuites } from "./run.ts";
 * import { coreSuite } from "./core.ts";
 *
 * printResult(await runSuites([coreSuite], { quick: true }));
 * ```
 */
export function printResult(result: RunResult): void {
  console.log(markdownTable(result.rows));
  if (result.notes.length) console.log();
  for (const note of result.notes) console.log(`- ${note}`);
  if (result.skipped.length) console.log();
  for (const s of result.skipped) console.log(`skipped ${s}`);
  console.log(`\n${machine()}, ${result.rounds} round(s), median`);
}

/**
 * The date, cores, memory and Deno version, as the report gives them.
 *
 * @example
 * ```ts
 * import { machine } from "./run.ts";
 *
 * console.log(machine());
 * ```
 */
export function machine(): string {
  return `${
    new Date().toISOString().slice(0, 10)
  }, ${navigator.hardwareConcurrency} cores, ${
    Math.round(Deno.systemMemoryInfo().total / 2 ** 30)
  } GiB, Deno ${Deno.version.deno}`;
}

/**
 * Writes the rows as a JSON array of `{ case, size, ours, baseline, ratio,
 * target, met, peakRssGrowthMiB }` (throughputs in MB/s, or ops/s for the
 * counted cases).
 *
 * @example
 * ```ts ignore
 * import { runSuites, writeJson } from "./run.ts";
 * import { coreSuite } from "./core.ts";
 *
 * await writeJson("results.json", (await runSuites([coreSuite], { quick: true })).rows);
 * ```
 */
export async function writeJson(path: string, rows: BenchRow[]): Promise<void> {
  await Deno.writeTextFile(
    path,
    JSON.stringify(
      rows.map(({ unit: _u, baselinePeakRssGrowthMiB: _b, ...row }) => row),
      null,
      2,
    ) + "\n",
  );
}

/**
 * The standalone entry of one suite: `deno run -A bench/<suite>.ts
 * [--quick] [--only TEXT] [--json FILE]`.
 *
 * @example
 * ```ts ignore
 * import { standalone } from "./run.ts";
 * import { coreSuite } from "./core.ts";
 *
 * if (import.meta.main) await standalone(coreSuite);
 * ```
 */
export async function standalone(suite: BenchSuite): Promise<void> {
  const options = parseArgs(Deno.args);
  const result = await runSuites([suite], options);
  printResult(result);
  if (options.json) await writeJson(options.json, result.rows);
}
