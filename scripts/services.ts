/**
 * The local test services (FerretDB, Swift and Keystone on 127.0.0.1), as
 * the test runner and the benchmarks bring them up: `bash
 * scripts/<name>.sh start` and `stop`. The scripts count their users (the
 * process that called `start`, here this one), so `stop` only releases
 * this process's use, and a server goes only when its last user is gone:
 * parallel runs never pull one from under another.
 *
 * Each script waits itself until its servers answer (swift.sh: the
 * tempauth, Keystone and S3/TempURL proxies), so a `start` that succeeded
 * means ready. `chromium` starts nothing: its `start` installs Debian's
 * headless Chromium when missing, for tests/browser_test.ts, which
 * launches a browser per case itself.
 *
 * @module
 */

/** The services, in the order they are started. */
export const SERVICES = ["ferretdb", "swift", "chromium"] as const;

/** A service's name. */
export type ServiceName = typeof SERVICES[number];

const root = new URL("..", import.meta.url).pathname;

/** Runs `cmd` in the repository root with inherited output; returns its exit code. */
export async function run(cmd: string, args: string[]): Promise<number> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: root,
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  return (await child.status).code;
}

/**
 * Runs `bash scripts/<name>.sh <action>`; returns whether it succeeded (a
 * script missing from this checkout counts as success: nothing to do).
 *
 * @example
 * ```ts ignore
 * import { service } from "./services.ts";
 *
 * if (await service("ferretdb", "start")) {
 *   // ... use 127.0.0.1:27117 ...
 *   await service("ferretdb", "stop");
 * }
 * ```
 */
export async function service(
  name: ServiceName,
  action: "start" | "stop",
): Promise<boolean> {
  const script = `${root}scripts/${name}.sh`;
  try {
    await Deno.stat(script);
  } catch {
    return true; // not part of this checkout yet
  }
  return (await run("bash", [script, action])) === 0;
}

/**
 * Starts every service in `names`; returns those that started (or already
 * answered), to hand to {@linkcode stopServices}, and the ones that did
 * not. `BLOBSTORE_NO_SERVICES=1` starts none and reports none missing.
 *
 * @example
 * ```ts ignore
 * import { SERVICES, startServices, stopServices } from "./services.ts";
 *
 * const { started, failed } = await startServices(SERVICES);
 * try {
 *   for (const name of failed) console.error(`${name} did not start`);
 * } finally {
 *   await stopServices(started);
 * }
 * ```
 */
export async function startServices(
  names: readonly ServiceName[],
): Promise<{ started: ServiceName[]; failed: ServiceName[] }> {
  const started: ServiceName[] = [];
  const failed: ServiceName[] = [];
  if (Deno.env.get("BLOBSTORE_NO_SERVICES") === "1") return { started, failed };
  for (const name of names) {
    if (await service(name, "start")) started.push(name);
    else failed.push(name);
  }
  return { started, failed };
}

/**
 * Releases this process's use of each service in `started`, in reverse
 * order.
 *
 * @example
 * ```ts ignore
 * import { startServices, stopServices } from "./services.ts";
 *
 * const { started } = await startServices(["ferretdb"]);
 * await stopServices(started);
 * ```
 */
export async function stopServices(
  started: readonly ServiceName[],
): Promise<void> {
  for (const name of [...started].reverse()) await service(name, "stop");
}
