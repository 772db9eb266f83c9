/**
 * A backend held in memory, for tests and short-lived processes.
 *
 * @module
 */

import type {
  Backend,
  BackendObject,
  ByteRange,
  OpenedBlob,
  StagedObject,
} from "../backend.ts";
import { NotFoundError } from "../errors.ts";
import { resolveRange } from "../range.ts";
import { verified } from "../verify.ts";
import { iterableStream } from "../source.ts";

interface StoredObject {
  chunks: Uint8Array[];
  size: number;
  modified: Date;
}

/**
 * A {@linkcode Backend} that keeps each object as the list of chunks it
 * arrived in, and makes it visible only once the whole content has been
 * verified.
 *
 * Chunks are kept as they are, not copied: as the Streams standard assumes,
 * a chunk handed to a stream belongs to its reader, so a writer must not
 * change it afterwards (pass a copy of a buffer you will reuse). Copying
 * would cost more than hashing here: every copied byte is fresh memory,
 * and the page faults alone halve the put throughput.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { MemoryBackend, sha384 } from "@blobstore/blobstore";
 *
 * const backend = new MemoryBackend();
 * const bytes = new TextEncoder().encode("hello");
 * await backend.put("greeting", new Blob([bytes]).stream(), 5, await sha384(bytes));
 * const { size, body } = await backend.get("greeting", { start: 1 });
 * assert(size === 5 && (await new Response(body).text()) === "ello");
 * ```
 */
export class MemoryBackend implements Backend {
  #objects = new Map<string, StoredObject>();

  /** See {@linkcode Backend.get}. */
  get(name: string, range?: ByteRange): Promise<OpenedBlob> {
    const object = this.#objects.get(name);
    if (!object) {
      return Promise.reject(new NotFoundError(`object "${name}" not found`));
    }
    const { start, end } = resolveRange(range, object.size);
    return Promise.resolve({
      size: object.size,
      body: iterableStream(sliceChunks(object.chunks, start, end)),
    });
  }

  /** See {@linkcode Backend.put}. */
  async put(
    name: string,
    body: ReadableStream<Uint8Array>,
    size: number,
    hash: string,
  ): Promise<void> {
    const chunks: Uint8Array[] = [];
    for await (const chunk of verified(body, size, hash)) {
      chunks.push(chunk);
    }
    this.#objects.set(name, { chunks, size, modified: new Date() });
  }

  /**
   * See {@linkcode Backend.stage}: the chunks are held apart until
   * `commit` names them (a staged object never named is simply dropped).
   */
  async stage(body: ReadableStream<Uint8Array>): Promise<StagedObject> {
    const chunks: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of body) {
      chunks.push(chunk);
      size += chunk.byteLength;
    }
    let done = false;
    const settle = () => {
      if (done) throw new Error("staged object already committed or discarded");
      done = true;
    };
    return {
      commit: async (name) => {
        settle();
        await Promise.resolve();
        this.#objects.set(name, { chunks, size, modified: new Date() });
      },
      discard: () => {
        done = true;
        return Promise.resolve();
      },
    };
  }

  /** See {@linkcode Backend.remove}. */
  remove(name: string): Promise<void> {
    this.#objects.delete(name);
    return Promise.resolve();
  }

  /** See {@linkcode Backend.list}. */
  async *list(): AsyncIterable<BackendObject> {
    for (const [name, { size, modified }] of [...this.#objects]) {
      yield { name, size, modified };
    }
  }
}

function* sliceChunks(
  chunks: Uint8Array[],
  start: number,
  end: number,
): Generator<Uint8Array> {
  let offset = 0;
  for (const chunk of chunks) {
    const chunkEnd = offset + chunk.length;
    if (chunkEnd > start && offset < end) {
      yield chunk.subarray(
        Math.max(start - offset, 0),
        Math.min(end - offset, chunk.length),
      );
    }
    if (chunkEnd >= end) return;
    offset = chunkEnd;
  }
}
