/**
 * Multipart uploads: the types the store's upload methods speak, and the
 * pure checks they make, kept exactly as the Go original makes them.
 *
 * @module
 */

import type { PartRecord, UploadRecord } from "./catalog.ts";
import { BadParamsError, ConflictError } from "./errors.ts";

/**
 * The layout of a blob made of parts: the size and hash of each part, in
 * order. A finished upload yields one; keep it beside the whole hash and
 * pass it to `Store.open` to read the blob.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { MultipartIndex } from "@blobstore/blobstore";
 *
 * const index: MultipartIndex = { sizes: [5, 3], hashes: ["a".repeat(96), "b".repeat(96)] };
 * assert(index.sizes.length === index.hashes.length);
 * ```
 */
export interface MultipartIndex {
  /** The size in bytes of each part. */
  sizes: number[];
  /** The SHA-384 hash of each part. */
  hashes: string[];
}

/**
 * A part named at the end of an upload, by its hash.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { Part } from "@blobstore/blobstore";
 *
 * const parts: Part[] = [{ hash: "a".repeat(96) }];
 * assert(parts.length === 1);
 * ```
 */
export interface Part {
  /** The SHA-384 hash the part was uploaded with. */
  hash: string;
}

/**
 * What the store knows of one uploaded part.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { PartInfo } from "@blobstore/blobstore";
 *
 * const info: PartInfo = { hash: "a".repeat(96), size: 10, offset: 0, complete: true };
 * assert(info.complete);
 * ```
 */
export type PartInfo = PartRecord;

/**
 * The state of an upload, as returned by `Store.uploadInfo`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { UploadInfo } from "@blobstore/blobstore";
 *
 * const info: UploadInfo = { parts: [null], expires: new Date() };
 * assert(info.hash === undefined);
 * ```
 */
export interface UploadInfo {
  /** The parts by number; `null` where a number has not been uploaded. */
  parts: (PartInfo | null)[];
  /** When the upload record expires. */
  expires: Date;
  /** The hash of the whole blob, once finished. */
  hash?: string;
  /** Who uses the finished upload, once set. */
  owner?: string;
  /** What `newUpload` was given as `info`, if anything. */
  info?: string;
}

/**
 * Returns the index of the blob a finished upload describes, or `undefined`
 * while it is unfinished (no hash yet) or any part is missing or
 * incomplete (Go's `UploadInfo.Index`).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { multipartIndex } from "@blobstore/blobstore";
 *
 * const part = { hash: "a".repeat(96), size: 3, offset: 0, complete: true };
 * const expires = new Date();
 * assert(multipartIndex({ parts: [part], expires, hash: part.hash })?.sizes[0] === 3);
 * assert(multipartIndex({ parts: [part], expires }) === undefined); // not finished
 * assert(multipartIndex({ parts: [null], expires }) === undefined);
 * ```
 */
export function multipartIndex(info: UploadInfo): MultipartIndex | undefined {
  if (info.hash === undefined) return undefined;
  const index: MultipartIndex = { sizes: [], hashes: [] };
  for (const part of info.parts) {
    if (!part?.complete) return undefined;
    index.sizes.push(part.size);
    index.hashes.push(part.hash);
  }
  return index;
}

/** The limits a store puts on parts. */
export interface PartLimits {
  /** The least size of every part but the last. */
  minPartSize: number;
  /** One more than the greatest size of a part. */
  maxPartSize: number;
  /** One more than the greatest part number. */
  maxParts: number;
}

/** Checks a part's number and size against the store's limits. */
export function checkPartParams(
  part: number,
  size: number,
  limits: PartLimits,
): void {
  if (!Number.isSafeInteger(part) || part < 0) {
    throw new BadParamsError(
      `invalid part number (expected an integer from 0, got ${part})`,
    );
  }
  if (part >= limits.maxParts) {
    throw new BadParamsError(
      `part number ${part} too big (maximum ${limits.maxParts - 1})`,
    );
  }
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new BadParamsError(
      `part ${part} has invalid size (expected a positive integer, got ${size})`,
    );
  }
  if (size >= limits.maxPartSize) {
    throw new BadParamsError(
      `part ${part} too big (maximum ${
        limits.maxPartSize - 1
      } bytes, got ${size})`,
    );
  }
}

