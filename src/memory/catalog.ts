/**
 * A catalog held in memory, for tests and short-lived processes.
 *
 * @module
 */

import type {
  BlobRef,
  Catalog,
  HashState,
  MultipartRegistry,
  PartRecord,
  UploadRecord,
} from "../catalog.ts";
import { MemoryMultipartRegistry } from "./registry.ts";

/**
 * A {@linkcode Catalog} in a process's memory. Each method runs to
 * completion without awaiting, so each conditional step is atomic within
 * the process. Everything is lost when the process ends.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { MemoryCatalog } from "@blobstore/blobstore";
 *
 * const catalog = new MemoryCatalog();
 * const ref = { hash: "0".repeat(96), name: "n", putTime: new Date(0), size: 1 };
 * assert(await catalog.insertRef(ref));
 * assert(!(await catalog.insertRef(ref)));
 * ```
 */
export class MemoryCatalog implements Catalog {
  #refs = new Map<string, BlobRef>();
  #uploads = new Map<string, UploadRecord>();

  /** See {@linkcode Catalog.multipart}: in memory too. */
  readonly multipart: MultipartRegistry = new MemoryMultipartRegistry();

  /** See {@linkcode Catalog.getRef}. */
  getRef(hash: string): Promise<BlobRef | undefined> {
    return Promise.resolve(copyRef(this.#refs.get(hash)));
  }

  /** See {@linkcode Catalog.insertRef}. */
  insertRef(ref: BlobRef): Promise<boolean> {
    if (this.#refs.has(ref.hash)) return Promise.resolve(false);
    this.#refs.set(ref.hash, copyRef(ref)!);
    return Promise.resolve(true);
  }

  /** See {@linkcode Catalog.touchRef}. */
  touchRef(hash: string, putTime: Date): Promise<BlobRef | undefined> {
    const ref = this.#refs.get(hash);
    if (ref) ref.putTime = new Date(putTime);
    return Promise.resolve(copyRef(ref));
  }

  /** See {@linkcode Catalog.removeRef}. */
  removeRef(hash: string, putTime: Date): Promise<boolean> {
    const ref = this.#refs.get(hash);
    if (!ref || ref.putTime.getTime() !== putTime.getTime()) {
      return Promise.resolve(false);
    }
    this.#refs.delete(hash);
    return Promise.resolve(true);
  }

  /** See {@linkcode Catalog.removeRefs}. */
  removeRefs(refs: readonly BlobRef[]): Promise<Set<string>> {
    const gone = new Set<string>();
    for (const ref of refs) {
      const stored = this.#refs.get(ref.hash);
      if (stored?.name === ref.name) {
        // The same reference: removed only if no put refreshed it.
        if (stored.putTime.getTime() !== ref.putTime.getTime()) continue;
        this.#refs.delete(ref.hash);
      }
      gone.add(ref.hash);
    }
    return Promise.resolve(gone);
  }

  /** See {@linkcode Catalog.refsPutBefore}. */
  async *refsPutBefore(before: Date): AsyncIterable<BlobRef> {
    for (const ref of [...this.#refs.values()]) {
      if (ref.putTime.getTime() <= before.getTime()) yield copyRef(ref)!;
    }
  }

  /** See {@linkcode Catalog.insertUpload}. */
  insertUpload(upload: UploadRecord): Promise<void> {
    this.#uploads.set(upload.id, copyUpload(upload)!);
    return Promise.resolve();
  }

  /** See {@linkcode Catalog.getUpload}. */
  getUpload(id: string): Promise<UploadRecord | undefined> {
    return Promise.resolve(copyUpload(this.#uploads.get(id)));
  }

  /** See {@linkcode Catalog.uploads}. */
  async *uploads(): AsyncIterable<UploadRecord> {
    for (const upload of [...this.#uploads.values()]) {
      yield copyUpload(upload)!;
    }
  }

  /** See {@linkcode Catalog.initPart}. */
  initPart(id: string, part: number, record: PartRecord): Promise<boolean> {
    const upload = this.#uploads.get(id);
    if (!upload || upload.hash !== undefined || upload.parts[part]?.complete) {
      return Promise.resolve(false);
    }
    while (upload.parts.length <= part) upload.parts.push(null);
    upload.parts[part] = { ...record };
    return Promise.resolve(true);
  }

  /** See {@linkcode Catalog.completePart}. */
  completePart(id: string, part: number, hash: string): Promise<boolean> {
    const record = this.#uploads.get(id)?.parts[part];
    if (!record || record.hash !== hash) return Promise.resolve(false);
    record.complete = true;
    return Promise.resolve(true);
  }

  /** See {@linkcode Catalog.setUploadHash}. */
  setUploadHash(id: string, hash: string): Promise<boolean> {
    const upload = this.#uploads.get(id);
    if (!upload || upload.hash !== undefined) return Promise.resolve(false);
    upload.hash = hash;
    return Promise.resolve(true);
  }

  /** See {@linkcode Catalog.advanceHashState}. */
  advanceHashState(
    id: string,
    from: number,
    next: HashState,
  ): Promise<boolean> {
    const upload = this.#uploads.get(id);
    if (
      !upload || upload.hash !== undefined ||
      (upload.hashState?.parts ?? 0) !== from || next.parts <= from
    ) {
      return Promise.resolve(false);
    }
    upload.hashState = copyHashState(next);
    return Promise.resolve(true);
  }

  /** See {@linkcode Catalog.setOwner}. */
  setOwner(id: string, owner: string, expires: Date): Promise<boolean> {
    const upload = this.#uploads.get(id);
    if (
      !upload || upload.hash === undefined ||
      (upload.owner !== undefined && upload.owner !== owner)
    ) {
      return Promise.resolve(false);
    }
    upload.owner = owner;
    upload.expires = new Date(expires);
    return Promise.resolve(true);
  }

  /** See {@linkcode Catalog.removeUpload}. */
  removeUpload(id: string, owner: string | undefined): Promise<boolean> {
    const upload = this.#uploads.get(id);
    if (!upload || upload.owner !== owner) return Promise.resolve(false);
    this.#uploads.delete(id);
    return Promise.resolve(true);
  }

  /** See {@linkcode Catalog.removeExpiredUploads}. */
  removeExpiredUploads(now: Date): Promise<number> {
    let removed = 0;
    for (const [id, upload] of this.#uploads) {
      if (upload.expires.getTime() < now.getTime()) {
        this.#uploads.delete(id);
        removed++;
      }
    }
    return Promise.resolve(removed);
  }
}

function copyRef(ref: BlobRef | undefined): BlobRef | undefined {
  return ref && { ...ref, putTime: new Date(ref.putTime) };
}

function copyUpload(
  upload: UploadRecord | undefined,
): UploadRecord | undefined {
  if (!upload) return undefined;
  return {
    ...upload,
    expires: new Date(upload.expires),
    parts: upload.parts.map((p) => p && { ...p }),
    ...(upload.hashState && { hashState: copyHashState(upload.hashState) }),
  };
}

function copyHashState(state: HashState): HashState {
  return { parts: state.parts, state: new Uint8Array(state.state) };
}
