/**
 * The one GC entry point, `collect`, on the in-memory seams: what each step
 * counts, a dry run that changes nothing and foretells the real run, counts
 * that stay exact (never negative) beside concurrent puts and collections,
 * and the backend's own sweep.
 */

import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert";
import type { Backend, BackendObject } from "./backend.ts";
import type { BlobRef, Catalog } from "./catalog.ts";
import { collect, type MultipartReleaser } from "./collect.ts";
import { BadParamsError } from "./errors.ts";
import { MemoryBackend } from "./memory/backend.ts";
import { MemoryCatalog } from "./memory/catalog.ts";
import { newBlobName } from "./names.ts";
import { Refs } from "./refs.ts";
import { Store } from "./store.ts";
import { DEFAULT_GRACE_MS } from "./sweep.ts";
import { bytesOf, collect as collectAll, hashOf } from "../tests/helpers.ts";

const HOUR = 3600_000;

async function putAll(store: Store, blobs: Uint8Array[]): Promise<string[]> {
  const hashes = [];
  for (const bytes of blobs) {
    const hash = hashOf(bytes);
    await store.put(bytes, hash, bytes.length);
    hashes.push(hash);
  }
  return hashes;
}

/** Multipart blobs as the HTTP service registers them, kept in a map. */
class Registry implements MultipartReleaser {
  readonly map = new Map<string, { uploadId: string; finished: Date }>();
  constructor(readonly store: Store) {}
  async *entries() {
    for (const [hash, entry] of [...this.map]) yield { hash, ...entry };
  }
  async release(hash: string, uploadId: string): Promise<boolean> {
    await this.store.removeUpload(uploadId);
    if (this.map.get(hash)?.uploadId !== uploadId) return false;
    return this.map.delete(hash);
  }
}

/** Uploads `parts` as a new upload expiring at `expires`; finishes it if asked. */
async function upload(
  store: Store,
  parts: Uint8Array[],
  expires: Date,
  finish: boolean,
): Promise<{ id: string; hash?: string }> {
  const id = await store.newUpload(expires);
  let offset = 0;
  for (const [i, bytes] of parts.entries()) {
    await store.putPart(id, i, bytes, bytes.length, offset, hashOf(bytes));
    offset += bytes.length;
  }
  if (!finish) return { id };
  const { hash } = await store.finishUpload(
    id,
    parts.map((bytes) => ({ hash: hashOf(bytes) })),
  );
  return { id, hash };
}

/** Everything the seams hold, to compare before and after. */
async function snapshot(store: Store, registry?: Registry) {
  const refs =
    (await collectAll(store.catalog.refsPutBefore(new Date(8.64e15))))
      .map((ref) => `${ref.hash} ${ref.name} ${ref.putTime.getTime()}`).sort();
  const uploads = (await collectAll(store.catalog.uploads()))
    .map((upload) => upload.id).sort();
  const objects = (await collectAll(store.backend.list!()))
    .map((object) => object.name).sort();
  return { refs, uploads, objects, registry: [...registry?.map ?? []] };
}

/**
 * A store with: a kept blob, two garbage blobs, a live upload holding a
 * part, an expired upload holding another, a registered multipart blob
 * (released: its two parts are garbage), and an orphaned object.
 */
