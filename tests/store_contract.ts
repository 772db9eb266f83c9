/**
 * The contract the {@linkcode Store} meets on any catalog and backend, as
 * one suite that each seam's test file runs on its own fixture. It covers
 * every rule of the Go original: puts and de-duplication, verification,
 * ranges, GC, and multipart uploads with their checks and races.
 *
 * @module
 */

import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert";
import type { Backend } from "../src/backend.ts";
import type { Catalog } from "../src/catalog.ts";
import {
  BadParamsError,
  ConflictError,
  HashMismatchError,
  NotFoundError,
  RetryableError,
  SizeMismatchError,
} from "../src/errors.ts";
import type { Hashing } from "../src/hashing.ts";
import { multipartIndex } from "../src/multipart.ts";
import { MultipartBlobs } from "../src/multipart_blobs.ts";
import { Refs } from "../src/refs.ts";
import { newBlobName } from "../src/names.ts";
import { Store } from "../src/store.ts";
import { sha384 } from "../src/digest.ts";
import {
  bytesOf,
  chunkedStream,
  collect,
  concatBytes,
  failingStream,
  generatedStream,
  hashOf,
  readAll,
} from "./helpers.ts";

/** A fresh, empty catalog and backend, and how to dispose of them. */
export interface StoreFixture {
  /** The catalog under test. */
  catalog: Catalog;
  /** The backend under test. */
  backend: Backend;
  /** Releases whatever the fixture holds. */
  close(): Promise<void>;
}

/** Options of the suite. */
export interface StoreContractOptions {
  /** Size of the large streamed blob (default 64 MiB). */
  largeSize?: number;
  /** Where the store hashes (default the store's default, `"auto"`). */
  hashing?: Hashing;
}

const MIN_PART = 100;
const HOUR = 3600_000;

