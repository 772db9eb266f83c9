/**
 * A compact set of blob hashes for garbage collection.
 *
 * @module
 */

import { BadParamsError } from "./errors.ts";

const WORDS = 4; // each entry keeps the first 128 bits of its hash
const MAX_LOAD = 0.75;
const MIN_CAPACITY = 1024;

/**
 * The set of hashes that garbage collection must keep.
 *
 * It stores only the first 128 bits of each SHA-384 hash, in one flat
 * open-addressing table (16 bytes an entry plus one byte of occupancy, at
 * most 75% full), so a million hashes fit in about 34 MiB where a `Set` of
 * hex strings takes several times that. Two different hashes sharing their
 * first 128 bits would make `has` answer `true` for a hash never added: the
 * only effect is that GC keeps a blob it could have deleted, never the
 * reverse, and the odds of one such pair among a billion blobs are below
 * 10^-20.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { Refs } from "@blobstore/blobstore";
 *
 * const refs = new Refs();
 * refs.add("a".repeat(96));
 * assert(refs.has("a".repeat(96)));
 * assert(!refs.has("b".repeat(96)));
 * assert(refs.size === 1);
 * ```
 */
export class Refs {
  #keys: Uint32Array;
  #used: Uint8Array;
  #mask: number;
  #size = 0;
  #probe = new Uint32Array(WORDS);

  /** Creates an empty set sized for about `sizeHint` hashes (it grows as needed). */
  constructor(sizeHint = 0) {
    let capacity = MIN_CAPACITY;
    while (capacity * MAX_LOAD < sizeHint) capacity *= 2;
    this.#keys = new Uint32Array(capacity * WORDS);
    this.#used = new Uint8Array(capacity);
    this.#mask = capacity - 1;
  }

  /** The number of distinct hashes added. */
  get size(): number {
    return this.#size;
  }

  /**
   * Adds `hash` (96 lowercase hex characters); adding it again changes
   * nothing. An implausible hash is a `BadParamsError`.
   */
  add(hash: string): void {
    if (!parseKey(hash, this.#probe)) {
      throw new BadParamsError(`implausible hash ${JSON.stringify(hash)}`);
    }
    if (this.#find(this.#probe) >= 0) return;
    if ((this.#size + 1) > (this.#mask + 1) * MAX_LOAD) this.#grow();
    this.#insert(this.#probe);
    this.#size++;
  }

  /** Reports whether `hash` was added. Any string is accepted. */
  has(hash: string): boolean {
    if (!parseKey(hash, this.#probe)) return false;
    return this.#find(this.#probe) >= 0;
  }

  #find(key: Uint32Array): number {
    const keys = this.#keys;
    for (let slot = key[0] & this.#mask;; slot = (slot + 1) & this.#mask) {
      if (!this.#used[slot]) return -1;
      const at = slot * WORDS;
      if (
        keys[at] === key[0] && keys[at + 1] === key[1] &&
        keys[at + 2] === key[2] && keys[at + 3] === key[3]
      ) return slot;
    }
  }

  #insert(key: Uint32Array): void {
    let slot = key[0] & this.#mask;
    while (this.#used[slot]) slot = (slot + 1) & this.#mask;
    this.#used[slot] = 1;
    this.#keys.set(key, slot * WORDS);
  }

  #grow(): void {
    const oldKeys = this.#keys;
    const oldUsed = this.#used;
    const capacity = oldUsed.length * 2;
    this.#keys = new Uint32Array(capacity * WORDS);
    this.#used = new Uint8Array(capacity);
    this.#mask = capacity - 1;
    for (let slot = 0; slot < oldUsed.length; slot++) {
      if (oldUsed[slot]) {
        this.#insert(oldKeys.subarray(slot * WORDS, slot * WORDS + WORDS));
      }
    }
  }
}

/** The value of each lowercase hex digit by character code; 255 elsewhere. */
const HEX = new Uint8Array(128).fill(255);
for (let i = 0; i < 16; i++) HEX["0123456789abcdef".charCodeAt(i)] = i;

/**
 * Checks that `hash` is 96 lowercase hex digits and writes its first 128
 * bits into `out` as four words, in one pass over the characters: this is
 * the hot loop of GC bookkeeping, and a regular expression plus substrings
 * for `parseInt` cost several times more.
 */
function parseKey(hash: string, out: Uint32Array): boolean {
  if (typeof hash !== "string" || hash.length !== 96) return false;
  let bad = 0;
  for (let i = 0, at = 0; i < WORDS; i++) {
    let word = 0;
    for (let j = 0; j < 8; j++) {
      const digit = HEX[hash.charCodeAt(at++)] ?? 255;
      bad |= digit;
      word = (word << 4) | digit;
    }
    out[i] = word;
  }
  for (let at = WORDS * 8; at < 96; at++) {
    bad |= HEX[hash.charCodeAt(at)] ?? 255;
  }
  return bad < 16;
}
