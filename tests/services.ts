/**
 * How test suites find the real services they need (FerretDB/MongoDB,
 * Swift, Keystone), and what they do when one is missing: fail loudly in CI
 * (`CI=true`), skip with a clear message on a laptop.
 *
 * `deno task test` starts the services through `scripts/` first; the
 * addresses below are theirs, always on 127.0.0.1.
 *
 * @module
 */

/** Whether we run in CI, where a missing service is a failure, not a skip. */
export const IN_CI = Deno.env.get("CI") === "true";

/** The MongoDB-protocol server for tests (FerretDB started by scripts/ferretdb.sh). */
export const MONGODB_URL = Deno.env.get("MONGODB_URL") ??
  "mongodb://127.0.0.1:27117/";

/**
 * Probes a service once. Returns `true` when `probe` succeeds. When it
 * fails, throws in CI (so the whole run fails) and otherwise prints why the
 * suite is skipped and returns `false`; use the result as `ignore: !ok`.
 */
export async function serviceAvailable(
  name: string,
  probe: () => Promise<void>,
): Promise<boolean> {
  try {
    await probe();
    return true;
  } catch (err) {
    const why = `${name} is not reachable: ${
      err instanceof Error ? err.message : String(err)
    }`;
    if (IN_CI) throw new Error(`${why} (CI=true: suites never skip in CI)`);
    console.error(
      `%cskipping ${name} suites: ${why}. Run \`deno task test\` to start it.`,
      "color: yellow",
    );
    return false;
  }
}
