/**
 * Requests over `fetch` to a storage service (Swift, and S3 next), with
 * what each such backend needs and none should write again: a deadline for
 * every answer, retries with backoff for idempotent requests, error texts
 * read within bounds, a time limit on silent response bodies, and secrets
 * kept out of every message. A service supplies one small hook, a
 * {@linkcode ServiceHook}, that turns a failure into its own
 * {@linkcode ServiceError} subclass; {@linkcode HttpClient} does the rest.
 *
 * @module
 */

import { BlobStoreError, ServiceError } from "./errors.ts";
import { retry, TimeoutError, withTimeout } from "./retry.ts";

/**
 * The `fetch` a backend calls: the global one, or one injected for tests
 * or Deno Deploy.
 *
 * @example A fetch that logs each request
 * ```ts
 * import assert from "node:assert";
 * import type { FetchFn } from "@blobstore/blobstore/swift";
 *
 * const seen: string[] = [];
 * const logged: FetchFn = (input, init) => {
 *   seen.push(`${init?.method ?? "GET"} ${input}`);
 *   return Promise.resolve(new Response(null, { status: 204 }));
 * };
 * await logged("http://127.0.0.1:1/x", { method: "HEAD" });
 * assert(seen[0] === "HEAD http://127.0.0.1:1/x");
 * ```
 */
export type FetchFn = (
  input: string | URL | Request,
  init?: RequestInit,
) => Promise<Response>;

/**
 * What a service tells the request layer: its name, and how a failure
 * becomes the service's own error. `error` gets what was attempted
 * (`operation`, e.g. `GET object "x"`), the HTTP `status` got (0 when no
 * answer came) and a text: the server's answer, with secrets already
 * redacted, or what went wrong.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { ServiceError } from "./errors.ts";
 * import type { ServiceHook } from "./request.ts";
 *
 * const hook: ServiceHook = {
 *   name: "Example",
 *   error: (operation, status, text, options) =>
 *     new ServiceError(`example: ${operation} failed (HTTP ${status}): ${text}`, status, options),
 * };
 * assert(hook.error("GET x", 503, "busy").status === 503);
 * ```
 */
export interface ServiceHook<E extends ServiceError = ServiceError> {
  /** The service's name, as messages say it ("Swift"). */
  readonly name: string;
  /** The service's error for a failed `operation`. */
  error(
    operation: string,
    status: number,
    text: string,
    options?: ErrorOptions,
  ): E;
}

/**
 * How an {@linkcode HttpClient} sends.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { HttpOptions } from "./request.ts";
 *
 * const options: HttpOptions = { timeoutMs: 30_000, retries: 2, secrets: () => ["s3cret!"] };
 * assert(options.retries === 2);
 * ```
 */
export interface HttpOptions {
  /** The `fetch` to call (default: the global one). */
  fetch?: FetchFn;
  /**
   * How long to wait for the server, in ms (default 60 000): for an answer
   * once a request is fully sent, and for the next bytes of an answer's
   * body. Only time spent waiting on the server counts.
   */
  timeoutMs?: number;
  /**
   * How many times an idempotent request is retried after a connection
   * failure or a 5xx answer (default 3; 0 never retries).
   */
  retries?: number;
  /** The backoff before the first retry in ms, doubled up to 16 times it, with jitter (default 200). */
  retryDelayMs?: number;
  /** What must never appear in a message (passwords, tokens); asked anew for each error. */
  secrets?: () => Iterable<string | undefined>;
}

/** The methods retried by default (RFC 9110's idempotent ones but PUT: see HttpClient.request). */
const IDEMPOTENT_METHODS = new Set(["GET", "HEAD", "DELETE"]);

/**
 * How much of a failed answer's body is read for its error: plenty to
 * diagnose, and a server answering an error with gigabytes cannot fill the
 * memory (services cut the text shorter still, e.g. SwiftError).
 */
const MAX_ERROR_BYTES = 8192;

