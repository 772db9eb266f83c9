/**
 * The contract every {@linkcode Backend} must meet, as one suite that each
 * backend's test file runs on its own fixture.
 *
 * @module
 */

import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert";
import type { Backend } from "../src/backend.ts";
import {
  HashMismatchError,
  NotFoundError,
  SizeMismatchError,
} from "../src/errors.ts";
import { newBlobName } from "../src/names.ts";
import {
  bytesOf,
  chunkedStream,
  collect,
  failingStream,
  hashOf,
  readAll,
} from "./helpers.ts";

/** A fresh, empty backend, and how to dispose of it. */
export interface BackendFixture {
  /** The backend under test. */
  backend: Backend;
  /** Releases whatever the fixture holds (connections, files, containers). */
  close(): Promise<void>;
}

/** Runs the backend contract as steps of `t`, each on a fresh fixture. */
export async function testBackendContract(
  t: Deno.TestContext,
  open: () => Promise<BackendFixture>,
): Promise<void> {
  const step = (name: string, fn: (backend: Backend) => Promise<void>) =>
    t.step(name, async () => {
      const fixture = await open();
      try {
        await fn(fixture.backend);
      } finally {
        await fixture.close();
      }
    });

  await step("put then get returns the bytes and the size", async (b) => {
    const bytes = bytesOf(100_000, 3);
    const name = await putBytes(b, bytes, 7_000);
    const { size, body } = await b.get(name);
    strictEqual(size, bytes.length);
    deepStrictEqual(await readAll(body), bytes);
  });

  await step("empty blob", async (b) => {
    const name = await putBytes(b, new Uint8Array(), 1);
    const { size, body } = await b.get(name);
    strictEqual(size, 0);
    strictEqual((await readAll(body)).length, 0);
  });

  await step(
    "ranges read exactly [start, end), across chunk boundaries",
    async (b) => {
      const bytes = bytesOf(300_001, 5);
      const name = await putBytes(b, bytes, 65_536);
      const ranges: [number | undefined, number | undefined][] = [
        [0, 1],
        [65_535, 65_537],
        [100, 200_000],
        [299_999, undefined],
        [undefined, 10],
        [123_456, 123_456],
        [0, 300_001],
        [250_000, 999_999],
      ];
      for (const [start, end] of ranges) {
        const got = await b.get(name, { start, end });
        strictEqual(got.size, bytes.length, `size for ${start}-${end}`);
        deepStrictEqual(
          await readAll(got.body),
          bytes.slice(start ?? 0, Math.min(end ?? bytes.length, bytes.length)),
          `bytes ${start}-${end}`,
        );
      }
    },
  );

  await step("get of an absent object is NotFoundError", async (b) => {
    await rejects(b.get(newBlobName(hashOf("absent"))), NotFoundError);
  });

  await step(
    "a wrong hash is HashMismatchError and stores nothing",
    async (b) => {
      const bytes = bytesOf(10_000);
      const name = newBlobName(hashOf("something else"));
      await rejects(
        b.put(
          name,
          chunkedStream(bytes, 1000),
          bytes.length,
          hashOf("something else"),
        ),
        HashMismatchError,
      );
      await assertNothingStored(b, name);
    },
  );

  for (
    const [kind, declared] of [["short", 10_001], ["long", 9_999]] as const
  ) {
    await step(
      `${kind} content is SizeMismatchError and stores nothing`,
      async (b) => {
        const bytes = bytesOf(10_000);
        const name = newBlobName(hashOf(bytes));
        await rejects(
          b.put(name, chunkedStream(bytes, 1000), declared, hashOf(bytes)),
          SizeMismatchError,
        );
        await assertNothingStored(b, name);
      },
    );
  }

  await step(
    "a source that fails midway rejects and stores nothing",
    async (b) => {
      const bytes = bytesOf(50_000);
      const name = newBlobName(hashOf(bytes));
      const failure = new Error("client went away");
      await rejects(
        b.put(
          name,
          failingStream(bytes, 20_000, failure),
          bytes.length,
          hashOf(bytes),
        ),
        (err) => err === failure || (err as Error)?.cause === failure,
      );
      await assertNothingStored(b, name);
    },
  );

  await step("remove deletes; removing again is not an error", async (b) => {
    const name = await putBytes(b, bytesOf(1000), 1000);
    await b.remove(name);
    await rejects(b.get(name), NotFoundError);
    await b.remove(name);
    await b.remove(newBlobName(hashOf("never stored")));
  });

  await step(
    "removeMany removes every name given; absent ones are not an error",
    async (b) => {
      // Optional: Store.gc falls back to remove() one name at a time.
      if (!b.removeMany) return;
      const names: string[] = [];
      for (let i = 0; i < 3; i++) {
        names.push(await putBytes(b, bytesOf(70_000 + i, i), 7_000));
      }
      const kept = await putBytes(b, bytesOf(10, 9), 10);
      await b.removeMany([...names, newBlobName(hashOf("never stored"))]);
      for (const name of names) await rejects(b.get(name), NotFoundError);
      deepStrictEqual(await readAll((await b.get(kept)).body), bytesOf(10, 9));
      await b.removeMany(names);
      await b.removeMany([]);
    },
  );

  await step("list names every stored object with its size", async (b) => {
    ok(b.list, "every backend we ship implements list()");
    const a = await putBytes(b, bytesOf(10, 1), 3);
    const c = await putBytes(b, bytesOf(2000, 2), 300);
    const before = Date.now();
    const listed = await collect(b.list!());
    deepStrictEqual(
      listed.map((o) => [o.name, o.size]).sort(),
      [[a, 10], [c, 2000]].sort(),
    );
    for (const o of listed) {
      ok(o.modified instanceof Date && o.modified.getTime() <= before + 1000);
    }
  });

  await step(
    "sweep, where there is one, leaves complete objects alone",
    async (b) => {
      // Optional: only backends with debris that no list shows have one.
      if (!b.sweep) return;
      const bytes = bytesOf(5_000, 4);
      const name = await putBytes(b, bytes, 1_000);
      strictEqual(await b.sweep(), 0);
      strictEqual(await b.sweep(0), 0);
      deepStrictEqual(await readAll((await b.get(name)).body), bytes);
      deepStrictEqual((await collect(b.list!())).map((o) => o.name), [name]);
    },
  );

  await step(
    "stage, where there is one: commit names the object, discard and a failing body leave nothing, an object never named is swept",
    async (b) => {
      if (!b.stage) return;
      const listed = async () =>
        b.list ? (await collect(b.list())).map((o) => o.name).sort() : [];
      const bytes = bytesOf(300_000, 12);
      const staged = await b.stage(chunkedStream(bytes, 9_000));
      deepStrictEqual(await listed(), []);
      const name = newBlobName(hashOf(bytes));
      await staged.commit(name);
      deepStrictEqual(await readAll((await b.get(name)).body), bytes);
      deepStrictEqual(await listed(), [name]);
      await rejects(staged.commit(newBlobName(hashOf(bytes))));
      const dropped = await b.stage(chunkedStream(bytes, 50_000));
      await dropped.discard();
      await rejects(
        b.stage(failingStream(bytes, 20_000)),
        /source failed midway/,
      );
      deepStrictEqual(await listed(), [name]);
      if (b.sweep) {
        strictEqual(await b.sweep(0), 0);
        // A process that died between staging and naming left a file.
        await b.stage(chunkedStream(bytes, 50_000));
        strictEqual(await b.sweep(), 0, "younger than the grace period");
        strictEqual(await b.sweep(0), 1);
        deepStrictEqual(await listed(), [name]);
      }
    },
  );

  await step("cancelling a body mid-read releases it", async (b) => {
    const bytes = bytesOf(1_000_000, 9);
    const name = await putBytes(b, bytes, 64 * 1024);
    const { body } = await b.get(name);
    const reader = body.getReader();
    const first = await reader.read();
    ok(!first.done && first.value.length > 0);
    await reader.cancel();
    // The object is still whole and removable afterwards.
    deepStrictEqual(
      await readAll((await b.get(name, { start: 999_000 })).body),
      bytes.slice(999_000),
    );
    await b.remove(name);
    await rejects(b.get(name), NotFoundError);
  });

  await step("concurrent puts of different objects", async (b) => {
    const blobs = Array.from(
      { length: 6 },
      (_, i) => bytesOf(20_000 + i, i + 10),
    );
    const names = await Promise.all(
      blobs.map((bytes) => putBytes(b, bytes, 4096)),
    );
    for (let i = 0; i < blobs.length; i++) {
      deepStrictEqual(await readAll((await b.get(names[i])).body), blobs[i]);
    }
  });
}

async function putBytes(
  backend: Backend,
  bytes: Uint8Array,
  chunkSize: number,
): Promise<string> {
  const hash = hashOf(bytes);
  const name = newBlobName(hash);
  await backend.put(name, chunkedStream(bytes, chunkSize), bytes.length, hash);
  return name;
}

async function assertNothingStored(backend: Backend, name: string) {
  await rejects(backend.get(name), NotFoundError);
  deepStrictEqual(await collect(backend.list!()), []);
}