async function scene(batches = true) {
  const catalog = new MemoryCatalog();
  const store = new Store({
    catalog: batches ? catalog : withoutRemoveRefs(catalog),
    backend: new MemoryBackend(),
    minPartSize: 1,
  });
  const registry = new Registry(store);
  const [kept, ...garbage] = await putAll(
    store,
    [bytesOf(100, 1), bytesOf(20, 2), bytesOf(30, 3)],
  );
  const far = new Date(Date.now() + 24 * HOUR);
  const live = bytesOf(40, 4);
  await upload(store, [live], far, false);
  const expiredPart = bytesOf(50, 5);
  await upload(store, [expiredPart], new Date(Date.now() - 1), false);
  const parts = [bytesOf(60, 6), bytesOf(70, 7)];
  const multipart = await upload(store, parts, far, true);
  registry.map.set(multipart.hash!, {
    uploadId: multipart.id,
    finished: new Date(),
  });
  const orphan = bytesOf(80, 8);
  await store.backend.put(
    newBlobName(hashOf(orphan)),
    new Blob([orphan]).stream(),
    orphan.length,
    hashOf(orphan),
  );
  const keep = new Refs();
  keep.add(kept);
  const removable = [...garbage, hashOf(expiredPart), ...parts.map(hashOf)];
  return {
    store,
    registry,
    keep,
    kept,
    live: hashOf(live),
    removable,
    removableBytes: 20 + 30 + 50 + 60 + 70,
    multipart: multipart.hash!,
  };
}

Deno.test("collect: releases, expires, collects and sweeps, counting each", async () => {
  const s = await scene();
  const removed: BlobRef[] = [];
  const now = new Date(Date.now() + 1);
  const result = await collect(s.store, {
    keep: s.keep,
    before: now,
    now,
    graceMs: 0,
    multipart: s.registry,
    onRemove: (ref) => removed.push(ref),
  });
  deepStrictEqual(result, {
    dryRun: false,
    released: 1,
    removed: s.removable.length,
    removedBytes: s.removableBytes,
    kept: { count: 2, maxSize: 100, meanSize: 70 },
    swept: { examined: 3, removed: 1, removedBytes: 80 },
  });
  deepStrictEqual(removed.map((ref) => ref.hash).sort(), s.removable.sort());
  deepStrictEqual(s.registry.map.size, 0);
  // What is left: the kept blob, the live upload and its part.
  const left = await snapshot(s.store);
  strictEqual(left.refs.length, 2);
  ok(await s.store.catalog.getRef(s.kept));
  ok(await s.store.catalog.getRef(s.live));
  strictEqual(left.uploads.length, 1);
  strictEqual(left.objects.length, 2);

  // Nothing more to do: every count is zero, none negative.
  const again = await collect(s.store, {
    keep: s.keep,
    before: now,
    now,
    graceMs: 0,
    multipart: s.registry,
  });
  deepStrictEqual(
    [again.released, again.removed, again.removedBytes, again.swept?.removed],
    [0, 0, 0, 0],
  );
});

Deno.test("collect: a dry run changes nothing and reports what the real run removes", async () => {
  for (const withBatches of [true, false]) {
    const s = await scene(withBatches);
    const now = new Date(Date.now() + 1);
    const options = {
      keep: s.keep,
      before: now,
      now,
      graceMs: 0,
      multipart: s.registry,
    };
    const before = await snapshot(s.store, s.registry);
    const wouldRemove: string[] = [];
    const dry = await collect(s.store, {
      ...options,
      dryRun: true,
      onRemove: (ref) => wouldRemove.push(`${ref.hash}\t${ref.size}`),
    });
    deepStrictEqual(await snapshot(s.store, s.registry), before);

    const removed: string[] = [];
    const real = await collect(s.store, {
      ...options,
      onRemove: (ref) => removed.push(`${ref.hash}\t${ref.size}`),
    });
    deepStrictEqual(wouldRemove.sort(), removed.sort());
    strictEqual(dry.dryRun, true);
    strictEqual(real.dryRun, false);
    strictEqual(dry.released, real.released);
    strictEqual(dry.removed, real.removed);
    strictEqual(dry.removedBytes, real.removedBytes);
    deepStrictEqual(dry.kept, real.kept);
    // (The dry run lists more objects: the bytes GC would have removed.)
    strictEqual(dry.swept?.removed, real.swept?.removed);
    strictEqual(dry.swept?.removedBytes, real.swept?.removedBytes);
    strictEqual(real.removed, s.removable.length);
  }
});

