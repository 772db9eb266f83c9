/**
 * Fresh names for backend objects and upload ids.
 *
 * @module
 */

/**
 * Returns `bytes` random bytes as lowercase hex (twice as many characters).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { randomHex } from "./names.ts";
 *
 * assert(/^[0-9a-f]{16}$/.test(randomHex(8)));
 * ```
 */
export function randomHex(bytes: number): string {
  const buf = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(buf, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Returns a fresh backend name for a blob of `hash`: the hash, a dash and 16
 * random hex characters. The random part lets two concurrent puts of the
 * same content write side by side without clobbering each other; the loser
 * of the race removes its own copy. The hash prefix lets an orphan sweep
 * tell which blob an unreferenced object was meant to be.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { newBlobName } from "./names.ts";
 *
 * const name = newBlobName("a".repeat(96));
 * assert(/^a{96}-[0-9a-f]{16}$/.test(name));
 * ```
 */
export function newBlobName(hash: string): string {
  return `${hash}-${randomHex(8)}`;
}

/**
 * Returns the hash part of a name made by {@linkcode newBlobName}, or
 * `undefined` for a name of another shape.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { hashOfBlobName, newBlobName } from "./names.ts";
 *
 * assert(hashOfBlobName(newBlobName("a".repeat(96))) === "a".repeat(96));
 * assert(hashOfBlobName("other") === undefined);
 * ```
 */
export function hashOfBlobName(name: string): string | undefined {
  return /^([0-9a-f]{96})-[0-9a-f]{16}$/.exec(name)?.[1];
}

/**
 * Returns a fresh upload id: 32 random hex characters.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { newUploadId } from "./names.ts";
 *
 * assert(newUploadId().length === 32);
 * ```
 */
export function newUploadId(): string {
  return randomHex(16);
}
