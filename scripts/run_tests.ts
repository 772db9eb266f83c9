/**
 * `deno task test`: brings up the local test services (FerretDB, Swift and
 * Keystone on 127.0.0.1), runs the whole test suite (with `--doc`, so the
 * examples in doc comments and in the README run too), and stops what it
 * started. Extra arguments go to `deno test` (a filter, a file).
 *
 * A service that cannot be brought up fails the run in CI (`CI=true`); on a
 * laptop its suites skip with a message instead.
 */

const SERVICES = ["ferretdb", "swift"] as const;
const root = new URL("..", import.meta.url).pathname;
const inCI = Deno.env.get("CI") === "true";
const skipServices = Deno.env.get("BLOBSTORE_NO_SERVICES") === "1";

async function run(cmd: string, args: string[]): Promise<number> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: root,
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  return (await child.status).code;
}

async function service(name: string, action: "start" | "stop") {
  const script = `${root}scripts/${name}.sh`;
  try {
    await Deno.stat(script);
  } catch {
    return true; // not part of this checkout yet
  }
  return (await run("bash", [script, action])) === 0;
}

const started: string[] = [];
let code = 1;
try {
  if (!skipServices) {
    for (const name of SERVICES) {
      if (await service(name, "start")) {
        started.push(name);
      } else if (inCI) {
        throw new Error(`could not start ${name}`);
      } else {
        console.error(`warning: ${name} did not start; its suites will skip`);
      }
    }
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
  for (const name of started.reverse()) await service(name, "stop");
}
Deno.exit(code);
