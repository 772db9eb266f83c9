/**
 * Retrying idempotent requests with exponential backoff, and bounding how
 * long an operation may take.
 *
 * Only requests that can be sent twice with the same effect (GET, HEAD,
 * DELETE, a token fetch) may go through {@linkcode retry}: a request whose
 * answer was lost may have taken effect, and a put whose body was a
 * one-shot stream cannot be sent again without buffering it.
 *
 * @module
 */

import { BlobStoreError } from "./errors.ts";

/**
 * An operation did not finish within its time limit.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { BlobStoreError } from "./errors.ts";
 * import { TimeoutError } from "./retry.ts";
 *
 * const err = new TimeoutError("GET object \"x\"", 5000);
 * assert(err instanceof BlobStoreError && err.ms === 5000);
 * ```
 */
export class TimeoutError extends BlobStoreError {
  /** The limit that was exceeded, in milliseconds. */
  readonly ms: number;

  /** Creates the error for `operation`, which took longer than `ms`. */
  constructor(operation: string, ms: number, options?: ErrorOptions) {
    super(`${operation}: no result within ${ms} ms`, options);
    this.ms = ms;
  }
}

/**
 * How {@linkcode retry} retries.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { RetryOptions } from "./retry.ts";
 *
 * const options: RetryOptions = { attempts: 3, baseDelayMs: 50 };
 * assert(options.attempts === 3);
 * ```
 */
export interface RetryOptions {
  /** How many times to try in all, the first included (default 4). */
  attempts?: number;
  /** The backoff before the first retry, doubled each time (default 100 ms). */
  baseDelayMs?: number;
  /** The greatest backoff (default 2000 ms). */
  maxDelayMs?: number;
  /**
   * Whether a failure is worth another attempt (default: every failure).
   * Say no to anything that will fail the same way again.
   */
  isRetryable?: (err: unknown) => boolean;
  /** Called before each backoff, e.g. to log (the failure, the attempt that failed, the delay). */
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  /** Stops retrying (the current attempt still runs to its end). */
  signal?: AbortSignal;
}

/**
 * The backoff before retry number `attempt` (0 for the first retry): a
 * random delay up to `baseDelayMs * 2^attempt`, capped at `maxDelayMs`
 * ("full jitter", so that clients failing together do not retry together).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { backoffDelay } from "./retry.ts";
 *
 * assert(backoffDelay(3, 100, 2000, () => 0.5) === 400);
 * assert(backoffDelay(10, 100, 2000, () => 0.999) < 2000);
 * ```
 */
export function backoffDelay(
  attempt: number,
  baseDelayMs: number,
  maxDelayMs: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** attempt);
  return Math.floor(random() * ceiling);
}

/**
 * Runs `op` until it succeeds, retrying with exponential backoff when it
 * fails with an error `isRetryable` accepts, at most `attempts` times in
 * all; then throws the last failure. `op` receives the attempt number,
 * from 0. Use it only for idempotent operations.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { retry } from "./retry.ts";
 *
 * let calls = 0;
 * const answer = await retry(async () => {
 *   if (++calls < 3) throw new Error("connection reset");
 *   return 42;
 * }, { baseDelayMs: 1 });
 * assert(answer === 42 && calls === 3);
 * ```
 */
export async function retry<T>(
  op: (attempt: number) => Promise<T>,
  options: RetryOptions = {},
): Promise<T> {
  const attempts = options.attempts ?? 4;
  const baseDelayMs = options.baseDelayMs ?? 100;
  const maxDelayMs = options.maxDelayMs ?? 2000;
  for (let attempt = 0;; attempt++) {
    try {
      return await op(attempt);
    } catch (err) {
      const last = attempt + 1 >= attempts || options.signal?.aborted;
      if (last || !(options.isRetryable?.(err) ?? true)) throw err;
      const delay = backoffDelay(attempt, baseDelayMs, maxDelayMs);
      options.onRetry?.(err, attempt, delay);
      await sleep(delay, options.signal);
    }
  }
}

/**
 * Runs `op` with a time limit: after `ms` milliseconds its signal is
 * aborted and the returned promise rejects with a {@linkcode TimeoutError}
 * naming `operation`, whether or not `op` heeds the signal. Pass the signal
 * on (to `fetch`, a driver call) so that the abandoned work stops too.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { TimeoutError, withTimeout } from "./retry.ts";
 *
 * const fast = await withTimeout(() => Promise.resolve("done"), 1000, "fast");
 * assert(fast === "done");
 * const slow = withTimeout(() => new Promise(() => {}), 10, "slow");
 * await assert.rejects(slow, TimeoutError);
 * ```
 */
export async function withTimeout<T>(
  op: (signal: AbortSignal) => Promise<T>,
  ms: number,
  operation: string,
): Promise<T> {
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new TimeoutError(operation, ms);
      controller.abort(err);
      reject(err);
    }, ms);
  });
  try {
    return await Promise.race([op(controller.signal), expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits `ms` milliseconds, or less if `signal` aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
