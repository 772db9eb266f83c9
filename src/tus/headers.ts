/**
 * The tus 1.0.0 protocol's constants and the request headers that carry
 * numbers and versions, read strictly: a malformed header is a 400 that
 * says what was expected and what was got.
 *
 * @module
 */

import { HttpError } from "../http/errors.ts";

/** The protocol version spoken, in `Tus-Resumable` and `Tus-Version`. */
export const TUS_VERSION = "1.0.0";

/** The extensions announced in `Tus-Extension`. */
export const TUS_EXTENSIONS: readonly string[] = [
  "creation",
  "creation-with-upload",
  "expiration",
  "termination",
  "checksum",
];

/** The media type of a body that carries upload bytes. */
export const OFFSET_OCTET_STREAM = "application/offset+octet-stream";

/**
 * Checks that a request speaks tus 1.0.0 (`Tus-Resumable: 1.0.0`): else a
 * 412 carrying `Tus-Version`, as the protocol says.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { checkTusResumable } from "./headers.ts";
 *
 * checkTusResumable(new Request("http://x/", { headers: { "tus-resumable": "1.0.0" } }));
 * assert.throws(() => checkTusResumable(new Request("http://x/")), /Tus-Resumable/);
 * ```
 */
export function checkTusResumable(req: Request): void {
  const version = req.headers.get("tus-resumable");
  if (version?.trim() === TUS_VERSION) return;
  throw new HttpError(
    412,
    "unsupported_version",
    `unsupported tus version (expected Tus-Resumable: ${TUS_VERSION}, got ${
      version === null ? "none" : JSON.stringify(version.slice(0, 100))
    })`,
    { "tus-version": TUS_VERSION },
  );
}

/**
 * The non-negative integer a header says (`Upload-Length`,
 * `Upload-Offset`, `Content-Length`), or `undefined` when it is absent.
 * Digits only, as the protocol's grammar has it (`1e3`, `+5`, `0x10`, a
 * list are 400s); past 2^53 − 1 it is a 400 too.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { headerCount } from "./headers.ts";
 *
 * const req = new Request("http://x/", { headers: { "upload-offset": "42" } });
 * assert.strictEqual(headerCount(req, "Upload-Offset"), 42);
 * assert.strictEqual(headerCount(req, "Upload-Length"), undefined);
 * ```
 */
export function headerCount(req: Request, name: string): number | undefined {
  const value = req.headers.get(name);
  if (value === null) return undefined;
  const text = value.trim();
  const count = /^\d{1,16}$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(count)) {
    throw new HttpError(
      400,
      "bad_request",
      `invalid ${name} (expected a non-negative integer of at most ${Number.MAX_SAFE_INTEGER}, got ${
        JSON.stringify(value.slice(0, 100))
      })`,
    );
  }
  return count;
}

/**
 * Like {@linkcode headerCount}, for a header that must be there: absent is
 * a 400 naming it.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { requiredCount } from "./headers.ts";
 *
 * assert.throws(() => requiredCount(new Request("http://x/"), "Upload-Offset"), /missing Upload-Offset/);
 * ```
 */
export function requiredCount(req: Request, name: string): number {
  const count = headerCount(req, name);
  if (count !== undefined) return count;
  throw new HttpError(
    400,
    "bad_request",
    `missing ${name} (expected a non-negative integer)`,
  );
}

/**
 * Whether a `Content-Type` value is `application/offset+octet-stream`
 * (parameters and case aside).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { isOffsetOctetStream } from "./headers.ts";
 *
 * assert(isOffsetOctetStream("Application/Offset+Octet-Stream; x=1"));
 * assert(!isOffsetOctetStream("application/octet-stream"));
 * assert(!isOffsetOctetStream(null));
 * ```
 */
export function isOffsetOctetStream(value: string | null): boolean {
  return value?.split(";")[0].trim().toLowerCase() === OFFSET_OCTET_STREAM;
}

/**
 * A date as HTTP writes it (RFC 9110's IMF-fixdate), for `Upload-Expires`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { httpDate } from "./headers.ts";
 *
 * assert.strictEqual(httpDate(new Date(Date.UTC(2030, 0, 2, 3, 4, 5))), "Wed, 02 Jan 2030 03:04:05 GMT");
 * ```
 */
export function httpDate(date: Date): string {
  return date.toUTCString();
}