/**
 * Sends requests to one service: each answer awaited within `timeoutMs`,
 * idempotent requests retried, failures turned into the service's errors
 * by its {@linkcode ServiceHook}, with secrets redacted.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { ServiceError } from "./errors.ts";
 * import { HttpClient } from "./request.ts";
 *
 * let calls = 0;
 * const http = new HttpClient(
 *   { name: "Example", error: (op, status, text) => new ServiceError(`${op}: ${status} ${text}`, status) },
 *   {
 *     fetch: () => Promise.resolve(new Response("busy", { status: ++calls < 2 ? 503 : 404 })),
 *     retryDelayMs: 1,
 *   },
 * );
 * const res = await http.request("GET x", "http://127.0.0.1:1/x", { method: "GET" });
 * assert(calls === 2); // the 503 was retried
 * const err = await http.errorFrom("GET x", res);
 * assert(err.status === 404 && err.message === "GET x: 404 busy");
 * ```
 */
export class HttpClient<E extends ServiceError = ServiceError> {
  /** How long to wait for the server, in ms (see {@linkcode HttpOptions.timeoutMs}). */
  readonly timeoutMs: number;
  readonly #hook: ServiceHook<E>;
  readonly #fetch: FetchFn;
  readonly #retries: number;
  readonly #retryDelayMs: number;
  readonly #secrets: () => Iterable<string | undefined>;

  /** Creates the client of the service `hook` speaks for. */
  constructor(hook: ServiceHook<E>, options: HttpOptions = {}) {
    this.#hook = hook;
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.#retries = options.retries ?? 3;
    this.#retryDelayMs = options.retryDelayMs ?? 200;
    this.#secrets = options.secrets ?? (() => []);
  }

  /** A new deadline of `timeoutMs` for `operation`, for {@linkcode HttpClient.upload}. */
  deadline(operation: string): Deadline {
    return new Deadline(this.timeoutMs, operation, this.#hook);
  }

  /**
   * Sends a request whose body can be sent again (none, or a string) and
   * returns the answer once its headers arrived, whatever its status. An
   * idempotent request (by default GET, HEAD and DELETE) is retried on a
   * connection failure or a retryable status ({@linkcode isRetryableStatus}),
   * with exponential backoff; the last answer is returned, the last
   * connection failure thrown. A PUT is not retried by default: its answer
   * may have been lost after it took effect, and its caller knows better
   * what to do. Pass `idempotent: true` for a request that is safe to send
   * twice all the same (a POST that only issues a token).
   */
  request(
    operation: string,
    url: string,
    init: { method?: string; headers?: Record<string, string>; body?: string },
    { idempotent = IDEMPOTENT_METHODS.has(init.method ?? "GET") } = {},
  ): Promise<Response> {
    const once = () => this.#send(url, init, this.deadline(operation), true);
    return idempotent ? this.#retried(once) : once();
  }

  /**
   * Sends a request whose body streams, once (a consumed stream cannot be
   * sent again), under `deadline`, which the body starts when it has been
   * sent in full: a streamed body takes as long as its producer takes,
   * which is not the server's delay. Aborting the deadline (the body
   * failed) aborts the request, so the server discards what it got.
   */
  upload(
    url: string,
    init: RequestInit,
    deadline: Deadline,
  ): Promise<Response> {
    return this.#send(url, init, deadline, false);
  }

  /** The service's error for `operation`, `text` cleared of secrets. */
  error(
    operation: string,
    status: number,
    text: string,
    options?: ErrorOptions,
  ): E {
    return this.#hook.error(
      operation,
      status,
      redact(text, this.#secrets()),
      options,
    );
  }

  /**
   * The service's error for a failed answer, with the first bytes of its
   * body (read within `timeoutMs`; the rest is discarded).
   */
  async errorFrom(operation: string, res: Response): Promise<E> {
    const { text, cut } = await this.#errorText(res);
    let clean = redact(text, this.#secrets());
    // a secret cut in two by the bound would escape redaction: drop the
    // tail that could hold its first part
    if (cut) clean = clean.slice(0, -longest(this.#secrets()) || undefined);
    return this.#hook.error(operation, res.status, clean);
  }

  /**
   * Reads a small answer (JSON, a token document) as text within
   * `timeoutMs`: a server that sent its headers and then stalled must not
   * hold the caller forever. On timeout the body is cancelled and the
   * service's error (status 0) is thrown.
   */
  async readText(res: Response, operation: string): Promise<string> {
    try {
      return await withTimeout(() => res.text(), this.timeoutMs, operation);
    } catch (err) {
      if (!(err instanceof TimeoutError)) throw err;
      await discard(res);
      throw this.#hook.error(
        operation,
        0,
        `the answer's body stalled for ${this.timeoutMs} ms (timeoutMs)`,
        { cause: err },
      );
    }
  }

  /**
   * The answer's body, failing with the service's error (status 0) when a
   * read waits more than `timeoutMs` for the server's next bytes, or when
   * the network cuts it. Only time spent waiting on the server counts: a
   * slow consumer is never timed out, as nothing is read until it asks (no
   * read-ahead).
   */
  watch(res: Response, operation: string): ReadableStream<Uint8Array> {
    if (!res.body) return new Blob([]).stream();
    const reader = res.body.getReader();
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        let result: ReadableStreamReadResult<Uint8Array>;
        try {
          result = await withTimeout(
            () => reader.read(),
            this.timeoutMs,
            operation,
          );
        } catch (err) {
          throw this.#bodyError(err, reader, operation);
        }
        if (result.done) controller.close();
        else controller.enqueue(result.value);
      },
      cancel: (reason) => reader.cancel(reason),
    }, { highWaterMark: 0 });
  }

