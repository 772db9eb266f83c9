/**
 * HTTP plumbing shared by the Swift backend and its authentication: a
 * deadline for each request, and errors built from failed responses.
 *
 * @module
 */

import { redact, SwiftError } from "./swift_error.ts";

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
 * import { Deadline } from "./swift_http.ts";
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
 * import { Deadline, send } from "./swift_http.ts";
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
 * import { errorFromResponse } from "./swift_http.ts";
 *
 * const err = await errorFromResponse("HEAD container \"c\"", new Response("nope", { status: 503 }), []);
 * assert(err.status === 503 && err.message.includes("nope"));
 * ```
 */
export async function errorFromResponse(
  operation: string,
  res: Response,
  secrets: Iterable<string | undefined>,
): Promise<SwiftError> {
  const text = await res.text().catch(() => "");
  return new SwiftError(operation, res.status, redact(text, secrets));
}

/**
 * Discards a response's body so its connection can be reused.
 *
 * @example
 * ```ts
 * import { discard } from "./swift_http.ts";
 *
 * await discard(new Response("unused"));
 * ```
 */
export async function discard(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => {});
}
