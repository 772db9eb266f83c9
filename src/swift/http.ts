/**
 * HTTP plumbing shared by the Swift backend and its authentication: a
 * deadline for each request, and errors built from failed responses.
 *
 * @module
 */

import { BlobStoreError } from "../errors.ts";
import { retry, TimeoutError, withTimeout } from "../retry.ts";
import { redact, SwiftError } from "./error.ts";

/** The `fetch` the backend calls: the global one, or one injected for tests or Deno Deploy. */
export type FetchFn = (
  input: string | URL | Request,
  init?: RequestInit,
) => Promise<Response>;

/**
 * A request's abort switch and its deadline. The deadline starts when the
 * request has been sent in full ({@linkcode Deadline.start}), not before:
 * a streamed body takes as long as its producer takes, which is not
 * Swift's delay. It stops when the response headers arrive.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { Deadline } from "./http.ts";
 *
 * const deadline = new Deadline(1000, "GET object \"x\"");
 * deadline.start();
 * deadline.clear();
 * assert(!deadline.signal.aborted);
 * ```
 */
export class Deadline {
  readonly #controller = new AbortController();
  readonly #ms: number;
  readonly #operation: string;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** Creates a deadline of `ms` milliseconds for `operation`. */
  constructor(ms: number, operation: string) {
    this.#ms = ms;
    this.#operation = operation;
  }

  /** What the request does, for error messages. */
  get operation(): string {
    return this.#operation;
  }

  /** The signal to give `fetch`; aborted on timeout or by {@linkcode Deadline.abort}. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Starts counting (once the request is fully sent). */
  start(): void {
    if (this.#timer !== undefined || this.signal.aborted) return;
    this.#timer = setTimeout(() => {
      this.#controller.abort(
        new SwiftError(
          this.#operation,
          0,
          `no answer within ${this.#ms} ms (timeoutMs)`,
        ),
      );
    }, this.#ms);
  }

  /** Stops counting (the answer came, or the request is over). */
  clear(): void {
    clearTimeout(this.#timer);
  }

  /** Aborts the request now, e.g. because its body failed verification. */
  abort(reason: unknown): void {
    this.clear();
    if (!this.signal.aborted) this.#controller.abort(reason);
  }
}

/**
 * Calls `fetchFn` under `deadline` and returns the response once its
 * headers arrived. An abort rejects with the abort's reason; a network
 * error becomes a {@linkcode SwiftError} with status 0, its message
 * cleared of `secrets`. Unless `startNow` is false, the deadline starts at
 * once (the request has no body to stream).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { Deadline, send } from "./http.ts";
 *
 * const fakeFetch = () => Promise.resolve(new Response("ok"));
 * const res = await send(fakeFetch, "http://127.0.0.1:1/", {}, new Deadline(1000, "GET"), []);
 * assert(res.status === 200);
 * ```
 */
export async function send(
  fetchFn: FetchFn,
  url: string,
  init: RequestInit,
  deadline: Deadline,
  secrets: Iterable<string | undefined>,
  startNow = true,
): Promise<Response> {
  if (startNow) deadline.start();
  try {
    return await fetchFn(url, { ...init, signal: deadline.signal });
  } catch (err) {
    if (deadline.signal.aborted) throw deadline.signal.reason;
    const message = err instanceof Error ? err.message : String(err);
    throw new SwiftError(
      deadline.operation,
      0,
      redact(message, secrets),
      { cause: err },
    );
  } finally {
    deadline.clear();
  }
}

/**
 * Reads the text of a failed response (bounded, with `secrets` redacted) and
 * returns the {@linkcode SwiftError} for it.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { errorFromResponse } from "./http.ts";
 *
 * const err = await errorFromResponse("HEAD container \"c\"", new Response("nope", { status: 503 }), []);
 * assert(err.status === 503 && err.message.includes("nope"));
 * ```
 */
export async function errorFromResponse(
  operation: string,
  res: Response,
  secrets: Iterable<string | undefined>,
  timeoutMs = 60_000,
): Promise<SwiftError> {
  const text = await readText(res, timeoutMs, operation).catch(() => "");
  return new SwiftError(operation, res.status, redact(text, secrets));
}

/**
 * Reads a small response body (JSON, an error text) as text within
 * `timeoutMs`: a server that sent its headers and then stalled must not
 * hold the caller forever. On timeout the body is cancelled and a
 * {@linkcode SwiftError} with status 0 is thrown.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { readText } from "./http.ts";
 *
 * assert(await readText(new Response("[]"), 1000, "list") === "[]");
 * ```
 */
export async function readText(
  res: Response,
  timeoutMs: number,
  operation: string,
): Promise<string> {
  try {
    return await withTimeout(() => res.text(), timeoutMs, operation);
  } catch (err) {
    if (!(err instanceof TimeoutError)) throw err;
    await discard(res);
    throw new SwiftError(
      operation,
      0,
      `the answer's body stalled for ${timeoutMs} ms (timeoutMs)`,
      { cause: err },
    );
  }
}

