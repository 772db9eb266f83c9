/**
 * How the segments of a Static Large Object are named, and how a listing of
 * the segment container is read back as sets of segments, one per blob.
 *
 * @module
 */

/**
 * One entry of a Swift container listing (`?format=json`).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { ListingEntry } from "./segment_sets.ts";
 *
 * const entry: ListingEntry = { name: "x", bytes: 3, last_modified: "2024-01-02T03:04:05.678900" };
 * assert(entry.bytes === 3);
 * ```
 */
export interface ListingEntry {
  /** The object's name. */
  name: string;
  /** Its size in bytes. */
  bytes: number;
  /** When it was written, in UTC without a zone. */
  last_modified: string;
}

/**
 * The segments of one blob found in a listing of the segment container.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { SegmentSet } from "./segment_sets.ts";
 *
 * const set: SegmentSet = { name: "blob", count: 2, size: 10, modified: new Date() };
 * assert(set.count === 2);
 * ```
 */
export interface SegmentSet {
  /** The name of the blob (and of its manifest) the segments belong to. */
  name: string;
  /** How many segments were listed. */
  count: number;
  /** Their total size in bytes. */
  size: number;
  /** When the newest of them was written. */
  modified: Date;
}

/**
 * The name prefix shared by every segment of blob `name` of container
 * `bucket`. The bucket comes first so that backends of several buckets
 * may share one segment container: each lists, and sweeps, only its own.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { segmentPrefix } from "./segment_sets.ts";
 *
 * assert(segmentPrefix("blobs", "abc") === "blobs/abc/");
 * ```
 */
export function segmentPrefix(bucket: string, name: string): string {
  return `${bucket}/${name}/`;
}

/**
 * The name of segment `index` (from 0) of blob `name` of container
 * `bucket`: the prefix and the index in 8 digits, so that a listing,
 * sorted by name, gives a blob's segments together and in order.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { segmentName } from "./segment_sets.ts";
 *
 * assert(segmentName("blobs", "abc", 12) === "blobs/abc/00000012");
 * ```
 */
export function segmentName(
  bucket: string,
  name: string,
  index: number,
): string {
  return `${segmentPrefix(bucket, name)}${String(index).padStart(8, "0")}`;
}

/**
 * Groups a name-ordered listing of the segment container into one
 * {@linkcode SegmentSet} per blob of `bucket`. Entries of other buckets,
 * and names not made by {@linkcode segmentName}, are passed over.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { segmentSets } from "./segment_sets.ts";
 *
 * async function* listing() {
 *   yield { name: "b/x/00000000", bytes: 4, last_modified: "2024-01-01T00:00:00" };
 *   yield { name: "b/x/00000001", bytes: 2, last_modified: "2024-01-01T00:00:01" };
 *   yield { name: "other/y/00000000", bytes: 9, last_modified: "2024-01-01T00:00:00" };
 * }
 * const sets = await Array.fromAsync(segmentSets(listing(), "b"));
 * assert(sets.length === 1 && sets[0].name === "x" && sets[0].size === 6);
 * ```
 */
export async function* segmentSets(
  listing: AsyncIterable<ListingEntry>,
  bucket: string,
): AsyncIterable<SegmentSet> {
  let current: SegmentSet | undefined;
  for await (const entry of listing) {
    const name = blobOfSegment(entry.name, bucket);
    if (name === undefined) continue;
    // Swift lists UTC times without a zone
    const modified = new Date(`${entry.last_modified}Z`);
    if (current?.name === name) {
      current.count++;
      current.size += entry.bytes;
      if (modified > current.modified) current.modified = modified;
      continue;
    }
    if (current) yield current;
    current = { name, count: 1, size: entry.bytes, modified };
  }
  if (current) yield current;
}

/** The blob a segment of `bucket` belongs to, or `undefined` for another name. */
function blobOfSegment(segment: string, bucket: string): string | undefined {
  const prefix = `${bucket}/`;
  if (!segment.startsWith(prefix)) return undefined;
  const match = /^(.+)\/\d{8}$/.exec(segment.slice(prefix.length));
  return match?.[1];
}