/**
 * Returns the offset a part starts at: `offset` as given, except that a
 * sequential uploader may pass 0 for a later part whose predecessor is
 * known, and gets the offset where that predecessor ends. A later part
 * with offset 0 and no predecessor yet cannot be placed: guessing 0 would
 * record it where no later part can ever be, wedging the upload.
 */
export function inferOffset(
  parts: readonly (PartRecord | null)[],
  part: number,
  offset: number,
): number {
  if (offset !== 0 || part === 0) return offset;
  const previous = parts[part - 1];
  if (!previous) {
    throw new BadParamsError(
      `cannot infer the offset of part ${part}: part ${
        part - 1
      } is not uploaded yet (send its offset, or part ${part - 1} first)`,
    );
  }
  return previous.offset + previous.size;
}

/**
 * Checks that a part of `size` bytes at `offset` fits between the parts
 * already uploaded, in any order: it starts where the part before it ends
 * and ends where the part after it starts, every uploaded part before it is
 * at least `minPartSize`, and so is this part when a later part exists.
 */
export function checkPartPlacement(
  parts: readonly (PartRecord | null)[],
  part: number,
  size: number,
  offset: number,
  minPartSize: number,
): void {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new BadParamsError(
      `part ${part} has invalid offset (expected a non-negative integer, got ${offset})`,
    );
  }
  if (part === 0 && offset !== 0) {
    throw new BadParamsError(`part 0 should start at 0 (got offset ${offset})`);
  }
  for (let i = 0; i < parts.length; i++) {
    const other = parts[i];
    if (!other || i === part) continue;
    if (i < part) {
      checkMinSize(i, other.size, minPartSize);
      const end = other.offset + other.size;
      if (i === part - 1 ? end !== offset : end > offset) {
        throw new BadParamsError(
          `part ${part} should start at ${
            i === part - 1 ? "" : "or after "
          }${end} (got offset ${offset})`,
        );
      }
    } else {
      checkMinSize(part, size, minPartSize);
      const end = offset + size;
      if (i === part + 1 ? end !== other.offset : end > other.offset) {
        throw new BadParamsError(
          `part ${part} should end at ${
            i === part + 1 ? "" : "or before "
          }${other.offset} (got ${end})`,
        );
      }
    }
  }
}

function checkMinSize(part: number, size: number, minPartSize: number): void {
  if (size < minPartSize) {
    throw new BadParamsError(
      `part ${part} too small (need at least ${minPartSize} bytes, got ${size})`,
    );
  }
}

/**
 * Checks the parts named at finish against an upload's records, and
 * returns the index of the whole blob.
 */
export function checkFinish(
  upload: UploadRecord,
  parts: readonly Part[],
  minPartSize: number,
): MultipartIndex {
  if (parts.length !== upload.parts.length) {
    throw new BadParamsError(
      `part count mismatch (expected ${upload.parts.length} parts, got ${parts.length})`,
    );
  }
  const index: MultipartIndex = { sizes: [], hashes: [] };
  let offset = 0;
  for (let i = 0; i < parts.length; i++) {
    const record = upload.parts[i];
    if (!record?.complete) {
      throw new ConflictError(`part ${i} not uploaded yet`);
    }
    if (record.hash !== parts[i]?.hash) {
      throw new BadParamsError(
        `hash mismatch on part ${i} (expected ${record.hash}, got ${
          JSON.stringify(parts[i]?.hash)
        })`,
      );
    }
    if (i < parts.length - 1) checkMinSize(i, record.size, minPartSize);
    if (record.offset !== offset) {
      throw new BadParamsError(
        `part ${i} should start at ${offset} (got offset ${record.offset})`,
      );
    }
    offset += record.size;
    index.sizes.push(record.size);
    index.hashes.push(record.hash);
  }
  return index;
}
