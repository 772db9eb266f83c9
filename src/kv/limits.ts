/**
 * Deno KV's limits, and the two ways the KV catalog and backend stay
 * within them when they work on many keys at once: cutting a list into
 * batches one atomic operation accepts, and reading many keys with
 * `getMany` a few groups at a time.
 *
 * @module
 */

/**
 * KV's limits on one atomic operation: 100 checks, 1000 mutations, 800
 * KiB of keys and values, and 80 KiB of keys. Which keys count towards
 * the last differs between Deno versions (2.9 counts only those set), so
 * batches count every key they name, checks included. The 800 KiB counts
 * every key named, checked, set or deleted, and every value set.
 * `src/kv/kv_test.ts` checks each of these on the Deno it runs on.
 */
export const MAX_CHECKS = 100;

/** KV's limit on the mutations of one atomic operation. */
export const MAX_MUTATIONS = 1000;

/** KV's limit on the keys of one atomic operation; see {@linkcode MAX_CHECKS}. */
export const MAX_KEY_BYTES = 80 * 1024;

/**
 * KV's limit on the keys and values of one atomic operation, all counted;
 * see {@linkcode MAX_CHECKS}.
 */
export const MAX_OPERATION_BYTES = 800 * 1024;

/** KV's limit on one key written, encoded. */
export const MAX_KEY_SIZE = 2048;

/** KV's limit on one value, serialized. */
export const MAX_VALUE_SIZE = 64 * 1024;

/** `getMany` reads at most this many keys. */
export const GET_MANY_LIMIT = 10;

/**
 * The largest `list` batch the documentation promises (Deno 2.9 accepts
 * 1000). Each batch is one snapshot read: its entries are consistent with
 * each other, as `getMany`'s are.
 */
export const LIST_BATCH_LIMIT = 500;

/**
 * How many `getMany` calls a batch has in flight at once: on the hosted KV
 * each is a round trip; a local KV serves them one by one.
 */
export const READS_IN_FLIGHT = 10;

/**
 * An upper bound on the encoded size of `key` in bytes: a string part is
 * a type byte, its UTF-8 bytes (a NUL escaped as two) and a terminator; a
 * number is a type byte and 8 bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { keySize } from "./limits.ts";
 *
 * assert.strictEqual(keySize(["ab", 1]), 4 + 9);
 * ```
 */
export function keySize(key: Deno.KvKey): number {
  let size = 0;
  for (const part of key) {
    if (typeof part !== "string") {
      size += 9;
      continue;
    }
    size += 2;
    for (let i = 0; i < part.length; i++) {
      const unit = part.charCodeAt(i);
      size += unit === 0 ? 2 : unit < 0x80 ? 1 : unit < 0x800 ? 2 : 3;
    }
  }
  return size;
}

/**
 * Cuts `items` into batches of at most `maxItems` items (by default
 * {@linkcode MAX_CHECKS}: one atomic operation checking one key per item)
 * whose `keyBytes` add up to at most {@linkcode MAX_KEY_BYTES}. Lazy: the
 * items are read as the batches are taken.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { atomicBatches } from "./limits.ts";
 *
 * const batches = [...atomicBatches(Array.from({ length: 250 }, (_, i) => i), () => 10)];
 * assert.deepStrictEqual(batches.map((b) => b.length), [100, 100, 50]);
 * ```
 */
export function* atomicBatches<T>(
  items: Iterable<T>,
  keyBytes: (item: T) => number,
  maxItems: number = MAX_CHECKS,
): Generator<T[]> {
  let batch: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = keyBytes(item);
    if (batch.length === maxItems || bytes + size > MAX_KEY_BYTES) {
      if (batch.length > 0) yield batch;
      batch = [];
      bytes = 0;
    }
    batch.push(item);
    bytes += size;
  }
  if (batch.length > 0) yield batch;
}

/**
 * Reads `keys` in order with `getMany`: {@linkcode GET_MANY_LIMIT} keys per
 * call, {@linkcode READS_IN_FLIGHT} calls at once.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { getManyInGroups } from "./limits.ts";
 *
 * const kv = await Deno.openKv(":memory:");
 * await kv.set(["a", 3], "three");
 * const keys = Array.from({ length: 25 }, (_, i) => ["a", i]);
 * const entries = await getManyInGroups<string>(keys, (group) => kv.getMany<string[]>(group));
 * assert.strictEqual(entries.length, 25);
 * assert.strictEqual(entries[3].value, "three");
 * kv.close();
 * ```
 */
export async function getManyInGroups<T>(
  keys: readonly Deno.KvKey[],
  getMany: (group: Deno.KvKey[]) => Promise<Deno.KvEntryMaybe<T>[]>,
): Promise<Deno.KvEntryMaybe<T>[]> {
  const groups: Deno.KvKey[][] = [];
  for (let i = 0; i < keys.length; i += GET_MANY_LIMIT) {
    groups.push(keys.slice(i, i + GET_MANY_LIMIT));
  }
  const entries: Deno.KvEntryMaybe<T>[] = [];
  for (let i = 0; i < groups.length; i += READS_IN_FLIGHT) {
    const read = await Promise.all(
      groups.slice(i, i + READS_IN_FLIGHT).map(getMany),
    );
    for (const group of read) entries.push(...group);
  }
  return entries;
}
