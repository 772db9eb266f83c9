/**
 * The tus checksum extension: `Upload-Checksum: <algorithm> <base64
 * digest>` on a `PATCH`, the digest of that request's body.
 *
 * @module
 */

import { HttpError } from "../http/errors.ts";

/** The algorithms announced in `Tus-Checksum-Algorithm`, by tus name. */
export const CHECKSUM_ALGORITHMS = {
  sha1: { webName: "SHA-1", bytes: 20 },
  sha384: { webName: "SHA-384", bytes: 48 },
} as const;

/** A tus checksum algorithm this service supports. */
export type ChecksumAlgorithm = keyof typeof CHECKSUM_ALGORITHMS;

/** A parsed `Upload-Checksum`. */
export interface UploadChecksum {
  /** The algorithm named. */
  algorithm: ChecksumAlgorithm;
  /** The digest the body must have. */
  digest: Uint8Array;
}

/**
 * Parses an `Upload-Checksum` value, or gives `undefined` when absent.
 * An algorithm other than those of {@linkcode CHECKSUM_ALGORITHMS} is a
 * 400, as the protocol says, and so is a digest that is not the base64 of
 * that algorithm's length.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { parseUploadChecksum } from "./checksum.ts";
 *
 * const checksum = parseUploadChecksum(`sha1 ${btoa("\0".repeat(20))}`);
 * assert.strictEqual(checksum?.algorithm, "sha1");
 * assert.strictEqual(parseUploadChecksum(null), undefined);
 * assert.throws(() => parseUploadChecksum("md5 AAAA"), /unsupported checksum algorithm/);
 * ```
 */
export function parseUploadChecksum(
  value: string | null,
): UploadChecksum | undefined {
  if (value === null) return undefined;
  const match = value.trim().match(/^(\S+) +(\S+)$/);
  if (!match) {
    throw bad(
      `invalid Upload-Checksum (expected "<algorithm> <base64 digest>", got ${
        JSON.stringify(value.slice(0, 100))
      })`,
    );
  }
  const name = match[1].toLowerCase();
  if (!Object.hasOwn(CHECKSUM_ALGORITHMS, name)) {
    throw bad(
      `unsupported checksum algorithm ${
        JSON.stringify(match[1].slice(0, 50))
      } (expected one of ${Object.keys(CHECKSUM_ALGORITHMS).join(", ")})`,
    );
  }
  const algorithm = name as ChecksumAlgorithm;
  const digest = decodeBase64(match[2]);
  const length = CHECKSUM_ALGORITHMS[algorithm].bytes;
  if (digest?.length !== length) {
    throw bad(
      `invalid Upload-Checksum digest (expected the base64 of ${length} bytes for ${algorithm}, got ${
        JSON.stringify(match[2].slice(0, 100))
      })`,
    );
  }
  return { algorithm, digest };
}

/**
 * Whether `bytes` have the digest `checksum` names.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { checksumMatches } from "./checksum.ts";
 *
 * const bytes = new TextEncoder().encode("abc");
 * const digest = new Uint8Array(await crypto.subtle.digest("SHA-1", bytes));
 * assert(await checksumMatches({ algorithm: "sha1", digest }, bytes));
 * assert(!(await checksumMatches({ algorithm: "sha1", digest }, bytes.subarray(1))));
 * ```
 */
export async function checksumMatches(
  checksum: UploadChecksum,
  bytes: Uint8Array<ArrayBuffer>,
): Promise<boolean> {
  const { webName } = CHECKSUM_ALGORITHMS[checksum.algorithm];
  const actual = new Uint8Array(await crypto.subtle.digest(webName, bytes));
  return actual.length === checksum.digest.length &&
    actual.every((byte, i) => byte === checksum.digest[i]);
}

function decodeBase64(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined;
  try {
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}

function bad(message: string): HttpError {
  return new HttpError(400, "bad_checksum", message);
}
