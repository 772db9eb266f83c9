/**
 * `deno task bench [--quick] [--only NAME] [--json FILE]`: runs every
 * benchmark case whose service is available, saying which it skipped and
 * why, and prints one markdown table of ratios against raw baselines
 * measured in the same run.
 *
 * @module
 */

import { coreSuite } from "./core.ts";
import {
  type BenchRow,
  type BenchSuite,
  markdownTable,
  runCase,
} from "./harness.ts";

const SUITES: BenchSuite[] = [coreSuite];

function parseArgs(args: string[]) {
  const options = {
    quick: false,
    only: undefined as string | undefined,
    json: undefined as string | undefined,
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--quick") options.quick = true;
    else if (arg === "--only") options.only = args[++i];
    else if (arg === "--json") options.json = args[++i];
    else {throw new Error(
        `unknown argument ${
          JSON.stringify(arg)
        } (expected --quick, --only NAME, --json FILE)`,
      );}
  }
  return options;
}

const options = parseArgs(Deno.args);
const rounds = options.quick ? 1 : 5;
const rows: BenchRow[] = [];
const skipped: string[] = [];
for (const suite of SUITES) {
  const cases = await suite.open({ quick: options.quick });
  if (typeof cases === "string") {
    skipped.push(`${suite.name}: ${cases}`);
    continue;
  }
  try {
    for (const c of cases) {
      if (
        options.only &&
        !c.name.toLowerCase().includes(options.only.toLowerCase())
      ) continue;
      console.error(
        `running ${c.name} (${rounds} round${rounds > 1 ? "s" : ""})`,
      );
      rows.push(await runCase(c, rounds));
    }
  } finally {
    await suite.close?.();
  }
}

console.log(markdownTable(rows));
for (const s of skipped) console.log(`\nskipped ${s}`);
console.log(
  `\n${
    new Date().toISOString().slice(0, 10)
  }, ${navigator.hardwareConcurrency} cores, ${
    Math.round(Deno.systemMemoryInfo().total / 2 ** 30)
  } GiB, Deno ${Deno.version.deno}, ${rounds} round(s), median`,
);
if (options.json) {
  await Deno.writeTextFile(
    options.json,
    JSON.stringify(rows.map(({ unit: _unit, ...row }) => row), null, 2) + "\n",
  );
}