/** Runs the store contract as steps of `t`, each on a fresh fixture. */
export async function testStoreContract(
  t: Deno.TestContext,
  open: () => Promise<StoreFixture>,
  options: StoreContractOptions = {},
): Promise<void> {
  const step = (
    name: string,
    fn: (store: Store, fixture: StoreFixture) => Promise<void>,
  ) =>
    t.step(name, async () => {
      const fixture = await open();
      try {
        const store = new Store({
          catalog: fixture.catalog,
          backend: fixture.backend,
          minPartSize: MIN_PART,
          maxPartSize: 100_000,
          maxParts: 10,
          hashing: options.hashing,
        });
        await fn(store, fixture);
      } finally {
        await fixture.close();
      }
    });

  const parts3 = () => {
    const parts = [
      bytesOf(MIN_PART, 40),
      bytesOf(MIN_PART + 7, 41),
      bytesOf(13, 42),
    ];
    return {
      parts,
      hashes: parts.map((p) => hashOf(p)),
      whole: concatBytes(parts),
    };
  };

  // ---- put and open ----

  await step("put then open returns the bytes", async (s) => {
    const bytes = bytesOf(50_000);
    await s.put(chunkedStream(bytes, 4096), hashOf(bytes), bytes.length);
    const { size, body } = await s.open(hashOf(bytes));
    strictEqual(size, bytes.length);
    deepStrictEqual(await readAll(body), bytes);
  });

  await step(
    "every kind of source: bytes, Blob, stream, async iterable",
    async (s) => {
      const bytes = bytesOf(10_000, 2);
      const hash = hashOf(bytes);
      async function* chunks() {
        yield bytes.subarray(0, 5000);
        yield bytes.subarray(5000);
      }
      await s.put(bytes, hash, bytes.length);
      await s.put(new Blob([bytes]), hash, bytes.length);
      await s.put(chunkedStream(bytes, 333), hash, bytes.length);
      await s.put(chunks(), hash, bytes.length);
      deepStrictEqual(await readAll((await s.open(hash)).body), bytes);
    },
  );

  await step(
    "stat tells size and kind from the catalog, never the backend",
    async (s, f) => {
      const bytes = bytesOf(3000, 15);
      const hash = hashOf(bytes);
      await s.put(bytes, hash, bytes.length);
      const { parts, hashes, whole } = parts3();
      const id = await uploadParts(s, parts, hashes);
      const blobs = new MultipartBlobs(s);
      const finished = await blobs.finish(id, hashes.map((hash) => ({ hash })));
      // A store whose backend fails every call: stat must not need it.
      const blind = new Store({
        catalog: f.catalog,
        backend: withMethod(f.backend, "get", () => {
          throw new Error("stat touched the backend");
        }),
      });
      deepStrictEqual(await blind.stat(hash), {
        size: bytes.length,
        kind: "single",
      });
      deepStrictEqual(await blind.stat(finished.hash), {
        size: whole.length,
        kind: "multipart",
        index: finished.index,
      });
      await rejects(blind.stat(hashOf("absent")), NotFoundError);
      await rejects(blind.stat("nope"), BadParamsError);
      // Once its upload record is gone, the multipart blob is gone too.
      await s.removeUpload(id);
      await rejects(blind.stat(finished.hash), NotFoundError);
    },
  );

  await step("open of an absent blob is NotFoundError", async (s) => {
    await rejects(s.open(hashOf("absent")), NotFoundError);
  });

  await step("an implausible hash or size is BadParamsError", async (s) => {
    const bytes = bytesOf(10);
    for (
      const hash of [
        "",
        "abc",
        hashOf(bytes).toUpperCase(),
        hashOf(bytes) + "0",
      ]
    ) {
      await rejects(s.put(bytes, hash, 10), BadParamsError);
      await rejects(s.open(hash), BadParamsError);
    }
    for (const size of [-1, 1.5, NaN]) {
      await rejects(s.put(bytes, hashOf(bytes), size), BadParamsError);
    }
  });

  await step("empty blob", async (s, f) => {
    const hash = hashOf("");
    await s.put(new Uint8Array(), hash, 0);
    const { size, body } = await s.open(hash);
    strictEqual(size, 0);
    strictEqual((await readAll(body)).length, 0);
    strictEqual((await f.catalog.getRef(hash))?.size, 0);
  });

  await step(
    "a blob is stored once whatever the number of puts",
    async (s, f) => {
      const bytes = bytesOf(20_000, 4);
      const hash = hashOf(bytes);
      const t0 = new Date(1_000_000);
      const t1 = new Date(2_000_000);
      await s.putAtTime(bytes, hash, bytes.length, t0);
      await s.putAtTime(bytes, hash, bytes.length, t1);
      strictEqual((await collect(f.backend.list!())).length, 1);
      strictEqual(
        (await f.catalog.getRef(hash))?.putTime.getTime(),
        t1.getTime(),
      );
    },
  );

  await step("a put of existing content still verifies it", async (s, f) => {
    const bytes = bytesOf(20_000, 5);
    const hash = hashOf(bytes);
    await s.put(bytes, hash, bytes.length);
    const wrong = bytesOf(20_000, 6);
    await rejects(s.put(wrong, hash, wrong.length), HashMismatchError);
    await rejects(
      s.put(bytes.subarray(1), hash, bytes.length),
      SizeMismatchError,
    );
    await rejects(s.put(bytes, hash, bytes.length - 1), SizeMismatchError);
    deepStrictEqual(await readAll((await s.open(hash)).body), bytes);
    strictEqual((await collect(f.backend.list!())).length, 1);
  });

  await step("wrong content stores and records nothing", async (s, f) => {
    const bytes = bytesOf(30_000, 7);
    const hash = hashOf(bytes);
    await rejects(s.put(bytesOf(30_000, 8), hash, 30_000), HashMismatchError);
    await rejects(s.put(bytes, hash, bytes.length + 10), SizeMismatchError);
    await rejects(s.put(bytes, hash, bytes.length - 10), SizeMismatchError);
    strictEqual(await f.catalog.getRef(hash), undefined);
    deepStrictEqual(await collect(f.backend.list!()), []);
    await rejects(s.open(hash), NotFoundError);
  });

  await step(
    "a source that errors midway records and leaves nothing",
    async (s, f) => {
      const bytes = bytesOf(100_000, 9);
      const hash = hashOf(bytes);
      const failure = new Error("client disconnected");
      await rejects(
        s.put(failingStream(bytes, 40_000, failure), hash, bytes.length),
        (err) => err === failure || (err as Error)?.cause === failure,
      );
      strictEqual(await f.catalog.getRef(hash), undefined);
      deepStrictEqual(await collect(f.backend.list!()), []);
    },
  );

  await step(
    "three simultaneous puts of one blob leave one stored copy",
    async (s, f) => {
      const bytes = bytesOf(200_000, 10);
      const hash = hashOf(bytes);
      await Promise.all(
        [1, 2, 3].map(() =>
          s.put(chunkedStream(bytes, 8192), hash, bytes.length)
        ),
      );
      const listed = await collect(f.backend.list!());
      strictEqual(listed.length, 1);
      strictEqual(listed[0].name, (await f.catalog.getRef(hash))?.name);
      deepStrictEqual(await readAll((await s.open(hash)).body), bytes);
    },
  );

  await step(
    "put says whether it created the blob: exactly one of racing puts did",
    async (s) => {
      const bytes = bytesOf(100_000, 12);
      const hash = hashOf(bytes);
      const results = await Promise.all(
        Array.from(
          { length: 8 },
          () => s.put(chunkedStream(bytes, 8192), hash, bytes.length),
        ),
      );
      strictEqual(results.filter((r) => r.created).length, 1);
      deepStrictEqual(await s.put(bytes, hash, bytes.length), {
        created: false,
      });
    },
  );

  await step(
    "a re-put whose blob a gc removes while it verifies is RetryableError, never success",
    async (s, f) => {
      const bytes = bytesOf(50_000, 13);
      const hash = hashOf(bytes);
      await s.put(bytes, hash, bytes.length);
      const { stream, release } = gatedStream(bytes, 20_000);
      const putting = s.put(stream, hash, bytes.length);
      await stream.started;
      // A gc whose cut-off is later than the put's start removes the blob.
      await s.gc(new Refs(), new Date(Date.now() + HOUR));
      strictEqual(await f.catalog.getRef(hash), undefined);
      release();
      await rejects(putting, RetryableError);
      // Nothing to undo: putting again stores it.
      deepStrictEqual(await s.put(bytes, hash, bytes.length), {
        created: true,
      });
      deepStrictEqual(await readAll((await s.open(hash)).body), bytes);
    },
  );

  await step(
    "a put that lost the insert race keeps its copy if gc removed the winner's",
    async (s, f) => {
      const bytes = bytesOf(30_000, 14);
      const hash = hashOf(bytes);
      // Another put records the blob while ours streams; then a gc removes
      // it, between our failed insert and our refresh of the winner.
      let raced = false;
      const catalog = withMethod(f.catalog, "insertRef", async (ref) => {
        if (!raced) {
          raced = true;
          const other = new Store({ catalog: f.catalog, backend: f.backend });
          strictEqual(
            (await other.put(bytes, hash, bytes.length)).created,
            true,
          );
          ok(!await f.catalog.insertRef(ref), "the other put won");
          await s.gc(new Refs(), new Date(Date.now() + HOUR));
          return false;
        }
        return await f.catalog.insertRef(ref);
      });
      const racing = new Store({ catalog, backend: f.backend });
      deepStrictEqual(await racing.put(bytes, hash, bytes.length), {
        created: true,
      });
      deepStrictEqual(await readAll((await s.open(hash)).body), bytes);
      strictEqual((await collect(f.backend.list!())).length, 1);
    },
  );

  await step(
    "a put whose catalog insert fails never removes bytes a reference may name",
    async (s, f) => {
      // The insert applied, its answer lost (the catalog died after it):
      // the blob is stored and referenced, so the put succeeds.
      const bytes = bytesOf(20_000, 16);
      const hash = hashOf(bytes);
      const lost = new Store({
        catalog: withMethod(f.catalog, "insertRef", async (ref) => {
          await f.catalog.insertRef(ref);
          throw new Error("connection reset after the insert");
        }),
        backend: f.backend,
      });
      deepStrictEqual(await lost.put(bytes, hash, bytes.length), {
        created: true,
      });
      deepStrictEqual(await readAll((await s.open(hash)).body), bytes);
      // The insert never happened: the put fails, its bytes stay for the
      // orphan sweep (no reference names them), which removes them.
      const other = bytesOf(20_000, 17);
      const failure = new Error("catalog unreachable");
      const down = new Store({
        catalog: withMethod(f.catalog, "insertRef", () => {
          throw failure;
        }),
        backend: f.backend,
      });
      await rejects(
        down.put(other, hashOf(other), other.length),
        (err) => err === failure,
      );
      strictEqual(await f.catalog.getRef(hashOf(other)), undefined);
      strictEqual((await collect(f.backend.list!())).length, 2);
      // s3api rounds times up to the next second: sweep as of a bit later.
      await new Promise((r) => setTimeout(r, 1100));
      strictEqual((await s.sweepOrphans({ olderThan: 0 })).removed, 1);
      deepStrictEqual(await readAll((await s.open(hash)).body), bytes);
    },
  );

  await step("ranges of a single blob", async (s) => {
    const bytes = bytesOf(10_000, 11);
    const hash = hashOf(bytes);
    await s.put(bytes, hash, bytes.length);
    for (
      const [start, end] of [
        [0, 1],
        [5000, 5001],
        [9999, 10_000],
        [100, 9000],
        [3000, 3000],
      ]
    ) {
      const { size, body } = await s.open(hash, { start, end });
      strictEqual(size, bytes.length);
      deepStrictEqual(await readAll(body), bytes.slice(start, end));
    }
    deepStrictEqual(
      await readAll((await s.open(hash, { start: 9990 })).body),
      bytes.slice(9990),
    );
    deepStrictEqual(
      await readAll((await s.open(hash, { end: 10 })).body),
      bytes.slice(0, 10),
    );
    await rejects(s.open(hash, { start: -1 }), BadParamsError);
  });

  await step(
    `a ${options.largeSize ?? 64 << 20}-byte streamed blob`,
    async (s) => {
      const size = options.largeSize ?? 64 << 20;
      const hash = await sha384(generatedStream(size));
      await s.put(generatedStream(size), hash, size);
      const { size: got, body } = await s.open(hash);
      strictEqual(got, size);
      strictEqual(await sha384(body), hash);
      const tail = await readAll(
        (await s.open(hash, { start: size - 100_000 })).body,
      );
      strictEqual(tail.length, 100_000);
    },
  );

  // ---- garbage collection ----

  await step(
    "gc deletes unreferenced blobs put at or before the cut-off",
    async (s, f) => {
      const blobs = [1, 2, 3, 4].map((i) => bytesOf(1000 * i, 20 + i));
      const times = [1000, 2000, 3000, 4000].map((ms) => new Date(ms));
      for (let i = 0; i < blobs.length; i++) {
        await s.putAtTime(
          blobs[i],
          hashOf(blobs[i]),
          blobs[i].length,
          times[i],
        );
      }
      const refs = new Refs();
      refs.add(hashOf(blobs[0]));
      // blob 1 unreferenced and old: deleted; blob 2 unreferenced, put at the
      // cut-off exactly: deleted; blob 3 put after: kept.
      const stats = await s.gc(refs, new Date(3000));
      deepStrictEqual(stats, { count: 1, maxSize: 1000, meanSize: 1000 });
      await s.open(hashOf(blobs[0]));
      await rejects(s.open(hashOf(blobs[1])), NotFoundError);
      await rejects(s.open(hashOf(blobs[2])), NotFoundError);
      await s.open(hashOf(blobs[3]));
      const names = (await collect(f.backend.list!())).map((o) => o.name)
        .sort();
      deepStrictEqual(
        names,
        [
          (await f.catalog.getRef(hashOf(blobs[0])))!.name,
          (await f.catalog.getRef(hashOf(blobs[3])))!.name,
        ].sort(),
      );
    },
  );

  await step(
    "gc stats: count, max and mean (rounded down) of blobs kept",
    async (s) => {
      const refs = new Refs();
      for (const n of [10, 20, 25]) {
        const bytes = bytesOf(n, n);
        await s.putAtTime(bytes, hashOf(bytes), n, new Date(0));
        refs.add(hashOf(bytes));
      }
      deepStrictEqual(await s.gc(refs, new Date(1)), {
        count: 3,
        maxSize: 25,
        meanSize: 18,
      });
      deepStrictEqual(await s.gc(new Refs(), new Date(1)), {
        count: 0,
        maxSize: 0,
        meanSize: 0,
      });
    },
  );

  await step(
    "gc never deletes a blob an upload holds, finished or in flight",
    async (s) => {
      const id = await s.newUpload(new Date(Date.now() + HOUR));
      const [p0, p1] = [bytesOf(MIN_PART, 30), bytesOf(50, 31)];
      await s.putPart(id, 0, p0, p0.length, 0, hashOf(p0));
      // An in-flight part: its record exists, its bytes are not complete.
      const p1hash = hashOf(p1);
      await rejects(
        s.putPart(id, 1, failingStream(p1, 10), p1.length, p0.length, p1hash),
      );
      // The same content put on its own is held by the part record.
      await s.putAtTime(p1, p1hash, p1.length, new Date(0));
      await s.gc(new Refs(), new Date(Date.now() + HOUR));
      await s.open(hashOf(p0));
      await s.open(p1hash);
      await s.putPart(id, 1, p1, p1.length, p0.length, p1hash);
      const { hash, index } = await s.finishUpload(id, [{ hash: hashOf(p0) }, {
        hash: p1hash,
      }]);
      await s.gc(new Refs(), new Date(Date.now() + HOUR));
      deepStrictEqual(
        await readAll((await s.open(hash, { index })).body),
        new Uint8Array([...p0, ...p1]),
      );
    },
  );

  await step(
    "a reference is removed only if its put time has not moved",
    async (_s, f) => {
      const hash = hashOf("race");
      ok(
        await f.catalog.insertRef({
          hash,
          name: "n",
          putTime: new Date(1000),
          size: 4,
        }),
      );
      ok(
        !(await f.catalog.insertRef({
          hash,
          name: "m",
          putTime: new Date(3000),
          size: 4,
        })),
      );
      strictEqual((await f.catalog.touchRef(hash, new Date(2000)))?.name, "n");
      ok(!(await f.catalog.removeRef(hash, new Date(1000))));
      ok(await f.catalog.getRef(hash));
      ok(await f.catalog.removeRef(hash, new Date(2000)));
      strictEqual(await f.catalog.getRef(hash), undefined);
      strictEqual(await f.catalog.touchRef(hash, new Date(2000)), undefined);
    },
  );

  await step(
    "sweepOrphans removes unnamed objects past the grace period only",
    async (s, f) => {
      const kept = bytesOf(1000, 80);
      await s.put(kept, hashOf(kept), kept.length);
      // A put that crashed after writing its bytes, before recording them.
      const orphan = bytesOf(2000, 81);
      const orphanName = newBlobName(hashOf(orphan));
      await f.backend.put(
        orphanName,
        chunkedStream(orphan, 500),
        orphan.length,
        hashOf(orphan),
      );
      // A stray copy of a recorded blob under another name is an orphan too.
      const strayName = newBlobName(hashOf(kept));
      await f.backend.put(
        strayName,
        chunkedStream(kept, 500),
        kept.length,
        hashOf(kept),
      );
      const young = await s.sweepOrphans({ olderThan: 3600_000 });
      deepStrictEqual(young, { examined: 3, removed: 0, removedBytes: 0 });
      // Let the clocks tick past the objects' modification times.
      await new Promise((r) => setTimeout(r, 1100));
      const swept = await s.sweepOrphans({ olderThan: 0 });
      deepStrictEqual(swept, { examined: 3, removed: 2, removedBytes: 3000 });
      const names = (await collect(f.backend.list!())).map((o) => o.name);
      deepStrictEqual(names, [(await f.catalog.getRef(hashOf(kept)))!.name]);
      deepStrictEqual(await readAll((await s.open(hashOf(kept))).body), kept);
      await rejects(s.sweepOrphans({ olderThan: -1 }), BadParamsError);
    },
  );

  // ---- multipart uploads ----

  await step(
    "multipart: upload, finish, open whole and ranges across parts",
    async (s) => {
      const { parts, hashes, whole } = parts3();
      const id = await s.newUpload(new Date(Date.now() + HOUR));
      let offset = 0;
      for (let i = 0; i < parts.length; i++) {
        await s.putPart(id, i, parts[i], parts[i].length, offset, hashes[i]);
        offset += parts[i].length;
      }
      const { hash, index } = await s.finishUpload(
        id,
        hashes.map((hash) => ({ hash })),
      );
      strictEqual(hash, hashOf(whole));
      deepStrictEqual(index, { sizes: parts.map((p) => p.length), hashes });
      const opened = await s.open(hash, { index });
      strictEqual(opened.size, whole.length);
      deepStrictEqual(await readAll(opened.body), whole);
      for (
        const [start, end] of [
          [0, 1],
          [99, 101],
          [50, 210],
          [206, 207],
          [150, 220],
          [219, 220],
          [100, 100],
          [0, 220],
        ]
      ) {
        const r = await s.open(hash, { index, start, end });
        strictEqual(r.size, whole.length);
        deepStrictEqual(
          await readAll(r.body),
          whole.slice(start, end),
          `range ${start}-${end}`,
        );
      }
      // Finishing again returns the same result.
      deepStrictEqual(
        await s.finishUpload(id, hashes.map((hash) => ({ hash }))),
        { hash, index },
      );
    },
  );

  await step(
    "multipart: offsets are inferred for sequential parts",
    async (s) => {
      const { parts, hashes, whole } = parts3();
      const id = await s.newUpload(new Date(Date.now() + HOUR));
      for (let i = 0; i < parts.length; i++) {
        await s.putPart(id, i, parts[i], parts[i].length, 0, hashes[i]);
      }
      const info = await s.uploadInfo(id);
      deepStrictEqual(info.parts.map((p) => p?.offset), [
        0,
        MIN_PART,
        2 * MIN_PART + 7,
      ]);
      const { hash, index } = await s.finishUpload(
        id,
        hashes.map((hash) => ({ hash })),
      );
      deepStrictEqual(multipartIndex(await s.uploadInfo(id)), index);
      deepStrictEqual(
        await readAll((await s.open(hash, { index })).body),
        whole,
      );
    },
  );

  await step(
    "multipart: parts uploaded concurrently and out of order",
    async (s) => {
      const { parts, hashes, whole } = parts3();
      const id = await s.newUpload(new Date(Date.now() + HOUR));
      const offsets = [0, MIN_PART, 2 * MIN_PART + 7];
      await Promise.all([2, 0, 1].map((i) =>
        s.putPart(
          id,
          i,
          chunkedStream(parts[i], 17),
          parts[i].length,
          offsets[i],
          hashes[i],
        )
      ));
      const { hash, index } = await s.finishUpload(
        id,
        hashes.map((hash) => ({ hash })),
      );
      strictEqual(hash, hashOf(whole));
      deepStrictEqual(
        await readAll((await s.open(hash, { index })).body),
        whole,
      );
    },
  );

  await step(
    "multipart: concurrent creation of one part: one wins, none corrupts",
    async (s) => {
      const p = bytesOf(MIN_PART, 45);
      const id = await s.newUpload(new Date(Date.now() + HOUR));
      const results = await Promise.allSettled(
        [1, 2, 3].map(() => s.putPart(id, 0, p, p.length, 0, hashOf(p))),
      );
      ok(
        results.some((r) => r.status === "fulfilled"),
        "at least one creation succeeds",
      );
      for (const r of results) {
        ok(
          r.status === "fulfilled" || r.reason instanceof ConflictError,
          `unexpected ${r.status === "rejected" && r.reason}`,
        );
      }
      deepStrictEqual((await s.uploadInfo(id)).parts, [{
        hash: hashOf(p),
        size: MIN_PART,
        offset: 0,
        complete: true,
      }]);
    },
  );

  await step("multipart: part number and size limits", async (s) => {
    const id = await s.newUpload(new Date(Date.now() + HOUR));
    const p = bytesOf(MIN_PART);
    await rejects(s.putPart(id, -1, p, p.length, 0, hashOf(p)), BadParamsError);
    await rejects(
      s.putPart(id, 10, p, p.length, 0, hashOf(p)),
      /part number 10 too big \(maximum 9\)/,
    );
    await rejects(s.putPart(id, 0, p, 0, 0, hashOf(p)), BadParamsError);
    await rejects(s.putPart(id, 0, p, 100_000, 0, hashOf(p)), /part 0 too big/);
    await rejects(s.putPart(id, 0, p, p.length, 0, "bad"), BadParamsError);
    await rejects(
      s.putPart(
        hashOf("no such upload").slice(0, 32),
        0,
        p,
        p.length,
        0,
        hashOf(p),
      ),
      NotFoundError,
    );
    deepStrictEqual((await s.uploadInfo(id)).parts, []);
  });

  await step(
    "multipart: every part but the last must reach the minimum size",
    async (s) => {
      const small = bytesOf(26, 50);
      const big = bytesOf(MIN_PART, 51);
      const id = await s.newUpload(new Date(Date.now() + HOUR));
      await s.putPart(id, 0, small, small.length, 0, hashOf(small));
      await rejects(
        s.putPart(id, 1, big, big.length, small.length, hashOf(big)),
        (err) =>
          err instanceof BadParamsError &&
          err.message ===
            `part 0 too small (need at least ${MIN_PART} bytes, got 26)`,
      );
      // Uploaded in the other order, the small part is rejected itself.
      const id2 = await s.newUpload(new Date(Date.now() + HOUR));
      await s.putPart(id2, 1, big, big.length, 26, hashOf(big));
      await rejects(
        s.putPart(id2, 0, small, small.length, 0, hashOf(small)),
        /part 0 too small/,
      );
    },
  );

  await step(
    "multipart: offsets must be contiguous, in any upload order",
    async (s) => {
      const { parts, hashes } = parts3();
      const id = await s.newUpload(new Date(Date.now() + HOUR));
      await rejects(
        s.putPart(id, 0, parts[0], parts[0].length, 5, hashes[0]),
        /part 0 should start at 0/,
      );
      await s.putPart(
        id,
        2,
        parts[2],
        parts[2].length,
        2 * MIN_PART + 7,
        hashes[2],
      );
      await rejects(
        s.putPart(id, 1, parts[1], parts[1].length, MIN_PART + 1, hashes[1]),
        /part 1 should end at/,
      );
      await s.putPart(id, 0, parts[0], parts[0].length, 0, hashes[0]);
      await rejects(
        s.putPart(id, 1, parts[1], parts[1].length, MIN_PART - 1, hashes[1]),
        /part 1 should start at 100/,
      );
      await s.putPart(id, 1, parts[1], parts[1].length, MIN_PART, hashes[1]);
      await s.finishUpload(id, hashes.map((hash) => ({ hash })));
    },
  );

  await step(
    "multipart: re-sent parts: same hash no-op, other hash conflict",
    async (s, f) => {
      const { parts, hashes } = parts3();
      const id = await s.newUpload(new Date(Date.now() + HOUR));
      await s.putPart(id, 0, parts[0], parts[0].length, 0, hashes[0]);
      await s.putPart(id, 0, parts[0], parts[0].length, 0, hashes[0]);
      await rejects(
        s.putPart(id, 0, parts[1], parts[1].length, 0, hashes[1]),
        ConflictError,
      );
      await rejects(
        s.putPart(id, 0, parts[0], parts[0].length + 1, 0, hashes[0]),
        ConflictError,
      );
      strictEqual((await collect(f.backend.list!())).length, 1);
      deepStrictEqual((await s.uploadInfo(id)).parts, [{
        hash: hashes[0],
        size: MIN_PART,
        offset: 0,
        complete: true,
      }]);
    },
  );

  await step(
    "multipart: a part refused for bad content can be re-sent with its right hash",
    async (s) => {
      const { parts, hashes } = parts3();
      const id = await s.newUpload(new Date(Date.now() + HOUR));
      const wrong = hashOf("not these bytes");
      await rejects(
        s.putPart(id, 0, parts[0], parts[0].length, 0, wrong),
        HashMismatchError,
      );
      strictEqual((await s.uploadInfo(id)).parts[0]?.hash, wrong);
      await s.putPart(id, 0, parts[0], parts[0].length, 0, hashes[0]);
      deepStrictEqual((await s.uploadInfo(id)).parts[0], {
        hash: hashes[0],
        size: MIN_PART,
        offset: 0,
        complete: true,
      });
      // Complete now: final.
      await rejects(
        s.putPart(id, 0, parts[0], parts[0].length, 0, wrong),
        ConflictError,
      );
    },
  );

  await step(
    "multipart: a re-send with another hash wins over a put of the old one still in flight",
    async (s) => {
      const { parts, hashes } = parts3();
      const id = await s.newUpload(new Date(Date.now() + HOUR));
      const { stream, release } = gatedStream(parts[0], 10);
      const slow = s.putPart(id, 0, stream, parts[0].length, 0, hashes[0]);
      await stream.started;
      const other = bytesOf(MIN_PART, 43);
      await s.putPart(id, 0, other, other.length, 0, hashOf(other));
      release();
      await rejects(slow, ConflictError);
      deepStrictEqual((await s.uploadInfo(id)).parts[0], {
        hash: hashOf(other),
        size: MIN_PART,
        offset: 0,
        complete: true,
      });
    },
  );

  await step(
    "multipart: an offset that cannot be inferred is BadParamsError and records nothing",
    async (s) => {
      const { parts, hashes } = parts3();
      const id = await s.newUpload(new Date(Date.now() + HOUR));
      await rejects(
        s.putPart(id, 1, parts[1], parts[1].length, 0, hashes[1]),
        (err) =>
          err instanceof BadParamsError &&
          /cannot infer the offset of part 1/.test(err.message),
      );
      deepStrictEqual((await s.uploadInfo(id)).parts, []);
      await s.putPart(id, 0, parts[0], parts[0].length, 0, hashes[0]);
      await s.putPart(id, 1, parts[1], parts[1].length, 0, hashes[1]);
      strictEqual((await s.uploadInfo(id)).parts[1]?.offset, MIN_PART);
      // A completed part re-sent at another offset is a conflict; with the
      // offset omitted or the same, a no-op.
      await rejects(
        s.putPart(id, 1, parts[1], parts[1].length, MIN_PART + 1, hashes[1]),
        ConflictError,
      );
      await s.putPart(id, 1, parts[1], parts[1].length, MIN_PART, hashes[1]);
      await s.putPart(id, 1, parts[1], parts[1].length, 0, hashes[1]);
      await s.putPart(id, 2, parts[2], parts[2].length, 0, hashes[2]);
      await s.finishUpload(id, hashes.map((hash) => ({ hash })));
    },
  );

  await step(
    "multipart: a failed part leaves an incomplete record that a retry completes",
    async (s) => {
      const { parts, hashes } = parts3();
      const id = await s.newUpload(new Date(Date.now() + HOUR));
      await rejects(
        s.putPart(id, 0, bytesOf(MIN_PART, 99), MIN_PART, 0, hashes[0]),
        HashMismatchError,
      );
      deepStrictEqual((await s.uploadInfo(id)).parts, [{
        hash: hashes[0],
        size: MIN_PART,
        offset: 0,
        complete: false,
      }]);
      strictEqual(multipartIndex(await s.uploadInfo(id)), undefined);
      await rejects(s.finishUpload(id, [{ hash: hashes[0] }]), ConflictError);
      await s.putPart(id, 0, parts[0], parts[0].length, 0, hashes[0]);
      strictEqual((await s.uploadInfo(id)).parts[0]?.complete, true);
    },
  );

  await step(
    "multipart: finish checks count, hashes and completeness",
    async (s) => {
      const { parts, hashes } = parts3();
      const id = await s.newUpload(new Date(Date.now() + HOUR));
      await s.putPart(id, 0, parts[0], parts[0].length, 0, hashes[0]);
      await s.putPart(id, 1, parts[1], parts[1].length, 0, hashes[1]);
      await rejects(
        s.finishUpload(id, [{ hash: hashes[0] }]),
        /part count mismatch \(expected 2 parts, got 1\)/,
      );
      await rejects(
        s.finishUpload(id, [{ hash: hashes[0] }, { hash: hashes[2] }]),
        BadParamsError,
      );
      await rejects(
        s.finishUpload(hashOf("none").slice(0, 32), []),
        NotFoundError,
      );
      const { hash } = await s.finishUpload(id, [{ hash: hashes[0] }, {
        hash: hashes[1],
      }]);
      strictEqual(hash, hashOf(concatBytes(parts.slice(0, 2))));
      strictEqual((await s.uploadInfo(id)).hash, hash);
      await rejects(
        s.putPart(id, 2, parts[2], parts[2].length, 0, hashes[2]),
        ConflictError,
      );
    },
  );

  await step(
    "multipart: one part is its own hash; no part is an empty blob",
    async (s) => {
      const p = bytesOf(33, 60);
      const id = await s.newUpload(new Date(Date.now() + HOUR));
      await s.putPart(id, 0, p, p.length, 0, hashOf(p));
      const { hash, index } = await s.finishUpload(id, [{ hash: hashOf(p) }]);
      strictEqual(hash, hashOf(p));
      deepStrictEqual(
        await readAll((await s.open(hash, { index, start: 3 })).body),
        p.slice(3),
      );
      const empty = await s.newUpload(new Date(Date.now() + HOUR));
      const done = await s.finishUpload(empty, []);
      strictEqual(done.hash, hashOf(""));
      const opened = await s.open(done.hash, { index: done.index });
      strictEqual(opened.size, 0);
      strictEqual((await readAll(opened.body)).length, 0);
    },
  );

  await step(
    "multipart: open with an index fails fast on a missing part",
    async (s) => {
      const { hashes } = parts3();
      await rejects(
        s.open(hashOf("x"), {
          index: {
            sizes: [MIN_PART, MIN_PART + 7],
            hashes: hashes.slice(0, 2),
          },
        }),
        NotFoundError,
      );
      await rejects(
        s.open(hashOf("x"), { index: { sizes: [1], hashes: [] } }),
        BadParamsError,
      );
    },
  );

  await step(
    "multipart: cancelling a multipart body releases it",
    async (s) => {
      const { parts, hashes } = parts3();
      const id = await uploadParts(s, parts, hashes);
      const { hash, index } = await s.finishUpload(
        id,
        hashes.map((hash) => ({ hash })),
      );
      const reader = (await s.open(hash, { index })).body.getReader();
      ok(!(await reader.read()).done);
      await reader.cancel();
      strictEqual(
        (await readAll((await s.open(hash, { index })).body)).length,
        220,
      );
    },
  );

  await step(
    "multipart: owner is set once, on finished uploads, and moves the expiry",
    async (s) => {
      const p = bytesOf(10, 70);
      const id = await s.newUpload(new Date(Date.now() + HOUR));
      await s.putPart(id, 0, p, p.length, 0, hashOf(p));
      await rejects(
        s.setOwner(id, "alice", new Date(Date.now() + 2 * HOUR)),
        /not finished/,
      );
      await s.finishUpload(id, [{ hash: hashOf(p) }]);
      const later = new Date(Date.now() + 48 * HOUR);
      await s.setOwner(id, "alice", later);
      await s.setOwner(id, "alice", later);
      await rejects(s.setOwner(id, "bob", later), ConflictError);
      const info = await s.uploadInfo(id);
      strictEqual(info.owner, "alice");
      strictEqual(info.expires.getTime(), later.getTime());
      await rejects(
        s.setOwner(hashOf("none").slice(0, 32), "alice", later),
        NotFoundError,
      );
    },
  );

  await step("multipart: removal, twice, and of owned uploads", async (s) => {
    const p = bytesOf(10, 71);
    const id = await s.newUpload(new Date(Date.now() + HOUR));
    await s.putPart(id, 0, p, p.length, 0, hashOf(p));
    await s.removeUpload(id);
    await s.removeUpload(id);
    await rejects(s.uploadInfo(id), NotFoundError);
    const owned = await s.newUpload(new Date(Date.now() + HOUR));
    await s.putPart(owned, 0, p, p.length, 0, hashOf(p));
    await s.finishUpload(owned, [{ hash: hashOf(p) }]);
    await s.setOwner(owned, "alice", new Date(Date.now() + HOUR));
    await rejects(
      s.removeUpload(owned, { isOwnedBy: () => true }),
      ConflictError,
    );
    await s.removeUpload(owned, {
      isOwnedBy: (_id, owner) => owner !== "alice",
    });
    await rejects(s.uploadInfo(owned), NotFoundError);
    // Without a guard an owned upload goes too, as Go's RemoveUpload does.
    const again = await s.newUpload(new Date(Date.now() + HOUR));
    await s.putPart(again, 0, p, p.length, 0, hashOf(p));
    await s.finishUpload(again, [{ hash: hashOf(p) }]);
    await s.setOwner(again, "alice", new Date(Date.now() + HOUR));
    await s.removeUpload(again);
    await rejects(s.uploadInfo(again), NotFoundError);
  });

  // ---- the running hash of an upload ----

  /** A store over `s`'s seams whose backend counts the reads it serves. */
  const counting = (s: Store, catalog: Catalog = s.catalog) => {
    const reads = { count: 0 };
    const backend = withMethod(
      s.backend,
      "get",
      (name: string, range?: { start?: number; end?: number }) => {
        reads.count++;
        return s.backend.get(name, range);
      },
    );
    const store = new Store({
      catalog,
      backend,
      minPartSize: MIN_PART,
      hashing: options.hashing,
    });
    return { store, reads };
  };

  const five = () => {
    const parts = [0, 1, 2, 3].map((i) => bytesOf(MIN_PART + i * 11, 90 + i));
    parts.push(bytesOf(7, 99));
    return { parts, hashes: parts.map(hashOf), whole: concatBytes(parts) };
  };

  const finishes = async (
    store: Store,
    id: string,
    hashes: string[],
    whole: Uint8Array,
  ) => {
    const { hash, index } = await store.finishUpload(
      id,
      hashes.map((hash) => ({ hash })),
    );
    strictEqual(hash, hashOf(whole));
    deepStrictEqual(
      await readAll((await store.open(hash, { index })).body),
      whole,
    );
  };

  await step(
    "running hash: parts sent in order finish without reading a byte back",
    async (s) => {
      if (!s.catalog.advanceHashState) return;
      const { parts, hashes, whole } = five();
      const { store, reads } = counting(s);
      const id = await uploadParts(store, parts, hashes);
      strictEqual((await s.catalog.getUpload(id))!.hashState?.parts, 5);
      strictEqual(reads.count, 0);
      await store.finishUpload(id, hashes.map((hash) => ({ hash })));
      strictEqual(reads.count, 0);
      await finishes(store, id, hashes, whole);
    },
  );

  await step(
    "running hash: parts sent in reverse are folded in when the gap closes",
    async (s) => {
      if (!s.catalog.advanceHashState) return;
      const { parts, hashes, whole } = five();
      const { store, reads } = counting(s);
      const id = await store.newUpload(new Date(Date.now() + HOUR));
      const offsets = parts.map((_, i) =>
        parts.slice(0, i).reduce((n, p) => n + p.length, 0)
      );
      for (let i = parts.length - 1; i >= 1; i--) {
        await store.putPart(
          id,
          i,
          parts[i],
          parts[i].length,
          offsets[i],
          hashes[i],
        );
        strictEqual((await s.catalog.getUpload(id))!.hashState, undefined);
      }
      await store.putPart(id, 0, parts[0], parts[0].length, 0, hashes[0]);
      // Part 0 closed the gap: parts 1 to 4 were read back into the state.
      strictEqual((await s.catalog.getUpload(id))!.hashState?.parts, 5);
      strictEqual(reads.count, 4);
      await store.finishUpload(id, hashes.map((hash) => ({ hash })));
      strictEqual(reads.count, 4);
      await finishes(store, id, hashes, whole);
    },
  );

  await step(
    "running hash: parts racing each other, and re-sent, still give the whole hash",
    async (s) => {
      const { parts, hashes, whole } = five();
      const id = await s.newUpload(new Date(Date.now() + HOUR));
      const offsets = parts.map((_, i) =>
        parts.slice(0, i).reduce((n, p) => n + p.length, 0)
      );
      const send = (i: number) =>
        s.putPart(id, i, parts[i], parts[i].length, offsets[i], hashes[i]);
      await Promise.all([...parts.keys(), 2, 0, 4].map(send));
      await finishes(s, id, hashes, whole);
    },
  );

  await step(
    "running hash: a part killed between its bytes and its record, then re-sent",
    async (s) => {
      if (!s.catalog.advanceHashState) return;
      const { parts, hashes, whole } = five();
      let crash = true;
      const catalog = withMethod(
        s.catalog,
        "completePart",
        (id: string, part: number, hash: string) => {
          if (part === 2 && crash) {
            crash = false;
            return Promise.reject(new Error("killed"));
          }
          return s.catalog.completePart(id, part, hash);
        },
      );
      const { store, reads } = counting(s, catalog);
      const id = await store.newUpload(new Date(Date.now() + HOUR));
      await store.putPart(id, 0, parts[0], parts[0].length, 0, hashes[0]);
      await store.putPart(id, 1, parts[1], parts[1].length, 0, hashes[1]);
      await rejects(
        store.putPart(id, 2, parts[2], parts[2].length, 0, hashes[2]),
        /killed/,
      );
      strictEqual((await s.catalog.getUpload(id))!.hashState?.parts, 2);
      for (let i = 2; i < parts.length; i++) {
        await store.putPart(id, i, parts[i], parts[i].length, 0, hashes[i]);
      }
      strictEqual((await s.catalog.getUpload(id))!.hashState?.parts, 5);
      await finishes(store, id, hashes, whole);
      strictEqual(reads.count, 5); // finishes' read of the blob, nothing before
    },
  );

  await step(
    "running hash: an unusable or missing state makes finish read back, never hash wrong",
    async (s) => {
      const { parts, hashes, whole } = five();
      // A catalog without the step: finish reads every part.
      const plain = withMethod(s.catalog, "advanceHashState", undefined);
      const { store, reads } = counting(s, plain);
      const id = await uploadParts(store, parts, hashes);
      strictEqual((await s.catalog.getUpload(id))!.hashState, undefined);
      await finishes(store, id, hashes, whole);
      strictEqual(reads.count, 5 + 5); // the finish, then finishes' read
      if (!s.catalog.advanceHashState) return;
      // A state cut short in the catalog: ignored, every part read.
      const other = await uploadParts(s, parts, hashes);
      const cut = new Uint8Array(40);
      ok(await s.catalog.advanceHashState(other, 5, { parts: 6, state: cut }));
      const again = counting(s);
      await finishes(again.store, other, hashes, whole);
      strictEqual(again.reads.count, 5 + 5);
      // A state with one byte changed would resume silently to a wrong
      // hash; its check makes it unusable, and every part is read.
      const third = await s.newUpload(new Date(Date.now() + HOUR));
      let offset = 0;
      for (let i = 0; i < 4; i++) {
        await s.putPart(third, i, parts[i], parts[i].length, offset, hashes[i]);
        offset += parts[i].length;
      }
      const kept = (await s.catalog.getUpload(third))!.hashState!;
      strictEqual(kept.parts, 4);
      const flipped = new Uint8Array(kept.state);
      flipped[100] ^= 1;
      ok(
        await s.catalog.advanceHashState(third, 4, {
          parts: 5,
          state: flipped,
        }),
      );
      await s.putPart(third, 4, parts[4], parts[4].length, offset, hashes[4]);
      const last = counting(s);
      const { hash } = await last.store.finishUpload(
        third,
        hashes.map((hash) => ({ hash })),
      );
      strictEqual(hash, hashOf(whole));
      strictEqual(last.reads.count, 5);
    },
  );

  // ---- bytes the store hashes itself ----

  await step(
    "putPart resolves to the completed record, offset inferred",
    async (s) => {
      const { parts, hashes } = parts3();
      const id = await s.newUpload(new Date(Date.now() + HOUR));
      deepStrictEqual(
        await s.putPart(id, 0, parts[0], parts[0].length, 0, hashes[0]),
        { hash: hashes[0], size: parts[0].length, offset: 0, complete: true },
      );
      const second = { hash: hashes[1], size: parts[1].length, complete: true };
      const offset = parts[0].length;
      deepStrictEqual(
        await s.putPart(id, 1, parts[1], parts[1].length, 0, hashes[1]),
        { ...second, offset },
      );
      // Sent again: the same record, nothing done.
      deepStrictEqual(
        await s.putPart(id, 1, parts[1], parts[1].length, offset, hashes[1]),
        { ...second, offset },
      );
    },
  );

  await step(
    "putBytes hashes, stores once, and says whether it created",
    async (s) => {
      const bytes = bytesOf(20_000, 123);
      const first = await s.putBytes(bytes);
      strictEqual(first.hash, hashOf(bytes));
      ok(first.created);
      const again = await s.putBytes(bytes);
      deepStrictEqual(again, { hash: hashOf(bytes), created: false });
      deepStrictEqual(await readAll((await s.open(first.hash)).body), bytes);
    },
  );

  await step(
    "putPartBytes: parts in order, a kept tail replaced by a longer part, a finish with no read",
    async (s) => {
      const { parts, hashes, whole } = five();
      const { store, reads } = counting(s);
      const id = await store.newUpload(new Date(Date.now() + HOUR), {
        info: '{"length":433}',
      });
      strictEqual((await store.uploadInfo(id)).info, '{"length":433}');
      let offset = 0;
      for (let i = 0; i < 3; i++) {
        const { hash } = await store.putPartBytes(id, i, parts[i], offset);
        strictEqual(hash, hashes[i]);
        offset += parts[i].length;
      }
      // A tail: recorded incomplete, its bytes kept through a GC.
      const tail = parts[3].subarray(0, 50);
      const { hash: tailHash } = await store.putPartBytes(id, 3, tail, offset, {
        complete: false,
      });
      const record = (await store.uploadInfo(id)).parts[3]!;
      deepStrictEqual(record, {
        hash: hashOf(tail),
        size: 50,
        offset,
        complete: false,
      });
      strictEqual(tailHash, hashOf(tail));
      await store.gc(new Refs(), new Date(Date.now() + HOUR));
      strictEqual((await s.catalog.getRef(tailHash))?.size, 50);
      // The longer part replaces it, and extends the running hash.
      await store.putPartBytes(id, 3, parts[3], offset);
      await store.putPartBytes(id, 4, parts[4], offset + parts[3].length);
      if (s.catalog.advanceHashState) {
        strictEqual((await s.catalog.getUpload(id))!.hashState?.parts, 5);
      }
      await store.finishUpload(id, hashes.map((hash) => ({ hash })));
      if (s.catalog.advanceHashState) strictEqual(reads.count, 0);
      await finishes(store, id, hashes, whole);
      // A complete part sent again is a no-op; with other bytes, a conflict.
      const done = await store.newUpload(new Date(Date.now() + HOUR));
      await store.putPartBytes(done, 0, parts[0], 0);
      await store.putPartBytes(done, 0, parts[0], 0);
      await rejects(store.putPartBytes(done, 0, parts[1], 0), ConflictError);
    },
  );

  await step(
    "putPartBytes: a GC between the bytes and the record cannot lose the part",
    async (s) => {
      const { parts, hashes } = five();
      const id = await s.newUpload(new Date(Date.now() + HOUR));
      // A GC with a cut-off in the future runs just before the record is
      // made: the fresh blob, held by nothing yet, goes.
      const catalog = withMethod(
        s.catalog,
        "initPart",
        async (uploadId: string, part: number, record: PartRecordLike) => {
          await s.gc(new Refs(), new Date(Date.now() + HOUR));
          strictEqual(await s.catalog.getRef(record.hash), undefined);
          return await s.catalog.initPart(uploadId, part, record);
        },
      );
      const store = new Store({
        catalog,
        backend: s.backend,
        minPartSize: MIN_PART,
      });
      await store.putPartBytes(id, 0, parts[0], 0);
      strictEqual((await s.catalog.getRef(hashes[0]))?.size, parts[0].length);
      deepStrictEqual(await readAll((await s.open(hashes[0])).body), parts[0]);
    },
  );

  await step(
    "putPartBytes: a crash between the bytes and the record keeps the old tail",
    async (s) => {
      const { parts } = five();
      const id = await s.newUpload(new Date(Date.now() + HOUR));
      const tail = parts[0].subarray(0, 30);
      await s.putPartBytes(id, 0, tail, 0, { complete: false });
      const catalog = withMethod(
        s.catalog,
        "initPart",
        () => Promise.reject(new Error("killed")),
      );
      const store = new Store({
        catalog,
        backend: s.backend,
        minPartSize: MIN_PART,
      });
      await rejects(store.putPartBytes(id, 0, parts[0], 0), /killed/);
      const record = (await s.uploadInfo(id)).parts[0]!;
      strictEqual(record.hash, hashOf(tail));
      strictEqual((await s.catalog.getRef(record.hash))?.size, 30);
    },
  );

  await step(
    "putParts: parts hashed as they arrive and stored in order; the running hash finishes with no read",
    async (s) => {
      const { store, reads } = counting(s);
      const whole = bytesOf(MIN_PART * 4 + 37, 41);
      const parts = [0, 1, 2, 3].map((i) =>
        whole.subarray(i * MIN_PART, (i + 1) * MIN_PART)
      );
      const hashes = parts.map(hashOf);
      const id = await store.newUpload(new Date(Date.now() + HOUR));
      // Chunks that straddle part boundaries; the last part is held.
      const result = await store.putParts(
        id,
        0,
        chunkedStream(whole.subarray(0, 4 * MIN_PART), 33),
        { partSize: MIN_PART, size: 4 * MIN_PART, holdFrom: 4 * MIN_PART },
      );
      strictEqual(result.failure, undefined);
      strictEqual(result.next, 3);
      deepStrictEqual(result.hashes, hashes.slice(0, 3));
      deepStrictEqual(result.rest, parts[3]);
      const record = (await s.catalog.getUpload(id))!;
      deepStrictEqual(
        record.parts.map((p) => p && { ...p }),
        [0, 1, 2].map((i) => ({
          hash: hashes[i],
          size: MIN_PART,
          offset: i * MIN_PART,
          complete: true,
        })),
      );
      if (s.catalog.advanceHashState) strictEqual(record.hashState?.parts, 3);
      // The rest goes on from part 3, the held part in front.
      const more = await store.putParts(
        id,
        3,
        chunkedStream(whole.subarray(3 * MIN_PART), 64),
        { partSize: MIN_PART, size: whole.length - 3 * MIN_PART },
      );
      strictEqual(more.next, 4);
      deepStrictEqual(more.rest, whole.subarray(4 * MIN_PART));
      const last = await store.putPartBytes(id, 4, more.rest, 4 * MIN_PART);
      const all = [...hashes, last.hash];
      await store.finishUpload(id, all.map((hash) => ({ hash })));
      if (s.catalog.advanceHashState) strictEqual(reads.count, 0);
      await finishes(store, id, all, whole);
    },
  );

  await step(
    "putParts: a source that fails keeps the parts stored and gives what arrived; too many bytes is SizeMismatchError",
    async (s) => {
      const whole = bytesOf(MIN_PART * 3, 42);
      const id = await s.newUpload(new Date(Date.now() + HOUR));
      const cut = new Error("client gone");
      const failed = await s.putParts(
        id,
        0,
        failingStream(whole, 2 * MIN_PART + 30, cut),
        { partSize: MIN_PART, size: whole.length },
      );
      strictEqual(failed.failure, cut);
      strictEqual(failed.next, 2);
      deepStrictEqual(
        failed.rest,
        whole.subarray(2 * MIN_PART, 2 * MIN_PART + 30),
      );
      strictEqual((await s.uploadInfo(id)).parts.length, 2);
      for (let i = 0; i < 2; i++) {
        const stored = whole.subarray(i * MIN_PART, (i + 1) * MIN_PART);
        strictEqual((await s.catalog.getRef(hashOf(stored)))?.size, MIN_PART);
      }
      const other = await s.newUpload(new Date(Date.now() + HOUR));
      await rejects(
        s.putParts(other, 0, chunkedStream(whole, 50), {
          partSize: MIN_PART,
          size: 2 * MIN_PART + 10,
        }),
        SizeMismatchError,
      );
      // The parts within the size were stored before the excess showed.
      strictEqual((await s.uploadInfo(other)).parts.length, 2);
    },
  );

  await step(
    "putParts: a failure to store one part is thrown once the part before it is stored",
    async (s) => {
      const whole = bytesOf(MIN_PART * 4, 43);
      const id = await s.newUpload(new Date(Date.now() + HOUR));
      const catalog = withMethod(
        s.catalog,
        "initPart",
        (uploadId: string, part: number, record: PartRecordLike) =>
          part === 2
            ? Promise.reject(new Error("catalog down"))
            : s.catalog.initPart(uploadId, part, record),
      );
      const store = new Store({
        catalog,
        backend: s.backend,
        minPartSize: MIN_PART,
        hashing: options.hashing,
      });
      await rejects(
        store.putParts(id, 0, chunkedStream(whole, 70), {
          partSize: MIN_PART,
          size: whole.length,
        }),
        /catalog down/,
      );
      const record = (await s.catalog.getUpload(id))!;
      deepStrictEqual(record.parts.map((p) => p?.complete), [true, true]);
    },
  );

  await step(
    "putStaged: hashed on the way, named once; nothing left by a wrong hash or size, a failing source, a blob already there",
    async (s) => {
      if (!s.canStage) {
        await rejects(s.putStaged(bytesOf(10, 1), 10), BadParamsError);
        return;
      }
      const objects = async () =>
        s.backend.list ? (await collect(s.backend.list())).length : 0;
      const bytes = bytesOf(MIN_PART * 3 + 5, 44);
      const first = await s.putStaged(chunkedStream(bytes, 37), bytes.length);
      deepStrictEqual(first, { hash: hashOf(bytes), created: true });
      deepStrictEqual(await readAll((await s.open(first.hash)).body), bytes);
      const count = await objects();
      // Again: refreshed, the second copy discarded.
      deepStrictEqual(await s.putStaged(bytes, bytes.length), {
        hash: hashOf(bytes),
        created: false,
      });
      const other = bytesOf(MIN_PART * 2, 45);
      await rejects(
        s.putStaged(other, other.length, { expected: hashOf(bytes) }),
        HashMismatchError,
      );
      await rejects(s.putStaged(other, other.length + 1), SizeMismatchError);
      await rejects(s.putStaged(other, other.length - 1), SizeMismatchError);
      await rejects(
        s.putStaged(failingStream(other, 50), other.length),
        /source failed midway/,
      );
      await rejects(s.stat(hashOf(other)), NotFoundError);
      strictEqual(await objects(), count);
      // Nothing staged is left for the sweep either.
      if (s.backend.sweep) strictEqual(await s.backend.sweep(0), 0);
    },
  );

  await step(
    "putUnknown: the store learns the hash, single or in parts, de-duplicated",
    async (s) => {
      const blobs = new MultipartBlobs(s);
      const small = bytesOf(80, 7);
      deepStrictEqual(
        await blobs.putUnknown(chunkedStream(small, 7), small.length, {
          partSize: MIN_PART,
        }),
        { hash: hashOf(small), size: 80, created: true },
      );
      strictEqual((await s.stat(hashOf(small))).kind, "single");
      const big = bytesOf(MIN_PART * 3 + 17, 8);
      const put = () =>
        blobs.putUnknown(chunkedStream(big, 33), big.length, {
          partSize: MIN_PART,
        });
      deepStrictEqual(await put(), {
        hash: hashOf(big),
        size: big.length,
        created: true,
      });
      const stat = await blobs.stat(hashOf(big));
      // A backend that stages names one object by the hash it learned;
      // others take parts.
      if (s.canStage) strictEqual(stat.kind, "single");
      else deepStrictEqual(stat.index?.sizes, [100, 100, 100, 17]);
      deepStrictEqual(await readAll((await blobs.open(hashOf(big))).body), big);
      // Again: the blob is there; the second upload does not stay.
      const before = await collect(s.catalog.uploads());
      strictEqual((await put()).created, false);
      strictEqual((await collect(s.catalog.uploads())).length, before.length);
      // Stored whole already: the multipart copy goes.
      const whole = bytesOf(MIN_PART * 2 + 1, 9);
      await s.put(whole, hashOf(whole), whole.length);
      const again = await blobs.putUnknown(whole, whole.length, {
        partSize: MIN_PART,
      });
      deepStrictEqual(again, {
        hash: hashOf(whole),
        size: whole.length,
        created: false,
      });
      strictEqual(await blobs.registry.get(hashOf(whole)), undefined);
    },
  );

  await step(
    "putUnknown: a wrong expected hash or size records nothing",
    async (s) => {
      const blobs = new MultipartBlobs(s);
      for (const size of [60, MIN_PART * 2 + 5]) {
        const bytes = bytesOf(size, 10);
        const before = await collect(s.catalog.uploads());
        await rejects(
          blobs.putUnknown(bytes, size, {
            partSize: MIN_PART,
            expected: hashOf("other"),
          }),
          HashMismatchError,
        );
        await rejects(
          blobs.putUnknown(bytes, size + 1, { partSize: MIN_PART }),
          SizeMismatchError,
        );
        await rejects(
          blobs.putUnknown(bytes, size - 1, { partSize: MIN_PART }),
          SizeMismatchError,
        );
        await rejects(blobs.stat(hashOf(bytes)), NotFoundError);
        deepStrictEqual(await collect(s.catalog.uploads()), before);
      }
    },
  );

  await step(
    "publish: a one-part upload's blob is its part; keep leaves the record, finished and unowned",
    async (s) => {
      const blobs = new MultipartBlobs(s);
      const expires = new Date(Date.now() + HOUR);
      // One part: its blob is a plain blob, readable by hash already.
      const small = bytesOf(40, 11);
      const one = await s.newUpload(expires, { info: "one" });
      const part = await s.putPartBytes(one, 0, small, 0);
      deepStrictEqual(await blobs.publish(one, [part], { keep: true }), {
        hash: hashOf(small),
        size: 40,
        created: false,
      });
      const kept = await s.uploadInfo(one);
      strictEqual(kept.hash, hashOf(small));
      strictEqual(kept.owner, undefined);
      strictEqual(kept.expires.getTime(), expires.getTime());
      strictEqual(kept.info, "one");
      strictEqual(await blobs.registry.get(hashOf(small)), undefined);
      deepStrictEqual(
        await readAll((await blobs.open(hashOf(small))).body),
        small,
      );
      // Published again (a resumed client asking twice): the same answer.
      strictEqual(
        (await blobs.publish(one, [part], { keep: true })).hash,
        hashOf(small),
      );

      // Parts: registered and owned by the service; a second upload of the
      // same bytes is a duplicate, kept unowned with keep, removed without.
      const big = bytesOf(MIN_PART * 2 + 9, 12);
      const upload = async () => {
        const id = await s.newUpload(expires);
        const parts = [];
        for (let at = 0, n = 0; at < big.length; at += MIN_PART, n++) {
          const bytes = big.subarray(at, Math.min(at + MIN_PART, big.length));
          parts.push(await s.putPartBytes(id, n, bytes, at));
        }
        return { id, parts };
      };
      const first = await upload();
      deepStrictEqual(await blobs.publish(first.id, first.parts), {
        hash: hashOf(big),
        size: big.length,
        created: true,
      });
      strictEqual((await s.uploadInfo(first.id)).owner, blobs.owner);
      const second = await upload();
      strictEqual(
        (await blobs.publish(second.id, second.parts, { keep: true })).created,
        false,
      );
      strictEqual((await s.uploadInfo(second.id)).owner, undefined);
      const third = await upload();
      strictEqual((await blobs.publish(third.id, third.parts)).created, false);
      await rejects(s.uploadInfo(third.id), NotFoundError);
      deepStrictEqual(await readAll((await blobs.open(hashOf(big))).body), big);

      // A wrong expected hash: finished, but neither registered nor owned.
      const other = bytesOf(MIN_PART + 3, 13);
      const id = await s.newUpload(expires);
      const p0 = await s.putPartBytes(id, 0, other.subarray(0, MIN_PART), 0);
      const p1 = await s.putPartBytes(
        id,
        1,
        other.subarray(MIN_PART),
        MIN_PART,
      );
      await rejects(
        blobs.publish(id, [p0, p1], { expected: hashOf("other") }),
        HashMismatchError,
      );
      strictEqual((await s.uploadInfo(id)).owner, undefined);
      strictEqual(await blobs.registry.get(hashOf(other)), undefined);
    },
  );

  await step(
    "multipart: a finish racing a removal fails with NotFoundError",
    async (s) => {
      const { parts, hashes } = parts3();
      const id = await uploadParts(s, parts, hashes);
      // The removal lands after the finish has read the upload, before it
      // records the hash (the finish needs no I/O in between when the
      // running hash covers every part).
      const catalog = withMethod(
        s.catalog,
        "setUploadHash",
        async (uploadId: string, hash: string) => {
          await s.removeUpload(uploadId);
          return await s.catalog.setUploadHash(uploadId, hash);
        },
      );
      const racing = new Store({
        catalog,
        backend: s.backend,
        minPartSize: MIN_PART,
      });
      await rejects(
        racing.finishUpload(id, hashes.map((hash) => ({ hash }))),
        NotFoundError,
      );
    },
  );

  await step(
    "multipart: a part uploading while its upload is removed fails",
    async (s) => {
      const p = bytesOf(MIN_PART, 72);
      const id = await s.newUpload(new Date(Date.now() + HOUR));
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const slow = new ReadableStream<Uint8Array>({
        async pull(c) {
          await gate;
          c.enqueue(p);
          c.close();
        },
      });
      const uploading = s.putPart(id, 0, slow, p.length, 0, hashOf(p));
      while (!(await s.uploadInfo(id).catch(() => undefined))?.parts[0]) {
        await new Promise((r) => setTimeout(r, 5));
      }
      await s.removeUpload(id);
      release();
      await rejects(uploading, NotFoundError);
    },
  );

  await step("multipart: expired uploads are removed", async (s) => {
    const old = await s.newUpload(new Date(1000));
    const fresh = await s.newUpload(new Date(Date.now() + HOUR));
    await s.removeExpiredUploads(new Date(2000));
    await rejects(s.uploadInfo(old), NotFoundError);
    await s.uploadInfo(fresh);
    await s.removeExpiredUploads();
    await s.uploadInfo(fresh);
    await rejects(s.newUpload(new Date(NaN)), BadParamsError);
  });
}

