/**
 * Retrying Deno KV calls that a local SQLite KV refused as busy.
 *
 * Several `Deno.Kv` handles (in one process or many) may share one KV
 * file. SQLite lets one writer in at a time, and a local KV sometimes
 * reports the clash as `database is locked` instead of waiting its turn.
 * SQLite rolls such a transaction back whole, so running it again is safe;
 * the hosted KV on Deno Deploy never reports it.
 *
 * @module
 */

/** How long to keep retrying a busy KV before giving up, in ms. */
const BUSY_TIMEOUT_MS = 30_000;

/**
 * Reports whether `err` is a local KV's "database is locked" (SQLite busy).
 *
 * @example
 * ```ts
 * import { isBusyError } from "./busy.ts";
 *
 * console.assert(isBusyError(new TypeError("database is locked")));
 * console.assert(!isBusyError(new TypeError("Too many checks (max 100)")));
 * ```
 */
export function isBusyError(err: unknown): boolean {
  return err instanceof Error && /database is (locked|busy)/i.test(err.message);
}

/**
 * Runs `call` until it does not fail with a busy error, waiting 5 to 20 ms
 * (random, so handles that collided do not collide again in step) between
 * attempts, for at most 30 seconds.
 *
 * @example
 * ```ts
 * import { retryBusy } from "./busy.ts";
 *
 * const kv = await Deno.openKv(":memory:");
 * const result = await retryBusy(() => kv.atomic().set(["k"], 1).commit());
 * console.assert(result.ok);
 * kv.close();
 * ```
 */
export async function retryBusy<T>(call: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + BUSY_TIMEOUT_MS;
  for (;;) {
    try {
      return await call();
    } catch (err) {
      if (!isBusyError(err) || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 5 + Math.random() * 15));
    }
  }
}

/**
 * Commits `op`, retrying while the KV is busy. A failed check is a result
 * (`ok: false`), not an error: the caller decides what it means.
 *
 * @example
 * ```ts
 * import { commit } from "./busy.ts";
 *
 * const kv = await Deno.openKv(":memory:");
 * const op = kv.atomic().check({ key: ["k"], versionstamp: null }).set(["k"], 1);
 * console.assert((await commit(op)).ok);
 * kv.close();
 * ```
 */
export function commit(
  op: Deno.AtomicOperation,
): Promise<Deno.KvCommitResult | Deno.KvCommitError> {
  return retryBusy(() => op.commit());
}
