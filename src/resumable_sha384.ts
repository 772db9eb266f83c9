/**
 * A SHA-384 whose state can be saved as bytes and resumed elsewhere: in
 * another process, on another machine, after a restart.
 *
 * `node:crypto` hashes faster but cannot export its state, so the running
 * hash of a multipart upload (saved in the catalog as parts complete) is
 * computed with `hash-wasm`'s WebAssembly SHA-384, whose `save`/`load` are
 * the state format stored here. Its digests are byte-exact with
 * `node:crypto`'s; the tests check that on random splits and NIST vectors.
 *
 * @module
 */

import { createSHA384, type IHasher } from "hash-wasm";
import { BadParamsError } from "./errors.ts";

/**
 * An incremental SHA-384 whose state can be saved and resumed.
 *
 * @example Hash in two sittings
 * ```ts
 * import assert from "node:assert";
 * import { ResumableSha384, sha384 } from "@blobstore/blobstore";
 *
 * const first = await ResumableSha384.create();
 * first.update(new TextEncoder().encode("hello, "));
 * const saved: Uint8Array = first.save();
 *
 * const later = await ResumableSha384.create(saved);
 * later.update(new TextEncoder().encode("world"));
 * assert(later.digest() === await sha384(new TextEncoder().encode("hello, world")));
 * ```
 */
export class ResumableSha384 {
  #hasher: IHasher;
  #bytes: number;

  private constructor(hasher: IHasher, bytes: number) {
    this.#hasher = hasher;
    this.#bytes = bytes;
  }

  /**
   * Starts a hash, fresh or resumed from `state` (as {@linkcode save}
   * returned it). A state that is not one throws `BadParamsError`.
   */
  static async create(state?: Uint8Array): Promise<ResumableSha384> {
    const hasher = await createSHA384();
    if (!state) {
      hasher.init();
      return new ResumableSha384(hasher, 0);
    }
    if (!(state instanceof Uint8Array)) {
      throw new BadParamsError(
        `invalid SHA-384 state (expected a Uint8Array, got ${typeof state})`,
      );
    }
    try {
      hasher.load(state);
    } catch (err) {
      throw new BadParamsError(
        `invalid SHA-384 state (expected ${STATE_SIZE} bytes saved by ResumableSha384, got ${state.byteLength} bytes: ${
          err instanceof Error ? err.message : err
        })`,
      );
    }
    return new ResumableSha384(hasher, -1);
  }

  /** Hashes `chunk` after everything hashed so far. */
  update(chunk: Uint8Array): this {
    this.#hasher.update(chunk);
    if (this.#bytes >= 0) this.#bytes += chunk.byteLength;
    return this;
  }

  /**
   * The number of bytes hashed since {@linkcode create} started afresh;
   * -1 for a resumed state, whose earlier count this object does not know.
   */
  get bytes(): number {
    return this.#bytes;
  }

  /** Saves the state: resume it with {@linkcode ResumableSha384.create}. */
  save(): Uint8Array {
    return this.#hasher.save();
  }

  /**
   * The lowercase hex SHA-384 of everything hashed. The state stays as it
   * was: more may be hashed after, and saved.
   */
  digest(): string {
    const state = this.#hasher.save();
    const hex = this.#hasher.digest("hex");
    this.#hasher.load(state);
    return hex;
  }
}

/** The size of a saved state (hash-wasm 4.13's SHA-384). */
export const STATE_SIZE = 212;
