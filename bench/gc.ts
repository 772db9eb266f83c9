/**
 * What the GC cases of the MongoDB and embedded suites share: the
 * references to keep (every other one), and the per-reference path they
 * time, untimed by the harness, to compare with one batched `Store.gc`.
 *
 * @module
 */

import type { Backend } from "../src/backend.ts";
import type { Catalog } from "../src/catalog.ts";
import { Refs } from "../src/refs.ts";

/** The references a GC case keeps: every other hash of `hashes`. */
export function keepEveryOther(hashes: readonly string[]): Refs {
  const refs = new Refs(hashes.length);
  hashes.forEach((hash, i) => i % 2 === 0 || refs.add(hash));
  return refs;
}

/**
 * Removes `sample` of the garbage among `hashes` the way GC did before it
 * batched: one conditional removal of the reference, then its bytes.
 * Returns the milliseconds per removal.
 */
export async function perReferenceMs(
  catalog: Catalog,
  backend: Backend,
  hashes: readonly string[],
  kept: Refs,
  putTime: Date,
  sample: number,
): Promise<number> {
  const start = performance.now();
  let removed = 0;
  for (const hash of hashes) {
    if (removed === sample) break;
    if (kept.has(hash)) continue;
    const ref = await catalog.getRef(hash);
    if (!ref || !await catalog.removeRef(hash, putTime)) {
      throw new Error(`per-reference removal of ${hash} failed`);
    }
    await backend.remove(ref.name);
    removed++;
  }
  return (performance.now() - start) / removed;
}
