/**
 * tus `Upload-Metadata`: comma-separated pairs of a key and a base64
 * value (`filename d29ybGQudHh0,is_confidential`), kept as sent, and the
 * `sha384` key the service reads and adds (the base64 of the blob's 96
 * hex digits).
 *
 * @module
 */

import { HttpError } from "../http/errors.ts";

/**
 * Parsed `Upload-Metadata`: each key with its value as sent, still in
 * base64 (`""` for a key sent without a value), in the order sent.
 */
export type Metadata = [key: string, value: string][];

/**
 * The longest `Upload-Metadata` accepted, in characters: the metadata is
 * kept in the upload's record, which a catalog stores in one value (Deno
 * KV's are at most 64 KiB), so it is bounded well below that.
 */
export const MAX_METADATA_LENGTH = 8 * 1024;

/** The metadata key of the blob's SHA-384 (its 96 hex digits, in base64). */
export const SHA384_KEY = "sha384";

/**
 * Parses an `Upload-Metadata` value. Keys are printable ASCII without
 * spaces or commas, unique; values are base64 (standard alphabet, padded)
 * or absent. Anything else, or a value over
 * {@linkcode MAX_METADATA_LENGTH} characters, is a 400. Absent or blank:
 * no metadata.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { parseMetadata } from "./metadata.ts";
 *
 * assert.deepStrictEqual(parseMetadata("filename d29ybGQudHh0,is_confidential"), [
 *   ["filename", "d29ybGQudHh0"],
 *   ["is_confidential", ""],
 * ]);
 * assert.throws(() => parseMetadata("filename not*base64"), /base64/);
 * ```
 */
export function parseMetadata(header: string | null): Metadata {
  if (header === null || header.trim() === "") return [];
  if (header.length > MAX_METADATA_LENGTH) {
    throw bad(
      `at most ${MAX_METADATA_LENGTH} characters, got ${header.length}`,
    );
  }
  const pairs: Metadata = [];
  const seen = new Set<string>();
  for (const member of header.split(",")) {
    const match = member.trim().match(/^([\x21-\x2b\x2d-\x7e]+)(?: (.*))?$/);
    if (!match) {
      throw bad(
        `each pair a key of printable ASCII without spaces or commas, then optionally a space and a value; got ${
          JSON.stringify(member.slice(0, 100))
        }`,
      );
    }
    const [, key, value = ""] = match;
    if (value !== "" && !isBase64(value)) {
      throw bad(
        `the value of ${JSON.stringify(key)} in base64, got ${
          JSON.stringify(value.slice(0, 100))
        }`,
      );
    }
    if (seen.has(key)) {
      throw bad(`unique keys, got ${JSON.stringify(key)} twice`);
    }
    seen.add(key);
    pairs.push([key, value]);
  }
  return pairs;
}

/**
 * The metadata as an `Upload-Metadata` value.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { formatMetadata } from "./metadata.ts";
 *
 * assert.strictEqual(formatMetadata([["a", "Yg=="], ["flag", ""]]), "a Yg==,flag");
 * ```
 */
export function formatMetadata(metadata: Metadata): string {
  return metadata.map(([key, value]) => value === "" ? key : `${key} ${value}`)
    .join(",");
}

/**
 * The hash the client declared with a `sha384` key (the base64 of 96 hex
 * digits, either case), in lowercase, or `undefined` without one. A value
 * that is not that is a 400.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { declaredSha384 } from "./metadata.ts";
 *
 * const hash = "ab".repeat(48);
 * assert.strictEqual(declaredSha384([["sha384", btoa(hash.toUpperCase())]]), hash);
 * assert.strictEqual(declaredSha384([["filename", "eA=="]]), undefined);
 * assert.throws(() => declaredSha384([["sha384", btoa("abc")]]), /96 hex digits/);
 * ```
 */
export function declaredSha384(metadata: Metadata): string | undefined {
  const value = metadata.find(([key]) => key === SHA384_KEY)?.[1];
  if (value === undefined) return undefined;
  const text = value === "" ? "" : atob(value);
  if (!/^[0-9a-fA-F]{96}$/.test(text)) {
    throw bad(
      `the value of ${SHA384_KEY} to be the base64 of the blob's SHA-384 in 96 hex digits, got the base64 of ${
        JSON.stringify(text.slice(0, 100))
      }`,
    );
  }
  return text.toLowerCase();
}

/**
 * The metadata with `sha384` set to `hash` (in base64, as tus values are),
 * in place of any the client sent.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { withSha384 } from "./metadata.ts";
 *
 * const hash = "0".repeat(96);
 * assert.deepStrictEqual(withSha384([["a", ""]], hash), [["a", ""], ["sha384", btoa(hash)]]);
 * ```
 */
export function withSha384(metadata: Metadata, hash: string): Metadata {
  return [
    ...metadata.filter(([key]) => key !== SHA384_KEY),
    [SHA384_KEY, btoa(hash)],
  ];
}

function isBase64(text: string): boolean {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    return false;
  }
  try {
    atob(text);
    return true;
  } catch {
    return false;
  }
}

function bad(expected: string): HttpError {
  return new HttpError(
    400,
    "bad_metadata",
    `invalid Upload-Metadata (expected ${expected})`,
  );
}
