/**
 * `deno task test`: brings up the local test services (FerretDB, Swift and
 * Keystone on 127.0.0.1), runs the whole test suite (with `--doc`, so the
 * examples in doc comments and in the README run too), and stops what it
 * started. Extra arguments go to `deno test` (a filter, a file).
 *
 * A service that cannot be brought up fails the run in CI (`CI=true`); on a
 * laptop its suites skip with a message instead.
 */

import {
  run,
  type ServiceName,
  SERVICES,
  startServices,
  stopServices,
} from "./services.ts";

const inCI = Deno.env.get("CI") === "true";

let started: ServiceName[] = [];
let code = 1;
try {
  const services = await startServices(SERVICES);
  started = services.started;
  for (const name of services.failed) {
    if (inCI) throw new Error(`could not start ${name}`);
    console.error(`warning: ${name} did not start; its suites will skip`);
  }
  code = await run(Deno.execPath(), [
    "test",
    "-A",
    "--unstable-kv",
    "--doc", // the examples in doc comments and the README run as tests too
    ...Deno.args,
  ]);
} catch (err) {
  console.error(`error: ${err instanceof Error ? err.message : err}`);
} finally {
  await stopServices(started);
}
Deno.exit(code);