Deno.test("collect: the cut-off and the grace period spare what is recent", async () => {
  const s = await scene();
  const now = new Date();
  const result = await collect(s.store, {
    keep: s.keep,
    before: new Date(now.getTime() - HOUR),
    now,
    multipart: s.registry,
  });
  // Nothing was put or finished before the cut-off, and the orphan is
  // younger than the grace period; only the expired upload went.
  deepStrictEqual(
    [result.released, result.removed, result.swept?.removed],
    [0, 0, 0],
  );
  strictEqual((await snapshot(s.store)).uploads.length, 2);
  strictEqual(s.registry.map.size, 1);
});

Deno.test("collect: counts exactly what it removed beside concurrent puts", async () => {
  for (const withBatches of [true, false]) {
    const store = new Store({
      catalog: new MemoryCatalog(),
      backend: new MemoryBackend(),
    });
    const [kept, ...garbage] = await putAll(
      store,
      [1, 2, 3, 4].map((seed) => bytesOf(100, seed)),
    );
    const keep = new Refs();
    keep.add(kept);
    const before = new Date(Date.now() + 1);
    // A busy server: new blobs, and a refresh of one garbage blob, land
    // after GC listed the references and before it removes them.
    const fresh = [5, 6, 7, 8, 9].map((seed) => bytesOf(100, seed));
    let ran: Promise<string[]> | undefined;
    const busy = onFirstRemoval(
      withBatches ? store.catalog : withoutRemoveRefs(store.catalog),
      () =>
        ran ??= (async () => {
          const refreshed = bytesOf(100, 2);
          await store.putAtTime(
            refreshed,
            hashOf(refreshed),
            100,
            new Date(before.getTime() + 10),
          );
          return await putAll(store, fresh);
        })(),
    );
    const result = await collect(
      new Store({ catalog: busy, backend: store.backend }),
      { keep, before, now: before },
    );
    ok(ran, "no put ran during GC");
    const freshHashes = await ran;
    strictEqual(result.removed, garbage.length - 1);
    strictEqual(result.removedBytes, 100 * (garbage.length - 1));
    strictEqual(result.kept?.count, 2);
    for (const hash of [kept, garbage[0], ...freshHashes]) {
      ok(await store.catalog.getRef(hash), hash);
    }
    for (const hash of garbage.slice(1)) {
      strictEqual(await store.catalog.getRef(hash), undefined);
    }
  }
});

Deno.test("collect: two collections at once share the removals between them", async () => {
  const store = new Store({
    catalog: withoutRemoveRefs(new MemoryCatalog()),
    backend: new MemoryBackend(),
  });
  const garbage = await putAll(
    store,
    Array.from({ length: 20 }, (_, i) => bytesOf(10, i + 1)),
  );
  const before = new Date(Date.now() + 1);
  const runs = await Promise.all(
    [0, 1].map(() =>
      collect(store, { keep: new Refs(), before, now: before, sweep: false })
    ),
  );
  for (const run of runs) ok(run.removed >= 0);
  strictEqual(runs[0].removed + runs[1].removed, garbage.length);
  deepStrictEqual(await collectAll(store.backend.list!()), []);
});

Deno.test("collect: the backend's sweep clears debris, never in a dry run", async () => {
  const inner = new MemoryBackend();
  const calls: (number | undefined)[] = [];
  const backend: Backend = {
    get: (name, range) => inner.get(name, range),
    put: (name, body, size, hash) => inner.put(name, body, size, hash),
    remove: (name) => inner.remove(name),
    sweep: (graceMs) => (calls.push(graceMs), Promise.resolve(2)),
  };
  const store = new Store({ catalog: new MemoryCatalog(), backend });
  const keep = new Refs();
  const before = new Date();

  const dry = await collect(store, { keep, before, dryRun: true });
  deepStrictEqual(calls, []);
  strictEqual(dry.debris, undefined);
  strictEqual(dry.swept, undefined, "the backend cannot list");

  strictEqual((await collect(store, { keep, before })).debris, 2);
  strictEqual((await collect(store, { graceMs: 5 })).debris, 2);
  deepStrictEqual(calls, [undefined, 5], "the backend's own default, or ours");
  strictEqual((await collect(store, { sweep: false })).debris, undefined);
  strictEqual(calls.length, 2);
});

