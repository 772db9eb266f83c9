/**
 * `deno task test`: brings up the local test services (FerretDB, Swift and
 * Keystone on 127.0.0.1), runs the whole test suite (with `--doc`, so the
 * examples in doc comments and in the README run too), and stops what it
 * started. Extra arguments go to `deno test` (a filter, a file).
 *
 * A service that cannot be brought up fails the run in CI (`CI=true`); on a
 * laptop its suites skip with a message instead. So do the npm packages
 * some suites load (tus-js-client, which Deno fetches from the npm
 * registry on first use): they are fetched first, and when that fails the
 * run fails in CI, and on a laptop leaves out the suites that need them,
 * saying so (they would not type-check).
 */

import {
  run,
  type ServiceName,
  SERVICES,
  startServices,
  stopServices,
} from "./services.ts";

const inCI = Deno.env.get("CI") === "true";

/** npm packages some suites need: the module that loads each, and those suites. */
const NPM_SUITES = [{
  name: "tus-js-client",
  loader: "tests/tus_js_client.ts",
  suites: ["tests/tus_client_test.ts", "tests/browser_tus_test.ts"],
}];

/** `--ignore=` for the suites whose npm package cannot be had (none in CI: it throws). */
async function npmSuitesToLeaveOut(): Promise<string[]> {
  const out: string[] = [];
  for (const { name, loader, suites } of NPM_SUITES) {
    if (await run(Deno.execPath(), ["cache", "--quiet", loader]) === 0) {
      continue;
    }
    const why = `the npm package ${name} could not be fetched (see above)`;
    if (inCI) throw new Error(`${why}; CI=true: suites never skip in CI`);
    console.error(
      `warning: ${why}; leaving out ${suites.join(", ")} (run again online)`,
    );
    out.push(loader, ...suites);
  }
  return out.length ? [`--ignore=${out.join(",")}`] : [];
}

let started: ServiceName[] = [];
let code = 1;
try {
  const services = await startServices(SERVICES);
  started = services.started;
  for (const name of services.failed) {
    if (inCI) throw new Error(`could not start ${name}`);
    console.error(`warning: ${name} did not start; its suites will skip`);
  }
  const leftOut = await npmSuitesToLeaveOut();
  code = await run(Deno.execPath(), [
    "test",
    "-A",
    "--unstable-kv",
    "--doc", // the examples in doc comments and the README run as tests too
    ...leftOut,
    ...Deno.args,
  ]);
} catch (err) {
  console.error(`error: ${err instanceof Error ? err.message : err}`);
} finally {
  await stopServices(started);
}
Deno.exit(code);
