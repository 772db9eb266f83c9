/**
 * Reading the `Repr-Digest` request field (RFC 9530): a structured-field
 * dictionary (RFC 8941) of digests by algorithm, each a byte sequence,
 * like `sha-384=:<base64 of the 48 digest bytes>:`.
 *
 * @module
 */

import { HttpError } from "./errors.ts";

/**
 * The SHA-384 a `Repr-Digest` field value declares, as 96 lowercase hex
 * digits, or `undefined` when the field is absent or names only other
 * algorithms (RFC 9530 lets a recipient ignore those: only SHA-384, the
 * hash blobs are named by, is verified). Throws an `HttpError` 400 when
 * the field is not a valid dictionary, or its `sha-384` member is not a
 * byte sequence of 48 bytes. Of duplicate members, the last counts, as
 * RFC 8941 says.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { reprDigestSha384 } from "./repr_digest.ts";
 *
 * const value = `sha-256=:${"A".repeat(43)}=:, sha-384=:${"A".repeat(64)}:`;
 * assert.strictEqual(reprDigestSha384(value), "00".repeat(48));
 * assert.strictEqual(reprDigestSha384(null), undefined);
 * assert.throws(() => reprDigestSha384("sha-384=abc"), /byte sequence/);
 * ```
 */
export function reprDigestSha384(value: string | null): string | undefined {
  if (value === null) return undefined;
  const members = parseDictionary(value);
  const raw = members.get("sha-384");
  if (raw === undefined) return undefined;
  const match = raw.match(/^:([A-Za-z0-9+/]*={0,2}):$/);
  const bytes = match ? decodeBase64(match[1]) : undefined;
  if (!bytes || bytes.length !== 48) {
    throw bad(
      `its sha-384 member must be a byte sequence of 48 bytes, like sha-384=:<64 base64 characters>:, got ${
        JSON.stringify(raw.slice(0, 120))
      }`,
    );
  }
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The members of a structured-field dictionary, each key with its value
 * as written (parameters dropped; a key without a value has `?1`, boolean
 * true). Strict where it matters here (keys, separators, strings, inner
 * lists), so a value never swallows its neighbour.
 */
function parseDictionary(text: string): Map<string, string> {
  const members = new Map<string, string>();
  let at = skipSpaces(text, 0, " ");
  if (at === text.length) throw bad("it is empty");
  for (;;) {
    const key = matchAt(KEY, text, at);
    if (key === undefined) {
      throw bad(
        `expected a lowercase key at character ${at}, got ${
          JSON.stringify(text.slice(at, at + 20))
        }`,
      );
    }
    at += key.length;
    let value = "?1";
    if (text[at] === "=") {
      const end = itemEnd(text, at + 1);
      value = text.slice(at + 1, end);
      at = end;
    }
    at = skipParameters(text, at);
    members.set(key, value);
    at = skipSpaces(text, at, " \t");
    if (at === text.length) return members;
    if (text[at] !== ",") {
      throw bad(
        `expected "," after member ${key}, got ${
          JSON.stringify(text.slice(at, at + 20))
        }`,
      );
    }
    at = skipSpaces(text, at + 1, " \t");
    if (at === text.length) throw bad("it ends with a comma");
  }
}

const KEY = /[a-z*][a-z0-9_\-.*]*/y;
/** A bare item other than a string or byte sequence: token, number, boolean. */
const BARE = /[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]*|-?\d+(?:\.\d+)?|\?[01]/y;
const BYTES = /:[A-Za-z0-9+/]*={0,2}:/y;

function matchAt(
  pattern: RegExp,
  text: string,
  at: number,
): string | undefined {
  pattern.lastIndex = at;
  return pattern.exec(text)?.[0];
}

/** Where the item (or inner list) starting at `at` ends. */
function itemEnd(text: string, at: number): number {
  if (text[at] === "(") {
    at = skipSpaces(text, at + 1, " ");
    while (text[at] !== ")") {
      if (at >= text.length) throw bad("an inner list is not closed");
      at = skipParameters(text, bareItemEnd(text, at));
      if (text[at] !== " " && text[at] !== ")") {
        throw bad(`expected " " or ")" in an inner list at character ${at}`);
      }
      at = skipSpaces(text, at, " ");
    }
    return at + 1;
  }
  return bareItemEnd(text, at);
}

function bareItemEnd(text: string, at: number): number {
  if (text[at] === '"') {
    for (let i = at + 1; i < text.length; i++) {
      if (text[i] === "\\") i++;
      else if (text[i] === '"') return i + 1;
    }
    throw bad("a string is not closed");
  }
  const item = matchAt(BYTES, text, at) ?? matchAt(BARE, text, at);
  if (item === undefined) {
    throw bad(
      `expected a value (a byte sequence like :…:, a token, a number or a string) at character ${at}, got ${
        JSON.stringify(text.slice(at, at + 20))
      }`,
    );
  }
  return at + item.length;
}

function skipParameters(text: string, at: number): number {
  while (text[at] === ";") {
    at = skipSpaces(text, at + 1, " ");
    const key = matchAt(KEY, text, at);
    if (key === undefined) throw bad(`expected a parameter key at ${at}`);
    at += key.length;
    if (text[at] === "=") at = bareItemEnd(text, at + 1);
  }
  return at;
}

function skipSpaces(text: string, at: number, spaces: string): number {
  while (at < text.length && spaces.includes(text[at])) at++;
  return at;
}

function decodeBase64(text: string): Uint8Array | undefined {
  try {
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}

function bad(why: string): HttpError {
  return new HttpError(
    400,
    "bad_digest",
    `invalid Repr-Digest (expected a dictionary like sha-384=:<base64>:; ${why})`,
  );
}
