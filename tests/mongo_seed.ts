/**
 * Seeding a MongoDB store at scale: tiny blobs written straight into the
 * collections, in bulk, as the store would have put them. Much faster than
 * as many puts, for the GC tests and benchmarks.
 *
 * @module
 */

import { type Db, type Document, Long, ObjectId } from "mongodb";
import { newBlobName } from "../src/names.ts";
import { hashOf } from "./helpers.ts";

/** The 3 bytes of seeded blob `i`. */
export function seededBytes(i: number): Uint8Array {
  return new Uint8Array([i & 0xff, (i >> 8) & 0xff, (i >> 16) & 0xff]);
}

/**
 * Writes `count` blobs (blob `i` holds {@linkcode seededBytes}`(i)`) under
 * `prefix`: a GridFS file of one chunk and a reference put at `putTime`
 * each. Returns their hashes, in order.
 */
export async function seedBlobs(
  db: Db,
  prefix: string,
  count: number,
  putTime: Date,
): Promise<string[]> {
  const hashes: string[] = [];
  const batch = 1000;
  for (let from = 0; from < count; from += batch) {
    const files = [], chunks = [], refs = [];
    for (let i = from; i < Math.min(from + batch, count); i++) {
      const bytes = seededBytes(i);
      const hash = hashOf(bytes);
      const name = newBlobName(hash);
      const fileId = new ObjectId();
      hashes.push(hash);
      files.push({
        _id: fileId,
        length: bytes.length,
        chunkSize: 255 * 1024,
        uploadDate: putTime,
        filename: name,
      });
      chunks.push({ files_id: fileId, n: 0, data: bytes });
      refs.push({
        _id: hash,
        name,
        puttime: putTime,
        size: Long.fromNumber(bytes.length),
      });
    }
    await db.collection(`${prefix}.files`).insertMany(files);
    await db.collection(`${prefix}.chunks`).insertMany(chunks);
    await db.collection<Document & { _id: string }>(`${prefix}.blobref`)
      .insertMany(refs);
  }
  return hashes;
}
