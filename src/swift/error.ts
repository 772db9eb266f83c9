/**
 * The error a Swift or Keystone request fails with, and the redaction that
 * keeps credentials out of it.
 *
 * @module
 */

import { BlobStoreError } from "../errors.ts";

/** How much of a response's text an error keeps: enough to diagnose. */
const MAX_TEXT = 500;

/**
 * A request to Swift or Keystone failed: an unexpected HTTP status (with
 * the server's response text), a network error or a timeout. Its message
 * never contains a password or a token.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { SwiftError } from "./error.ts";
 *
 * const err = new SwiftError("PUT object \"x\"", 503, "Service Unavailable");
 * assert(err.status === 503);
 * assert(err.message.includes("503") && err.message.includes("Service Unavailable"));
 * ```
 */
export class SwiftError extends BlobStoreError {
  /** The HTTP status Swift answered with, or 0 when no answer came. */
  readonly status: number;

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
      options,
    );
    this.status = status;
  }
}

/**
 * Returns `text` with every occurrence of each secret (password, token)
 * replaced by `***`, so that an echoing server or a URL in a network error
 * cannot leak one into a message or a log.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { redact } from "./error.ts";
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
    // very short "secrets" would redact ordinary words; real ones are longer
    if (secret && secret.length >= 4) result = result.replaceAll(secret, "***");
  }
  return result;
}