  /**
   * Calls fetch under `deadline`. An abort rejects with the abort's reason
   * (a timeout, or the body's own failure); a network error becomes the
   * service's error with status 0 and the network error as its cause.
   */
  async #send(
    url: string,
    init: RequestInit,
    deadline: Deadline,
    startNow: boolean,
  ): Promise<Response> {
    if (startNow) deadline.start();
    try {
      return await this.#fetch(url, { ...init, signal: deadline.signal });
    } catch (err) {
      if (deadline.signal.aborted) throw deadline.signal.reason;
      const message = err instanceof Error ? err.message : String(err);
      throw this.error(deadline.operation, 0, message, { cause: err });
    } finally {
      deadline.clear();
    }
  }

  #retried(attempt: () => Promise<Response>): Promise<Response> {
    const attempts = this.#retries + 1;
    return retry(async (n) => {
      const res = await attempt();
      if (isRetryableStatus(res.status) && n + 1 < attempts) {
        await discard(res);
        throw new RetryableAnswer(res.status);
      }
      return res;
    }, {
      attempts,
      baseDelayMs: this.#retryDelayMs,
      maxDelayMs: this.#retryDelayMs * 16,
      isRetryable: (err) =>
        err instanceof RetryableAnswer || isConnectionFailure(err),
    });
  }

  /** Up to MAX_ERROR_BYTES of the body as text ("" when it fails or stalls). */
  async #errorText(res: Response): Promise<{ text: string; cut: boolean }> {
    const reader = res.body?.getReader();
    if (!reader) return { text: "", cut: false };
    try {
      return await withTimeout(
        () => readAtMost(reader, MAX_ERROR_BYTES),
        this.timeoutMs,
        "reading an error text",
      );
    } catch {
      return { text: "", cut: false };
    } finally {
      // releases the connection, and ends a read the timeout left pending
      await reader.cancel().catch(() => {});
    }
  }

  /**
   * The typed error for a body that stopped: silent for too long (the read
   * is cancelled, so the connection is released), or cut by the network
   * (the server or a proxy dying mid-answer surfaces as fetch's bare
   * `TypeError`, which callers must not have to tell from a bug of ours).
   */
  #bodyError(
    err: unknown,
    reader: ReadableStreamDefaultReader<Uint8Array>,
    operation: string,
  ): unknown {
    if (err instanceof TimeoutError) {
      reader.cancel(err).catch(() => {});
      return this.#hook.error(
        operation,
        0,
        `no bytes from ${this.#hook.name} for ${this.timeoutMs} ms (timeoutMs)`,
        { cause: err },
      );
    }
    if (err instanceof BlobStoreError) return err;
    const message = err instanceof Error ? err.message : String(err);
    return this.error(operation, 0, `reading the body failed: ${message}`, {
      cause: err,
    });
  }
}

/**
 * A request's abort switch and its deadline. The deadline starts when the
 * request has been sent in full ({@linkcode Deadline.start}), not before:
 * a streamed body takes as long as its producer takes, which is not the
 * server's delay. It stops when the response headers arrive. On timeout
 * the request is aborted with the service's error (status 0).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { ServiceError } from "./errors.ts";
 * import { Deadline } from "./request.ts";
 *
 * const hook = { name: "Example", error: (op: string, status: number, text: string) => new ServiceError(`${op}: ${text}`, status) };
 * const deadline = new Deadline(10, "GET x", hook);
 * deadline.start();
 * await new Promise((resolve) => setTimeout(resolve, 50));
 * assert(deadline.signal.reason instanceof ServiceError);
 * assert(deadline.signal.reason.message === "GET x: no answer within 10 ms (timeoutMs)");
 * ```
 */
