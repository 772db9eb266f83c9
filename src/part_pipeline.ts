/**
 * Cutting a stream into parts that are hashed as their bytes arrive and
 * stored while the next part arrives: the path of uploads whose client
 * does not say what the bytes hash to (`POST /blobs`, tus).
 *
 * Gathering a part first and hashing it after makes receiving, hashing
 * and storing take turns; here the part's own SHA-384 and the running
 * hash of the whole upload run on their jobs (worker threads for large
 * parts) while bytes come in, and a full part is stored while the next
 * fills. Memory: two parts.
 *
 * @module
 */

import { SizeMismatchError } from "./errors.ts";
import { type Hashing, type Sha384Job, startSha384 } from "./hashing.ts";

/** A full part, hashed, as {@linkcode PipelineOptions.store} gets it. */
export interface HashedPart {
  /** Its number. */
  part: number;
  /** Its bytes (a fresh array the callee may keep). */
  bytes: Uint8Array;
  /** Their SHA-384, hex. */
  hash: string;
  /**
   * The running hash's state after this part, when one runs (see
   * {@linkcode PipelineOptions.resume}).
   */
  state?: Uint8Array;
}

/** What {@linkcode pipeParts} does. */
export interface PipelineOptions {
  /** The number of the first part (at byte `first * partSize`). */
  first: number;
  /** The size of every part. */
  partSize: number;
  /**
   * The most bytes the source may have: more is a `SizeMismatchError`
   * (with this as the size expected), thrown once parts stored before are.
   */
  size: number;
  /**
   * The part that ends at or after this many bytes from the source's start
   * is not stored but returned as the rest, and the source must end within
   * it (else `SizeMismatchError`): a resumable upload's last part waits for
   * the end of its body. Default: every full part is stored.
   */
  holdFrom?: number;
  /** Where to hash. */
  hashing: Hashing;
  /**
   * The state of the running hash of everything before part `first`
   * (`null`: nothing before it), to extend over the parts stored;
   * `undefined`: no running hash.
   */
  resume: Uint8Array | null | undefined;
  /** Stores a part; called in order, one call at a time. */
  store(part: HashedPart): Promise<void>;
}

/**
 * Where a stream of parts stopped (see `Store.putParts`).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { PutPartsResult } from "@blobstore/blobstore";
 *
 * const result: PutPartsResult = { next: 2, hashes: ["…", "…"], rest: new Uint8Array(3) };
 * assert(result.failure === undefined && result.rest.byteLength === 3);
 * ```
 */
export interface PutPartsResult {
  /** The number of the first part not stored. */
  next: number;
  /** The hashes of the parts stored, in order. */
  hashes: string[];
  /** The bytes after the parts stored (at most one part's). */
  rest: Uint8Array;
  /** The source's error, when it failed (what arrived is in `rest`). */
  failure?: unknown;
}

/**
 * Reads `source` and stores it in full parts of `options.partSize` (see
 * {@linkcode PipelineOptions}); returns where it stopped and the bytes
 * that did not make a stored part. A failure of `source` is returned, not
 * thrown; a failure to hash or store is thrown, once the part being
 * stored has settled.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { pipeParts } from "./part_pipeline.ts";
 *
 * const stored: string[] = [];
 * const { next, hashes, rest } = await pipeParts(new Blob(["abcdefg"]).stream(), {
 *   first: 0,
 *   partSize: 3,
 *   size: 7,
 *   hashing: "inline",
 *   resume: undefined,
 *   store: async ({ bytes }) => void stored.push(new TextDecoder().decode(bytes)),
 * });
 * assert.deepStrictEqual(stored, ["abc", "def"]);
 * assert(next === 2 && new TextDecoder().decode(rest) === "g");
 * assert(hashes.length === 2);
 * ```
 */
export async function pipeParts(
  source: ReadableStream<Uint8Array>,
  options: PipelineOptions,
): Promise<PutPartsResult> {
  const { first, partSize, size, hashing } = options;
  const holdFrom = options.holdFrom ?? Infinity;
  const running = options.resume === undefined
    ? undefined
    : await startSha384({ hashing, resume: options.resume, size });
  let part = first;
  let buffer: Uint8Array | undefined;
  let filled = 0;
  let total = 0;
  let held = false;
  let plain: Sha384Job | undefined;
  // The part being stored; its failure stops the reading.
  let storing: Promise<void> = Promise.resolve();
  let storeError: { reason: unknown } | undefined;
  let failure: unknown;
  const hashes: string[] = [];
  const reader = source.getReader();
  try {
    for (;;) {
      let chunk: Uint8Array;
      try {
        const { value, done } = await reader.read();
        if (done) break;
        chunk = value;
      } catch (err) {
        failure = err;
        break;
      }
      if (storeError) throw storeError.reason;
      for (let at = 0; at < chunk.byteLength;) {
        if (!buffer) {
          buffer = new Uint8Array(partSize);
          filled = 0;
          held = (part - first + 1) * partSize >= holdFrom;
          plain = held ? undefined : await startSha384({
            hashing,
            size: partSize,
          });
        }
        if (filled === partSize) {
          // Only a held part stays full here: the source ends within it.
          throw new SizeMismatchError(total, total + chunk.byteLength - at);
        }
        const n = Math.min(chunk.byteLength - at, partSize - filled);
        total += n;
        if (total > size) throw new SizeMismatchError(size, total);
        const piece = chunk.subarray(at, at + n);
        buffer.set(piece, filled);
        filled += n;
        at += n;
        if (held) continue;
        await plain!.update(piece);
        await running?.update(piece);
        if (filled < partSize) continue;
        // A full part: its hashes settle and it is stored while the next
        // one arrives, after the part before it (the catalog's running
        // hash advances in order).
        const hashed = plain!.finish();
        const saved = running?.save();
        // Awaited in order below; a part behind one that failed never is.
        hashed.catch(() => {});
        saved?.catch(() => {});
        const bytes = buffer;
        const number = part;
        const before = storing;
        plain = undefined;
        buffer = undefined;
        part++;
        storing = (async () => {
          await before;
          const [{ digest }, state] = await Promise.all([hashed, saved]);
          await options.store({ part: number, bytes, hash: digest, state });
          hashes.push(digest);
        })();
        storing.catch((reason) => storeError ??= { reason });
        // At most one part waits to be stored while this one fills.
        await before;
      }
    }
    await storing;
  } catch (err) {
    await reader.cancel(err).catch(() => {});
    await storing.catch(() => {});
    throw storeError?.reason ?? err;
  } finally {
    plain?.abort();
    running?.abort();
    reader.releaseLock();
  }
  const rest = buffer?.subarray(0, filled) ?? new Uint8Array(0);
  return failure === undefined
    ? { next: part, hashes, rest }
    : { next: part, hashes, rest, failure };
}