Deno.test("collect: without keep, only expired uploads go", async () => {
  const s = await scene();
  const before = await snapshot(s.store, s.registry);
  const result = await collect(s.store, { multipart: s.registry, graceMs: 0 });
  deepStrictEqual(result, {
    dryRun: false,
    released: 0,
    removed: 0,
    removedBytes: 0,
    swept: { examined: 8, removed: 1, removedBytes: 80 },
  });
  const after = await snapshot(s.store, s.registry);
  deepStrictEqual(after.refs, before.refs);
  deepStrictEqual(after.registry, before.registry);
  strictEqual(after.uploads.length, before.uploads.length - 1);

  const upkeep = await collect(s.store, { sweep: false });
  deepStrictEqual(upkeep, {
    dryRun: false,
    released: 0,
    removed: 0,
    removedBytes: 0,
  });
});

Deno.test("collect: bad options are BadParamsError", async () => {
  const store = new Store({
    catalog: new MemoryCatalog(),
    backend: new MemoryBackend(),
  });
  await rejects(collect(store, { keep: new Refs() }), BadParamsError);
  await rejects(collect(store, { before: new Date() }), BadParamsError);
  await rejects(collect(store, { graceMs: -1 }), BadParamsError);
  await rejects(collect(store, { graceMs: NaN }), BadParamsError);
  await rejects(collect(store, { now: new Date(NaN) }), BadParamsError);
  await rejects(
    collect(store, { keep: new Refs(), before: new Date("x") }),
    BadParamsError,
  );
});

Deno.test("collect: the orphan sweep waits out the grace period and the cut-off", async () => {
  const backend = new MemoryBackend();
  const store = new Store({ catalog: new MemoryCatalog(), backend });
  const orphan = bytesOf(10, 1);
  await backend.put(
    newBlobName(hashOf(orphan)),
    new Blob([orphan]).stream(),
    10,
    hashOf(orphan),
  );
  const [object] = await collectAll<BackendObject>(backend.list());
  const at = (ms: number) => new Date(object.modified.getTime() + ms);
  const keep = new Refs();
  const swept = async (now: Date, before: Date) =>
    (await collect(store, { keep, before, now, dryRun: true })).swept?.removed;
  strictEqual(await swept(at(DEFAULT_GRACE_MS - 1), at(0)), 0);
  strictEqual(await swept(at(DEFAULT_GRACE_MS), at(0)), 1);
  // A cut-off further back than the grace period widens it.
  strictEqual(
    await swept(at(DEFAULT_GRACE_MS), at(-DEFAULT_GRACE_MS)),
    0,
  );
  strictEqual(await swept(at(2 * DEFAULT_GRACE_MS), at(0)), 1);
});

/** `catalog` without `removeRefs`, so GC removes one reference at a time. */
function withoutRemoveRefs(catalog: Catalog): Catalog {
  return new Proxy(catalog, {
    get(target, key) {
      if (key === "removeRefs") return undefined;
      const value = Reflect.get(target, key, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/**
 * `catalog` as is, but `action` runs (once) when GC first removes a
 * reference: after the references were listed, before the removal ends.
 */
function onFirstRemoval(
  catalog: Catalog,
  action: () => Promise<unknown>,
): Catalog {
  return new Proxy(catalog, {
    get(target, key) {
      const value = Reflect.get(target, key, target);
      if (typeof value !== "function") return value;
      if (key !== "removeRef" && key !== "removeRefs") {
        return value.bind(target);
      }
      return async (...args: unknown[]) => {
        await action();
        return await value.apply(target, args);
      };
    },
  });
}
