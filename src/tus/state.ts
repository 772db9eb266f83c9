/**
 * A tus upload is a store multipart upload: what it is (its length,
 * metadata and part size) lives in the record's `info`, written once at
 * creation; where it stands is derived from its part records alone, so
 * that a restarted server, or another one sharing the catalog, finds it
 * where the last acknowledged byte left it.
 *
 * The parts are cut at fixed boundaries: part `i` holds bytes
 * `[i × partSize, (i + 1) × partSize)`. Parts `0 … k−1` are complete; part
 * `k` may be recorded incomplete, its blob holding the bytes that arrived
 * after the last boundary (the "tail"), replaced by a longer one at each
 * `PATCH` until the part fills and is completed.
 *
 * @module
 */

import type { PartRecord } from "../catalog.ts";
import { ConflictError } from "../errors.ts";
import type { Metadata } from "./metadata.ts";

/** What a tus upload is, kept as JSON in its upload record's `info`. */
export interface TusInfo {
  /** The version of this shape. */
  v: 1;
  /** `Upload-Length`: the size of the whole blob. */
  length: number;
  /** `Upload-Metadata`, as sent. */
  metadata: Metadata;
  /** The size of every part but the last. */
  partSize: number;
}

/**
 * The part size of a tus upload of `length` bytes: 8 MiB (`minPart`), or
 * the store's least part size if larger, or larger still so that the
 * store's `maxParts` parts hold the whole.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { tusPartSize } from "./state.ts";
 *
 * const limits = { minPartSize: 5 << 20, maxParts: 400 };
 * assert.strictEqual(tusPartSize(100, limits, 8 << 20), 8 << 20);
 * assert.strictEqual(tusPartSize(2 ** 32, limits, 8 << 20), Math.ceil(2 ** 32 / 400));
 * ```
 */
export function tusPartSize(
  length: number,
  limits: { minPartSize: number; maxParts: number },
  minPart: number,
): number {
  return Math.max(
    minPart,
    limits.minPartSize,
    Math.ceil(length / limits.maxParts),
  );
}

/**
 * The `info` text of a tus upload.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { encodeInfo, parseInfo } from "./state.ts";
 *
 * const info = { v: 1 as const, length: 10, metadata: [], partSize: 8 };
 * assert.deepStrictEqual(parseInfo(encodeInfo(info)), info);
 * ```
 */
export function encodeInfo(info: TusInfo): string {
  return JSON.stringify({
    v: info.v,
    length: info.length,
    metadata: info.metadata,
    partSize: info.partSize,
  });
}

/**
 * The {@linkcode TusInfo} in an upload record's `info`, or `undefined`
 * when the upload is not a tus upload (no info, or other text): such an
 * upload is not found through tus.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { parseInfo } from "./state.ts";
 *
 * assert.strictEqual(parseInfo(undefined), undefined);
 * assert.strictEqual(parseInfo("not json"), undefined);
 * assert.strictEqual(parseInfo('{"v":2}'), undefined);
 * ```
 */
export function parseInfo(text: string | undefined): TusInfo | undefined {
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  const info = value as Partial<TusInfo> | null;
  if (
    typeof info !== "object" || info === null || info.v !== 1 ||
    !Number.isSafeInteger(info.length) || info.length! < 0 ||
    !Number.isSafeInteger(info.partSize) || info.partSize! <= 0 ||
    !Array.isArray(info.metadata) ||
    !info.metadata.every((pair) =>
      Array.isArray(pair) && pair.length === 2 &&
      typeof pair[0] === "string" && typeof pair[1] === "string"
    )
  ) {
    return undefined;
  }
  return {
    v: 1,
    length: info.length!,
    metadata: info.metadata,
    partSize: info.partSize!,
  };
}

/**
 * Where the parts of a tus upload stand, from its records alone: how many
 * parts are complete, and the part after them if it is recorded
 * incomplete at the right offset, no longer than the part may be (a tail
 * candidate: it counts once its blob is found with that size).
 */