/** `target` with its method `name` replaced by `method`; the rest delegates. */
/** The fields of a part record the tests read. */
interface PartRecordLike {
  hash: string;
  size: number;
  offset: number;
  complete: boolean;
}

function withMethod<T extends object, K extends keyof T>(
  target: T,
  name: K,
  method: T[K],
): T {
  return new Proxy(target, {
    get: (obj, key) => {
      if (key === name) return method;
      const value = Reflect.get(obj, key, obj);
      return typeof value === "function" ? value.bind(obj) : value;
    },
  });
}

/**
 * A stream of `bytes` that sends the first `first` bytes, then waits for
 * `release()` before sending the rest; `started` resolves once its reader
 * pulled the first bytes.
 */
function gatedStream(bytes: Uint8Array, first: number): {
  stream: ReadableStream<Uint8Array> & { started: Promise<void> };
  release: () => void;
} {
  const gate = Promise.withResolvers<void>();
  const started = Promise.withResolvers<void>();
  let sent = false;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!sent) {
        sent = true;
        controller.enqueue(bytes.slice(0, first));
        started.resolve();
        return;
      }
      await gate.promise;
      controller.enqueue(bytes.slice(first));
      controller.close();
    },
  }, { highWaterMark: 0 }); // pulled only when read, not on creation
  return {
    stream: Object.assign(stream, { started: started.promise }),
    release: () => gate.resolve(),
  };
}

/** Starts an upload and puts every part in order (offsets inferred). */
async function uploadParts(
  s: Store,
  parts: Uint8Array[],
  hashes: string[],
): Promise<string> {
  const id = await s.newUpload(new Date(Date.now() + HOUR));
  for (let i = 0; i < parts.length; i++) {
    await s.putPart(id, i, parts[i], parts[i].length, 0, hashes[i]);
  }
  return id;
}