/**
 * Passes `body` on, failing it with a {@linkcode SwiftError} (status 0)
 * when a read waits more than `timeoutMs` for the server's next bytes.
 * Only time spent waiting on the server counts: a slow consumer is never
 * timed out, as nothing is read until it asks (no read-ahead).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { idleTimeout } from "./http.ts";
 *
 * const body = idleTimeout(new Response("bytes").body!, 1000, "GET object");
 * assert(await new Response(body).text() === "bytes");
 * ```
 */
export function idleTimeout(
  body: ReadableStream<Uint8Array>,
  timeoutMs: number,
  operation: string,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await withTimeout(() => reader.read(), timeoutMs, operation);
      } catch (err) {
        throw bodyError(err, reader, timeoutMs, operation);
      }
      if (result.done) controller.close();
      else controller.enqueue(result.value);
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
}

/**
 * The typed error for a body that stopped: silent for too long (the read
 * is cancelled, so the connection is released), or cut by the network
 * (Swift or a proxy dying mid-answer surfaces as fetch's bare `TypeError`,
 * which callers must not have to tell from a bug of ours).
 */
function bodyError(
  err: unknown,
  reader: ReadableStreamDefaultReader<Uint8Array>,
  timeoutMs: number,
  operation: string,
): unknown {
  if (err instanceof TimeoutError) {
    reader.cancel(err).catch(() => {});
    return new SwiftError(
      operation,
      0,
      `no bytes from Swift for ${timeoutMs} ms (timeoutMs)`,
      { cause: err },
    );
  }
  if (err instanceof BlobStoreError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new SwiftError(
    operation,
    0,
    `reading the body failed: ${message}`,
    { cause: err },
  );
}

/**
 * How idempotent requests (GET, HEAD, DELETE, authentication) are retried
 * on connection errors and 5xx answers.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { RetryPolicy } from "./http.ts";
 *
 * const policy: RetryPolicy = { retries: 3, retryDelayMs: 200 };
 * assert(policy.retries === 3);
 * ```
 */
export interface RetryPolicy {
  /** Attempts after the first (0: never retry). */
  retries: number;
  /** The backoff before the first retry, doubled each time up to 16 times it. */
  retryDelayMs: number;
}

/**
 * Whether an HTTP status is worth retrying an idempotent request for: a
 * server error that may pass (500, 502, 503, 504, 507 and the like), not
 * 501 or 505, which will not change.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { isRetryableStatus } from "./http.ts";
 *
 * assert(isRetryableStatus(503) && !isRetryableStatus(501) && !isRetryableStatus(404));
 * ```
 */
export function isRetryableStatus(status: number): boolean {
  return status >= 500 && status <= 599 && status !== 501 && status !== 505;
}

/**
 * Whether `err` is a failure to reach the server (connection refused or
 * reset, DNS), as {@linkcode send} reports it: a {@linkcode SwiftError}
 * with status 0 and the network error as its cause. A timeout is not one:
 * retrying it would multiply the time limit.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { isConnectionFailure } from "./http.ts";
 * import { SwiftError } from "./error.ts";
 *
 * const refused = new SwiftError("GET", 0, "connection refused", { cause: new TypeError("refused") });
 * assert(isConnectionFailure(refused));
 * assert(!isConnectionFailure(new SwiftError("GET", 0, "no answer within 10 ms (timeoutMs)")));
 * ```
 */
export function isConnectionFailure(err: unknown): boolean {
  return err instanceof SwiftError && err.status === 0 &&
    err.cause instanceof TypeError;
}

/**
 * Sends an idempotent request with `attempt` (a fresh request each time)
 * and retries it per `policy` on a connection failure or a retryable
 * status, with exponential backoff and jitter. The last attempt's answer is
 * returned whatever its status; the last connection failure is thrown.
 * Never use it for a request whose body is a stream, or that is not
 * idempotent: its effect could happen twice.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { sendIdempotent } from "./http.ts";
 *
 * let calls = 0;
 * const res = await sendIdempotent(
 *   () => Promise.resolve(new Response(null, { status: ++calls < 2 ? 503 : 204 })),
 *   { retries: 3, retryDelayMs: 1 },
 * );
 * assert(res.status === 204 && calls === 2);
 * ```
 */
export function sendIdempotent(
  attempt: () => Promise<Response>,
  policy: RetryPolicy,
): Promise<Response> {
  const attempts = policy.retries + 1;
  return retry(async (n) => {
    const res = await attempt();
    if (isRetryableStatus(res.status) && n + 1 < attempts) {
      await discard(res);
      throw new RetryableAnswer(res.status);
    }
    return res;
  }, {
    attempts,
    baseDelayMs: policy.retryDelayMs,
    maxDelayMs: policy.retryDelayMs * 16,
    isRetryable: (err) =>
      err instanceof RetryableAnswer || isConnectionFailure(err),
  });
}

/** A 5xx answer that one more attempt may fix (never escapes sendIdempotent). */
class RetryableAnswer extends Error {
  constructor(readonly status: number) {
    super(`HTTP ${status}`);
  }
}

/**
 * Discards a response's body so its connection can be reused.
 *
 * @example
 * ```ts
 * import { discard } from "./http.ts";
 *
 * await discard(new Response("unused"));
 * ```
 */
export async function discard(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => {});
}
