/**
 * `deno task bench [--quick] [--only NAME] [--json FILE]`: brings up the
 * local services the tests use (FerretDB, Swift and Keystone on
 * 127.0.0.1, through `scripts/services.ts`), runs every benchmark suite
 * (core, embedded, mongo, swift, s3, http, and registry: the HTTP service
 * against the Docker registry, which the suite builds with Go), skipping
 * with its reason a suite whose service is missing, prints one markdown
 * table of ratios against raw baselines measured in the same run, and
 * releases the services.
 *
 * It reports; it never fails on a ratio (a failing case, a crash, does
 * fail). `--quick` (smaller sizes, one round) keeps the whole run under
 * two minutes, for CI.
 *
 * @module
 */

import { SERVICES, startServices, stopServices } from "../scripts/services.ts";
import { coreSuite } from "./core.ts";
import { embeddedSuite } from "./embedded.ts";
import { httpSuite } from "./http.ts";
import { mongoSuite } from "./mongo.ts";
import { multipartSuite } from "./multipart.ts";
import { registrySuite } from "./registry.ts";
import { parseArgs, printResult, runSuites, writeJson } from "./run.ts";
import { s3Suite } from "./s3.ts";
import { swiftSuite } from "./swift.ts";

const options = parseArgs(Deno.args);
const started = performance.now();
const services = await startServices(SERVICES);
for (const name of services.failed) {
  console.error(`warning: ${name} did not start; its suite will skip`);
}
try {
  const result = await runSuites(
    [
      coreSuite,
      embeddedSuite,
      mongoSuite,
      swiftSuite,
      s3Suite,
      httpSuite,
      multipartSuite,
      registrySuite,
    ],
    options,
  );
  printResult(result);
  console.log(
    `whole run: ${((performance.now() - started) / 1000).toFixed(0)} s${
      options.quick ? " (--quick)" : ""
    }`,
  );
  if (options.json) await writeJson(options.json, result.rows);
} finally {
  await stopServices(services.started);
}
