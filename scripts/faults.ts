/**
 * `deno task faults`: the fault-injection suite (tests/faults_test.ts) with
 * its services, through the test runner (which starts and releases the
 * shared FerretDB and Swift; the suite starts its own private FerretDB and
 * Swift proxies, one for Swift's API and one for S3's, beside them, and
 * kills only those).
 *
 *   deno task faults                 # the quick form (CI): a few minutes
 *   FAULTS_FULL=1 deno task faults   # the full form: many more faults
 *   FAULTS_SEED=123 deno task faults # replay the random choices of a run
 *
 * Extra arguments go to `deno test` (e.g. `--filter orphan`).
 */

const root = new URL("..", import.meta.url).pathname;
const started = Date.now();
const child = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "-A",
    `${root}scripts/run_tests.ts`,
    `${root}tests/faults_test.ts`,
    ...Deno.args,
  ],
  cwd: root,
  env: {
    BLOBSTORE_FAULTS: Deno.env.get("FAULTS_FULL") === "1" ? "full" : "quick",
  },
  stdin: "null",
  stdout: "inherit",
  stderr: "inherit",
}).spawn();
const { code } = await child.status;
console.log(
  `faults: ${code === 0 ? "passed" : "FAILED"} in ${
    ((Date.now() - started) / 1000).toFixed(0)
  } s`,
);
Deno.exit(code);
