/**
 * How the HTTP service reports errors: one JSON shape,
 * `{"error": code, "message": text}`, with the status mapped from the
 * store's error classes. A failure that is not the client's fault (among
 * them `CorruptBlobError`: storage returned bytes that are not what was
 * stored) is a 500 whose message says nothing of the internals (no stack,
 * no paths); the real error goes to the handler's `onError` hook.
 *
 * @module
 */

import {
  BadParamsError,
  ConflictError,
  HashMismatchError,
  IntegrityError,
  NotFoundError,
  RetryableError,
  SizeMismatchError,
} from "../errors.ts";

/**
 * An error that already knows its HTTP status and code: thrown by the
 * handler for conditions the store never sees (a missing Content-Length, a
 * body over the limit, malformed JSON, an unsatisfiable range).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { HttpError } from "./errors.ts";
 *
 * const err = new HttpError(411, "length_required", "Content-Length is required");
 * assert(err.status === 411);
 * ```
 */
export class HttpError extends Error {
  /** The response status. */
  readonly status: number;
  /** The machine-readable code sent as `error`. */
  readonly code: string;
  /** Extra response headers (`Allow`, `Content-Range`, `WWW-Authenticate`). */
  readonly headers: HeadersInit | undefined;

  /** Creates the error; `message` is sent to the client as is. */
  constructor(
    status: number,
    code: string,
    message: string,
    headers?: HeadersInit,
  ) {
    super(message);
    this.name = "HttpError";
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

/**
 * The request body failed while it was read: the client went away or sent
 * a broken stream. It marks the error as the client's, so it is answered
 * with a 400 rather than a 500 (the client is usually gone by then).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { RequestBodyError } from "./errors.ts";
 *
 * const err = new RequestBodyError(new Error("connection reset"));
 * assert(err.message.includes("connection reset"));
 * ```
 */
export class RequestBodyError extends Error {
  /** Wraps the error the body stream failed with. */
  constructor(cause: unknown) {
    super(
      `request body failed while reading (${
        cause instanceof Error ? cause.message : String(cause)
      })`,
      { cause },
    );
    this.name = "RequestBodyError";
  }
}

/**
 * The status, code and extra headers of each error class the store throws,
 * most specific first. `CorruptBlobError` is left out on purpose: storage
 * that lost or changed bytes is not the client's fault, so it is a bare 500
 * reported to `onError`.
 */
const STORE_ERRORS: [
  new (...args: never[]) => Error,
  number,
  string,
  HeadersInit?,
][] = [
  [NotFoundError, 404, "not_found"],
  [BadParamsError, 400, "bad_params"],
  [ConflictError, 409, "conflict"],
  [HashMismatchError, 422, "hash_mismatch"],
  [SizeMismatchError, 422, "size_mismatch"],
  [IntegrityError, 422, "integrity"],
  [RequestBodyError, 400, "bad_body"],
  // Lost a race with a concurrent gc: nothing was stored, a retry succeeds.
  [RetryableError, 503, "try_again", { "retry-after": "1" }],
];

const encoder = new TextEncoder();

/**
 * Builds a JSON response. It says its `Content-Length`, so that a `HEAD`
 * answered from it without its body keeps the same headers.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { jsonResponse } from "./errors.ts";
 *
 * const res = jsonResponse({ ok: true }, 201);
 * assert(res.status === 201 && res.headers.get("content-length") === "11");
 * ```
 */
export function jsonResponse(
  body: unknown,
  status = 200,
  headers?: HeadersInit,
): Response {
  const bytes = encoder.encode(JSON.stringify(body));
  const res = new Response(bytes, { status, headers });
  if (!res.headers.has("content-type")) {
    res.headers.set("content-type", "application/json");
  }
  res.headers.set("content-length", String(bytes.byteLength));
  res.headers.set("cache-control", "no-store");
  return res;
}

/**
 * Turns any thrown value into the JSON error response for it. Returns
 * `undefined` for an error that is not the client's fault (an unknown
 * error, a `CorruptBlobError`), so the caller can report it before
 * answering with {@linkcode internalErrorResponse}. A `RetryableError` is
 * a 503 `try_again` with `Retry-After: 1`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { errorResponse } from "./errors.ts";
 * import { CorruptBlobError, NotFoundError, RetryableError } from "../errors.ts";
 *
 * assert(errorResponse(new NotFoundError("blob x not found"))?.status === 404);
 * assert(errorResponse(new RetryableError("put it again"))?.headers.get("retry-after") === "1");
 * assert(errorResponse(new CorruptBlobError("object x is short")) === undefined);
 * assert(errorResponse(new Error("disk on fire")) === undefined);
 * ```
 */
export function errorResponse(err: unknown): Response | undefined {
  if (err instanceof HttpError) {
    return jsonResponse(
      { error: err.code, message: err.message },
      err.status,
      err.headers,
    );
  }
  for (const [type, status, code, headers] of STORE_ERRORS) {
    if (err instanceof type) {
      return jsonResponse(
        { error: code, message: err.message },
        status,
        headers,
      );
    }
  }
  return undefined;
}

/**
 * The answer to an unexpected failure: a 500 that reveals nothing.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { internalErrorResponse } from "./errors.ts";
 *
 * assert(internalErrorResponse().status === 500);
 * ```
 */
export function internalErrorResponse(): Response {
  return jsonResponse(
    { error: "internal", message: "internal server error" },
    500,
  );
}