export class Deadline {
  readonly #controller = new AbortController();
  readonly #ms: number;
  readonly #operation: string;
  readonly #hook: ServiceHook;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** Creates a deadline of `ms` milliseconds for `operation` of the service `hook` speaks for. */
  constructor(ms: number, operation: string, hook: ServiceHook) {
    this.#ms = ms;
    this.#operation = operation;
    this.#hook = hook;
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
        this.#hook.error(
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
 * Whether an HTTP status is worth retrying an idempotent request for: a
 * server error that may pass (500, 502, 503, 504, 507 and the like), not
 * 501 or 505, which will not change.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { isRetryableStatus } from "./request.ts";
 *
 * assert(isRetryableStatus(503) && !isRetryableStatus(501) && !isRetryableStatus(404));
 * ```
 */
export function isRetryableStatus(status: number): boolean {
  return status >= 500 && status <= 599 && status !== 501 && status !== 505;
}

/**
 * Whether `err` is a failure to reach the server (connection refused or
 * reset, DNS), as {@linkcode HttpClient} reports it: a
 * {@linkcode ServiceError} with status 0 and the network error as its
 * cause. A timeout is not one: retrying it would multiply the time limit.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { ServiceError } from "./errors.ts";
 * import { isConnectionFailure } from "./request.ts";
 *
 * const refused = new ServiceError("GET x failed: connection refused", 0, { cause: new TypeError("refused") });
 * assert(isConnectionFailure(refused));
 * assert(!isConnectionFailure(new ServiceError("GET x failed: no answer within 10 ms (timeoutMs)", 0)));
 * ```
 */
export function isConnectionFailure(err: unknown): boolean {
  return err instanceof ServiceError && err.status === 0 &&
    err.cause instanceof TypeError;
}

/**
 * Returns `text` with every occurrence of each secret (password, token)
 * replaced by `***`, so that an echoing server or a URL in a network error
 * cannot leak one into a message or a log.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { redact } from "./request.ts";
 *
 * assert(redact("bad token AUTH_tk123", ["AUTH_tk123"]) === "bad token ***");
 * ```
 */
export function redact(
  text: string,
  secrets: Iterable<string | undefined>,
): string {
  let result = text;
  for (const secret of secrets) {
    if (isSecret(secret)) result = result.replaceAll(secret, "***");
  }
  return result;
}

/**
 * Discards a response's body so its connection can be reused.
 *
 * @example
 * ```ts
 * import { discard } from "./request.ts";
 *
 * await discard(new Response("unused"));
 * ```
 */
export async function discard(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => {});
}

/** Very short "secrets" would redact ordinary words; real ones are longer. */
function isSecret(secret: string | undefined): secret is string {
  return secret !== undefined && secret.length >= 4;
}

/** The length of the longest secret (0 when none). */
function longest(secrets: Iterable<string | undefined>): number {
  let length = 0;
  for (const secret of secrets) {
    if (isSecret(secret)) length = Math.max(length, secret.length);
  }
  return length;
}

/** Up to `limit` bytes of a body as text (whole chunks: a little more at most). */
async function readAtMost(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  limit: number,
): Promise<{ text: string; cut: boolean }> {
  const decoder = new TextDecoder();
  let text = "";
  let length = 0;
  while (length < limit) {
    const { done, value } = await reader.read();
    if (done) return { text: text + decoder.decode(), cut: false };
    text += decoder.decode(value, { stream: true });
    length += value.byteLength;
  }
  return { text, cut: true };
}

/** A 5xx answer that one more attempt may fix (never escapes HttpClient). */
class RetryableAnswer extends Error {
  constructor(readonly status: number) {
    super(`HTTP ${status}`);
  }
}

/**
 * `text` parsed as JSON, or `undefined` when it is not JSON: a service's
 * answer is data to check, never trusted to be well formed.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { parseJson } from "./request.ts";
 *
 * assert.deepStrictEqual(parseJson('{"a":1}'), { a: 1 });
 * assert(parseJson("<html>") === undefined);
 * ```
 */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