export interface TusLayout {
  /** How many parts are complete, from part 0, in order. */
  complete: number;
  /** The incomplete part `complete`, when it may be a tail. */
  tail?: PartRecord;
}

/**
 * Lays out the part records of a tus upload (see {@linkcode TusLayout}).
 * A complete part that is not exactly where and as long as the tus layout
 * puts it, or any part recorded beyond the tail, means the upload was
 * changed by other means (the `/uploads` routes): a `ConflictError`, as
 * no tus request can go on from there. An incomplete part elsewhere, or
 * longer than its place, counts for nothing.
 *
 * A tail as long as its whole part counts too: a `PATCH` that stored a
 * full part and died before marking it complete left it so, and the bytes
 * it holds include the tail acknowledged before, which must not be lost.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { tusLayout } from "./state.ts";
 *
 * const info = { v: 1 as const, length: 25, metadata: [], partSize: 10 };
 * const part = (offset: number, size: number, complete: boolean) => ({ hash: "h", offset, size, complete });
 * const layout = tusLayout([part(0, 10, true), part(10, 4, false)], info);
 * assert.strictEqual(layout.complete, 1);
 * assert.strictEqual(layout.tail?.size, 4);
 * assert.throws(() => tusLayout([part(0, 9, true)], info), /tus layout/);
 * ```
 */
export function tusLayout(
  parts: readonly (PartRecord | null)[],
  info: TusInfo,
): TusLayout {
  const { length, partSize } = info;
  let complete = 0;
  for (; complete < parts.length && parts[complete]?.complete; complete++) {
    const part = parts[complete]!;
    const offset = complete * partSize;
    const size = Math.min(partSize, length - offset);
    if (part.offset !== offset || part.size !== size) {
      throw changed(
        `part ${complete} is complete with ${part.size} bytes at offset ${part.offset}, where the tus layout has ${size} bytes at offset ${offset}`,
      );
    }
  }
  for (let i = complete + 1; i < parts.length; i++) {
    if (parts[i]) {
      throw changed(
        `part ${i} is recorded after part ${complete}, which is not complete`,
      );
    }
  }
  const next = parts[complete];
  const offset = complete * partSize;
  const room = Math.min(partSize, length - offset);
  const tail = next && next.offset === offset && next.size <= room
    ? next
    : undefined;
  return { complete, ...(tail && { tail }) };
}

/** Where a tus upload stands: its layout with the tail checked. */
export interface TusState {
  /** How many parts are complete. */
  complete: number;
  /** The tail whose blob is stored with its recorded size. */
  tail?: { hash: string; size: number };
  /** `Upload-Offset`: the bytes kept, complete parts and tail. */
  offset: number;
}

/**
 * The state of a tus upload from its part records (see
 * {@linkcode tusLayout}), asking `sizeOf` for the stored size of the
 * tail's blob (the catalog's reference): a tail whose blob is missing, or
 * of another size, counts for nothing.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { tusState } from "./state.ts";
 *
 * const info = { v: 1 as const, length: 25, metadata: [], partSize: 10 };
 * const parts = [
 *   { hash: "a", offset: 0, size: 10, complete: true },
 *   { hash: "b", offset: 10, size: 4, complete: false },
 * ];
 * assert.strictEqual((await tusState(parts, info, () => Promise.resolve(4))).offset, 14);
 * assert.strictEqual((await tusState(parts, info, () => Promise.resolve(undefined))).offset, 10);
 * ```
 */
export async function tusState(
  parts: readonly (PartRecord | null)[],
  info: TusInfo,
  sizeOf: (hash: string) => Promise<number | undefined>,
): Promise<TusState> {
  const { complete, tail } = tusLayout(parts, info);
  const base = Math.min(complete * info.partSize, info.length);
  if (tail && (await sizeOf(tail.hash)) === tail.size) {
    return {
      complete,
      tail: { hash: tail.hash, size: tail.size },
      offset: base + tail.size,
    };
  }
  return { complete, offset: base };
}

function changed(why: string): ConflictError {
  return new ConflictError(
    `upload does not follow the tus layout (${why}): it was changed other than through tus`,
  );
}
