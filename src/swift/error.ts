/**
 * The error a Swift or Keystone request fails with, and the hook that has
 * the request layer throw it.
 *
 * @module
 */

import { ServiceError } from "../errors.ts";
import type { ServiceHook } from "../request.ts";

/** How much of a response's text an error keeps: enough to diagnose. */
const MAX_TEXT = 500;

/**
 * A request to Swift or Keystone failed: an unexpected HTTP status (with
 * the server's response text), a network error or a timeout. Its message
 * never contains a password or a token. A {@linkcode ServiceError}, so
 * `status` is the HTTP status, or 0 when no answer came.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { SwiftError } from "@blobstore/blobstore/swift";
 *
 * const err = new SwiftError("PUT object \"x\"", 503, "Service Unavailable");
 * assert(err.status === 503);
 * assert(err.message === "swift: PUT object \"x\" failed (expected success, got HTTP 503): Service Unavailable");
 * ```
 */
export class SwiftError extends ServiceError {
  /**
   * Creates the error for `operation` (what was attempted, e.g. `GET object
   * "x"`), the `status` got (0 for none) and the server's `text`.
   */
  constructor(
    operation: string,
    status: number,
    text: string,
    options?: ErrorOptions,
  ) {
    const detail = text.trim().slice(0, MAX_TEXT);
    const got = status === 0 ? "" : ` (expected success, got HTTP ${status})`;
    super(
      `swift: ${operation} failed${got}${detail ? `: ${detail}` : ""}`,
      status,
      options,
    );
  }
}

/**
 * Swift's hook into the request layer: its failures are
 * {@linkcode SwiftError}s.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { SWIFT } from "./error.ts";
 * import { SwiftError } from "@blobstore/blobstore/swift";
 *
 * assert(SWIFT.error("HEAD container \"c\"", 404, "") instanceof SwiftError);
 * ```
 */
export const SWIFT: ServiceHook<SwiftError> = {
  name: "Swift",
  error: (operation, status, text, options) =>
    new SwiftError(operation, status, text, options),
};
