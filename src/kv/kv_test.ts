/**
 * Deno KV: the backend and store contracts on `KvBackend` and `KvCatalog`
 * (on `:memory:` and on a KV file), the catalog compared step by step with
 * `MemoryCatalog`, its atomicity when two instances share one KV file, its
 * secondary indexes (GC and expiry read only what they return), KV's limits
 * on one operation as measured, uploads of 400, 10,000 and `MAX_KV_PARTS`
 * parts within them (inserted in several operations, read while they
 * change, an insert killed midway), crash safety of a put killed midway,
 * and GC's batch removals (`removeRefs`, `removeMany`) across batches,
 * within KV's limits and against a writer racing a batch.
 *
 * Run with `--unstable-kv` (as `deno task test` does).
 *
 * @module
 */

import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert";
import { KvBackend } from "./backend.ts";
import { KvCatalog, MAX_KV_PARTS, PARTS_PER_PAGE } from "./catalog.ts";
import {
  GET_MANY_LIMIT,
  keySize,
  LIST_BATCH_LIMIT,
  MAX_CHECKS,
  MAX_KEY_BYTES,
  MAX_KEY_SIZE,
  MAX_MUTATIONS,
  MAX_OPERATION_BYTES,
  MAX_VALUE_SIZE,
} from "./limits.ts";
import { MemoryCatalog } from "../memory/catalog.ts";
import { FileBackend } from "../fs/backend.ts";
import type {
  Catalog,
  HashState,
  PartRecord,
  UploadRecord,
} from "../catalog.ts";
import { BadParamsError, ConflictError, NotFoundError } from "../errors.ts";
import { newBlobName } from "../names.ts";
import { Refs } from "../refs.ts";
import { Store } from "../store.ts";
import { testBackendContract } from "../../tests/backend_contract.ts";
import {
  bigUpload,
  MOST_PARTS,
  testCatalogContract,
} from "../../tests/catalog_contract.ts";
import { testStoreContract } from "../../tests/store_contract.ts";
import {
  bytesOf,
  chunkedStream,
  collect,
  hashOf,
  readAll,
} from "../../tests/helpers.ts";

const HOUR = 3600_000;

if (typeof Deno.openKv !== "function") {
  throw new Error(
    "src/kv/kv_test.ts needs Deno KV (expected --unstable-kv, as `deno task test` passes; got no Deno.openKv)",
  );
}

/** A KV on a fresh temporary file, and how to dispose of it. */
async function tempKv(): Promise<
  { kv: Deno.Kv; path: string; close(): Promise<void> }
> {
  const dir = await Deno.makeTempDir({ prefix: "blobstore-kv-" });
  const path = `${dir}/store.kv`;
  const kv = await Deno.openKv(path);
  return {
    kv,
    path,
    async close() {
      kv.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function memoryKv(): Promise<{ kv: Deno.Kv; close(): Promise<void> }> {
  const kv = await Deno.openKv(":memory:");
  return { kv, close: () => Promise.resolve(kv.close()) };
}

async function keysUnder(kv: Deno.Kv, ...prefix: Deno.KvKeyPart[]) {
  const keys: Deno.KvKey[] = [];
  for await (const { key } of kv.list({ prefix })) keys.push(key);
  return keys;
}

// ---- contracts ----

for (
  const [where, openKv] of [[":memory:", memoryKv], ["file", tempKv]] as const
) {
  Deno.test(`KvBackend (${where}): backend contract`, async (t) => {
    await testBackendContract(t, async () => {
      const { kv, close } = await openKv();
      return { backend: new KvBackend(kv), close };
    });
  });

  Deno.test(`KvCatalog (${where}): catalog contract`, async (t) => {
    await testCatalogContract(t, async () => {
      const { kv, close } = await openKv();
      return { catalog: new KvCatalog(kv), close };
    });
  });

  Deno.test(`KvCatalog + KvBackend (${where}): store contract`, async (t) => {
    await testStoreContract(t, async () => {
      const { kv, close } = await openKv();
      return { catalog: new KvCatalog(kv), backend: new KvBackend(kv), close };
    });
  });
}

Deno.test("KvCatalog + FileBackend: store contract", async (t) => {
  await testStoreContract(t, async () => {
    const { kv, close } = await memoryKv();
    const root = await Deno.makeTempDir({ prefix: "blobstore-fs-" });
    return {
      catalog: new KvCatalog(kv),
      backend: new FileBackend(root),
      async close() {
        await close();
        await Deno.remove(root, { recursive: true });
      },
    };
  }, { largeSize: 8 << 20 });
});

// ---- the catalog, step by step against the reference ----

Deno.test("KvCatalog answers every step as MemoryCatalog does", async () => {
  const { kv, close } = await memoryKv();
  try {
    const kvCatalog = new KvCatalog(kv);
    const memory = new MemoryCatalog();
    const both = async <T>(step: (c: Catalog) => Promise<T>, what: string) => {
      const expected = await step(memory);
      deepStrictEqual(await step(kvCatalog), expected, what);
      return expected;
    };
    const list = async <T>(items: AsyncIterable<T>) =>
      (await collect(items)).sort((a, b) =>
        JSON.stringify(a) < JSON.stringify(b) ? -1 : 1
      );
    const h = (i: number) => hashOf(String(i));
    const t0 = new Date(1_700_000_000_000);
    const at = (ms: number) => new Date(t0.getTime() + ms);
    const part = (i: number): PartRecord => ({
      hash: h(100 + i),
      size: 10 + i,
      offset: 10 * i,
      complete: false,
    });

    // references
    for (let i = 0; i < 5; i++) {
      await both(
        (c) =>
          c.insertRef({ hash: h(i), name: `n${i}`, putTime: at(i), size: i }),
        `insert ${i}`,
      );
    }
    await both(
      (c) =>
        c.insertRef({ hash: h(1), name: "other", putTime: at(9), size: 1 }),
      "duplicate insert",
    );
    await both((c) => c.getRef(h(1)), "get");
    await both((c) => c.getRef(h(99)), "get absent");
    await both((c) => c.touchRef(h(2), at(50)), "touch");
    await both((c) => c.touchRef(h(99), at(50)), "touch absent");
    await both((c) => c.removeRef(h(2), at(2)), "remove with a stale time");
    await both((c) => c.removeRef(h(3), at(3)), "remove");
    await both((c) => c.removeRef(h(3), at(3)), "remove again");
    await both((c) => list(c.refsPutBefore(at(1))), "put before, inclusive");
    await both((c) => list(c.refsPutBefore(at(100))), "put before, all");
    await both((c) => list(c.refsPutBefore(at(-1))), "put before, none");

    // uploads
    const upload =
      (id: string, parts: (PartRecord | null)[] = []) => (c: Catalog) =>
        c.insertUpload({ id, expires: at(HOUR), parts } as UploadRecord);
    await both(upload("u1"), "insert upload");
    await both(upload("u2", [null, part(1), null]), "insert with parts");
    await both((c) => c.getUpload("u1"), "get upload");
    await both((c) => c.getUpload("u2"), "get upload with parts");
    await both((c) => c.getUpload("nope"), "get absent upload");
    await both((c) => c.initPart("u1", 3, part(3)), "init beyond the end");
    await both((c) => c.initPart("u1", 3, part(4)), "init a present part");
    await both((c) => c.initPart("u1", 0, part(0)), "init below");
    await both((c) => c.initPart("u1", 200, part(200)), "init a far part");
    await both((c) => c.initPart("u2", 0, part(0)), "init a null part");
    await both((c) => c.initPart("nope", 0, part(0)), "init in absent upload");
    await both((c) => c.getUpload("u1"), "after inits");
    await both((c) => c.completePart("u1", 3, part(3).hash), "complete");
    await both((c) => c.completePart("u1", 3, part(3).hash), "complete again");
    await both((c) => c.completePart("u1", 0, h(7)), "complete, wrong hash");
    await both((c) => c.completePart("u1", 5, part(5).hash), "complete absent");
    await both((c) => c.completePart("nope", 0, h(7)), "complete, no upload");
    const state = (parts: number) => ({
      parts,
      state: new Uint8Array(212).fill(parts),
    });
    await both((c) => c.advanceHashState!("u1", 0, state(1)), "advance");
    await both((c) => c.advanceHashState!("u1", 0, state(2)), "stale from");
    await both((c) => c.advanceHashState!("u1", 1, state(1)), "not forwards");
    await both((c) => c.advanceHashState!("u1", 1, state(4)), "advance by 3");
    await both((c) => c.advanceHashState!("nope", 0, state(1)), "no upload");
    await both((c) => c.getUpload("u1"), "with a hash state");
    await both((c) => c.setOwner("u1", "o", at(2 * HOUR)), "own unfinished");
    await both((c) => c.setUploadHash("u1", h(42)), "set hash");
    await both((c) => c.setUploadHash("u1", h(43)), "set hash again");
    await both((c) => c.setUploadHash("nope", h(43)), "set hash, no upload");
    await both((c) => c.initPart("u1", 7, part(7)), "init when finished");
    await both((c) => c.advanceHashState!("u1", 4, state(5)), "when finished");
    await both((c) => c.removeUpload("u1", "o"), "remove, wrong owner");
    await both((c) => c.setOwner("u1", "o", at(2 * HOUR)), "own");
    await both((c) => c.setOwner("u1", "o", at(3 * HOUR)), "own again");
    await both((c) => c.setOwner("u1", "p", at(3 * HOUR)), "own, other");
    await both((c) => c.getUpload("u1"), "owned");
    await both((c) => list(c.uploads()), "all uploads");
    await both((c) => c.removeUpload("u1", undefined), "remove as unowned");
    await both((c) => c.removeUpload("u1", "o"), "remove owned");
    await both((c) => c.removeUpload("u1", "o"), "remove twice");
    await both(upload("u3"), "insert u3");
    await both((c) => c.removeExpiredUploads(at(HOUR)), "expire, none yet");
    await both((c) => c.removeExpiredUploads(at(HOUR + 1)), "expire two");
    await both((c) => list(c.uploads()), "none left");
    deepStrictEqual(await keysUnder(kv, "blobstore", "uploadPart"), []);
    deepStrictEqual(await keysUnder(kv, "blobstore", "uploadExpires"), []);
  } finally {
    await close();
  }
});

// ---- size limits ----

Deno.test("KvCatalog: an upload of 400 parts, every value under 64 KiB", async () => {
  const { kv, close } = await memoryKv();
  try {
    const catalog = new KvCatalog(kv);
    const parts = 400;
    const record = (i: number): PartRecord => ({
      hash: hashOf(`part ${i}`),
      size: 5 * 1024 * 1024 + i,
      offset: i * 5 * 1024 * 1024,
      complete: false,
    });
    await catalog.insertUpload({ id: "big", expires: new Date(), parts: [] });
    const inits = await Promise.all(
      Array.from(
        { length: parts },
        (_, i) => catalog.initPart("big", i, record(i)),
      ),
    );
    ok(inits.every((x) => x));
    const completes = await Promise.all(
      Array.from(
        { length: parts },
        (_, i) => catalog.completePart("big", i, record(i).hash),
      ),
    );
    ok(completes.every((x) => x));
    const upload = await catalog.getUpload("big");
    strictEqual(upload?.parts.length, parts);
    deepStrictEqual(
      upload.parts,
      Array.from(
        { length: parts },
        (_, i) => ({ ...record(i), complete: true }),
      ),
    );
    const pages = [];
    for await (
      const entry of kv.list({ prefix: ["blobstore", "uploadPart"] })
    ) {
      pages.push(entry);
      const bytes =
        new TextEncoder().encode(JSON.stringify(entry.value)).length;
      ok(bytes < 32 * 1024, `page of ${bytes} bytes`);
    }
    strictEqual(pages.length, Math.ceil(parts / PARTS_PER_PAGE));
    ok(await catalog.setUploadHash("big", hashOf("whole")));
    ok(await catalog.removeUpload("big", undefined));
    deepStrictEqual(await keysUnder(kv, "blobstore"), []);
  } finally {
    await close();
  }
});

Deno.test("KvCatalog: an upload of 1000 parts reads back whole", async () => {
  // Beyond one getMany (9 pages): the pages are listed in one batch.
  const { kv, close } = await memoryKv();
  try {
    const catalog = new KvCatalog(kv);
    await catalog.insertUpload({ id: "u", expires: new Date(), parts: [] });
    for (const i of [0, 575, 576, 999]) {
      ok(
        await catalog.initPart("u", i, {
          hash: hashOf(`${i}`),
          size: i,
          offset: i,
          complete: false,
        }),
      );
    }
    const upload = await catalog.getUpload("u");
    strictEqual(upload?.parts.length, 1000);
    strictEqual(upload.parts.filter((p) => p).length, 4);
    strictEqual(upload.parts[999]?.size, 999);
    ok(await catalog.removeUpload("u", undefined));
    deepStrictEqual(await keysUnder(kv, "blobstore"), []);
  } finally {
    await close();
  }
});

Deno.test("KV's limits on one atomic operation are the ones the catalog is built on", async (t) => {
  // Measured, so that a Deno whose limits moved fails here, by name,
  // rather than in a catalog step at 10,000 parts.
  const { kv, close } = await memoryKv();
  const commits = async (build: (op: Deno.AtomicOperation) => void) => {
    const op = kv.atomic();
    build(op);
    try {
      return (await op.commit()).ok;
    } catch (err) {
      return (err as Error).message;
    }
  };
  const refused = (what: RegExp) => (got: boolean | string) =>
    ok(typeof got === "string" && what.test(got), `refused: ${got}`);
  try {
    await t.step(`${MAX_MUTATIONS} mutations, not one more`, async () => {
      strictEqual(
        await commits((op) => {
          for (let i = 0; i < MAX_MUTATIONS; i++) op.delete(["m", i]);
        }),
        true,
      );
      refused(/mutations/)(
        await commits((op) => {
          for (let i = 0; i <= MAX_MUTATIONS; i++) op.delete(["m", i]);
        }),
      );
    });
    await t.step(`${MAX_CHECKS} checks, not one more`, async () => {
      const check = (op: Deno.AtomicOperation, i: number) =>
        op.check({ key: ["c", i], versionstamp: null });
      strictEqual(
        await commits((op) => {
          for (let i = 0; i < MAX_CHECKS; i++) check(op, i);
        }),
        true,
      );
      refused(/checks/)(
        await commits((op) => {
          for (let i = 0; i <= MAX_CHECKS; i++) check(op, i);
        }),
      );
    });
    await t.step(
      `keys of ${MAX_KEY_SIZE} bytes, values of ${MAX_VALUE_SIZE}`,
      async () => {
        const key = (bytes: number) => ["x".repeat(bytes - 2)];
        strictEqual(keySize(key(MAX_KEY_SIZE)), MAX_KEY_SIZE);
        strictEqual(await commits((op) => op.set(key(MAX_KEY_SIZE), 1)), true);
        refused(/Key too large/)(
          await commits((op) => op.set(key(MAX_KEY_SIZE + 1), 1)),
        );
        strictEqual(
          await commits((op) => op.set(["v"], new Uint8Array(MAX_VALUE_SIZE))),
          true,
        );
        refused(/Value too large/)(
          await commits((op) =>
            op.set(["v"], new Uint8Array(MAX_VALUE_SIZE + 1))
          ),
        );
      },
    );
    await t.step(
      `${MAX_OPERATION_BYTES} bytes of keys and values, deleted and checked keys counted`,
      async () => {
        const long = (i: number) => ["d", "x".repeat(MAX_KEY_SIZE - 16), i];
        const fit = Math.floor(MAX_OPERATION_BYTES / keySize(long(0)));
        strictEqual(
          await commits((op) => {
            for (let i = 0; i < fit; i++) op.delete(long(i));
          }),
          true,
          `${fit} deletes of 2 KiB keys`,
        );
        refused(/Total mutation size/)(
          await commits((op) => {
            for (let i = 0; i <= fit; i++) op.delete(long(i));
          }),
        );
        refused(/Total mutation size/)(
          await commits((op) => {
            op.check({ key: long(-1), versionstamp: null });
            for (let i = 0; i < fit; i++) op.delete(long(i));
          }),
        );
        const value = new Uint8Array(60 * 1024);
        const values = Math.floor(MAX_OPERATION_BYTES / value.length);
        refused(/Total mutation size/)(
          await commits((op) => {
            for (let i = 0; i <= values; i++) op.set(["v", i], value);
          }),
        );
      },
    );
    await t.step(
      `${MAX_KEY_BYTES} bytes of keys set (deleted ones not counted)`,
      async () => {
        const long = (i: number) => ["k", "x".repeat(1500), i];
        const fit = Math.floor(MAX_KEY_BYTES / keySize(long(0)));
        strictEqual(
          await commits((op) => {
            for (let i = 0; i < fit; i++) op.set(long(i), 1);
          }),
          true,
        );
        refused(/Total key size/)(
          await commits((op) => {
            for (let i = 0; i <= fit; i++) op.set(long(i), 1);
          }),
        );
        strictEqual(
          await commits((op) => {
            for (let i = 0; i < 2 * fit; i++) op.delete(long(i));
          }),
          true,
        );
      },
    );
    await t.step(
      `getMany of ${GET_MANY_LIMIT} keys; a list batch of ${LIST_BATCH_LIMIT}`,
      async () => {
        const keys = (n: number) =>
          Array.from({ length: n }, (_, i): Deno.KvKey => ["g", i]);
        strictEqual((await kv.getMany(keys(GET_MANY_LIMIT))).length, 10);
        await rejects(kv.getMany(keys(GET_MANY_LIMIT + 1)), /ranges/);
        for (let i = 0; i < LIST_BATCH_LIMIT; i += 100) {
          const op = kv.atomic();
          for (let j = i; j < i + 100; j++) op.set(["l", j], j);
          ok((await op.commit()).ok);
        }
        const listed = await collect(
          kv.list({ prefix: ["l"] }, {
            limit: LIST_BATCH_LIMIT,
            batchSize: LIST_BATCH_LIMIT,
          }),
        );
        strictEqual(listed.length, LIST_BATCH_LIMIT);
      },
    );
  } finally {
    await close();
  }
});

/** The record of part `i` that the catalog steps below send. */
const stepPart = (i: number, complete = false): PartRecord => ({
  hash: hashOf(`step part ${i}`),
  size: 5 * 1024 * 1024,
  offset: i * 5 * 1024 * 1024,
  complete,
});

Deno.test("KvCatalog: 10,000 parts through initPart and completePart, the hash state advanced in order beside them, read, finished, owned and removed whole", async () => {
  const { kv, close } = await memoryKv();
  try {
    const catalog = new KvCatalog(kv);
    await catalog.insertUpload({ id: "big", expires: new Date(), parts: [] });
    // 4 parts in flight at once, as a client sending in order would (on
    // one page, mostly: they race each other's commits); the hash state
    // follows the completed parts in order, as the store does, its header
    // changes racing the parts' own.
    const stateOf = (parts: number) => new Uint8Array(212).fill(parts % 251);
    const complete = new Set<number>();
    let hashed = 0;
    let advancing = Promise.resolve();
    const advance = () =>
      advancing = advancing.then(async () => {
        while (complete.has(hashed)) {
          ok(
            await catalog.advanceHashState("big", hashed, {
              parts: hashed + 1,
              state: stateOf(hashed + 1),
            }),
            `advance from ${hashed}`,
          );
          hashed++;
        }
      });
    let next = 0;
    await Promise.all(Array.from({ length: 4 }, async () => {
      for (let i = next++; i < MOST_PARTS; i = next++) {
        ok(await catalog.initPart("big", i, stepPart(i)), `init ${i}`);
        ok(await catalog.completePart("big", i, stepPart(i).hash), `${i}`);
        complete.add(i);
        advance();
      }
    }));
    await advancing;
    strictEqual(hashed, MOST_PARTS);
    const expected: UploadRecord = {
      id: "big",
      expires: (await catalog.getUpload("big"))!.expires,
      parts: Array.from({ length: MOST_PARTS }, (_, i) => stepPart(i, true)),
      hashState: { parts: MOST_PARTS, state: stateOf(MOST_PARTS) },
    };
    deepStrictEqual(await catalog.getUpload("big"), expected);
    const pages = await collect(
      kv.list<unknown>({ prefix: ["blobstore", "uploadPart", "big"] }),
    );
    strictEqual(pages.length, Math.ceil(MOST_PARTS / PARTS_PER_PAGE));
    for (const { value } of pages) {
      const bytes = new TextEncoder().encode(JSON.stringify(value)).length;
      ok(bytes < 16 * 1024, `a page of ${bytes} bytes as JSON`);
    }
    ok(await catalog.setUploadHash("big", hashOf("whole")));
    ok(await catalog.setOwner("big", "alice", new Date(9e12)));
    deepStrictEqual(await collect(catalog.uploads()), [{
      ...expected,
      hash: hashOf("whole"),
      owner: "alice",
      expires: new Date(9e12),
    }]);
    ok(await catalog.removeUpload("big", "alice"), "one atomic operation");
    deepStrictEqual(await keysUnder(kv, "blobstore"), [], "nothing left");
  } finally {
    await close();
  }
});

Deno.test("KvCatalog: MAX_KV_PARTS parts under the longest id: inserted in batches, listed in one snapshot, removed in one operation", async () => {
  // The expiry key [prefix, "uploadExpires", ms, id] is the longest: an id
  // that makes it 2048 bytes is the longest the catalog can store.
  const id = "i".repeat(
    MAX_KEY_SIZE - keySize(["blobstore", "uploadExpires", 0, ""]),
  );
  strictEqual(keySize(["blobstore", "uploadExpires", 0, id]), MAX_KEY_SIZE);
  const { kv, close } = await memoryKv();
  try {
    const catalog = new KvCatalog(kv);
    const parts = Array.from(
      { length: MAX_KV_PARTS },
      (_, i) => stepPart(i, i % 3 === 0),
    );
    const upload: UploadRecord = { id, expires: new Date(1000), parts };
    await catalog.insertUpload(upload);
    deepStrictEqual(await catalog.getUpload(id), upload);
    ok(!await catalog.initPart(id, MAX_KV_PARTS - 1, stepPart(0)), "final");
    ok(await catalog.initPart(id, MAX_KV_PARTS - 2, stepPart(1)), "replaced");
    await rejects(
      async () => await catalog.initPart(id, MAX_KV_PARTS, stepPart(0)),
      /invalid part number/,
    );
    await rejects(
      catalog.insertUpload({
        id: "more",
        expires: new Date(),
        parts: [...parts, null],
      }),
      /too many parts/,
    );
    ok(await catalog.removeUpload(id, undefined));
    deepStrictEqual(await keysUnder(kv, "blobstore"), [], "nothing left");
    await catalog.insertUpload(upload);
    strictEqual(await catalog.removeExpiredUploads(new Date(2000)), 1);
    deepStrictEqual(await keysUnder(kv, "blobstore"), [], "nor after expiry");
  } finally {
    await close();
  }
});

Deno.test("KvCatalog: pages of nearly 64 KiB under the longest id insert within KV's limits", async () => {
  // Records the store would never write (a hash of 900 characters), so
  // that each page nears KV's value limit and each key its key limit.
  const id = "i".repeat(
    MAX_KEY_SIZE - keySize(["blobstore", "uploadExpires", 0, ""]),
  );
  const { kv, close } = await memoryKv();
  try {
    const catalog = new KvCatalog(kv);
    const parts = Array.from({ length: 25 * PARTS_PER_PAGE }, (_, i) => ({
      ...stepPart(i),
      hash: `${i}`.padEnd(900, "h"),
    }));
    await catalog.insertUpload({ id, expires: new Date(), parts });
    for await (
      const { value } of kv.list({ prefix: ["blobstore", "uploadPart"] })
    ) {
      const bytes = JSON.stringify(value).length;
      ok(bytes > 55 * 1024, `a page of ${bytes} bytes as JSON`);
    }
    deepStrictEqual((await catalog.getUpload(id))?.parts, parts);
    ok(await catalog.removeUpload(id, undefined));
    deepStrictEqual(await keysUnder(kv, "blobstore"), []);
  } finally {
    await close();
  }
});

/**
 * Wraps `kv` so that the atomic commit numbered `failAt` (from 1) throws
 * instead, as if the process died then, and `onCommit` runs after each
 * commit that went through.
 */
function dyingKv(
  kv: Deno.Kv,
  failAt: number,
  onCommit: (n: number) => Promise<void> = () => Promise.resolve(),
): Deno.Kv {
  let commits = 0;
  return new Proxy(kv, {
    get(target, prop) {
      if (prop === "atomic") {
        return () => {
          const op = target.atomic();
          const commit = op.commit.bind(op);
          op.commit = async () => {
            if (++commits === failAt) throw new Error("killed");
            const result = await commit();
            await onCommit(commits);
            return result;
          };
          return op;
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

Deno.test("KvCatalog: a malformed hash state is a BadParamsError, as a rejection", async () => {
  const { kv, close } = await memoryKv();
  try {
    const catalog = new KvCatalog(kv);
    await catalog.insertUpload({ id: "u", expires: new Date(), parts: [] });
    for (
      const bad of [
        { parts: 1.5, state: new Uint8Array(212) },
        { parts: -1, state: new Uint8Array(212) },
        { parts: 1, state: [1, 2, 3] },
      ]
    ) {
      await rejects(
        catalog.advanceHashState("u", 0, bad as HashState),
        (err) =>
          err instanceof BadParamsError &&
          /invalid hash state \(expected \{ parts: a non-negative integer, state: a Uint8Array \}, got parts/
            .test(err.message),
      );
    }
    strictEqual((await catalog.getUpload("u"))?.hashState, undefined);
  } finally {
    await close();
  }
});

Deno.test("KvCatalog: a big insert killed midway is no upload, and expiry removes what it wrote", async () => {
  const { kv, close } = await memoryKv();
  try {
    const catalog = new KvCatalog(kv);
    const dying = new KvCatalog(dyingKv(kv, 4));
    const upload = bigUpload("half", new Date(1000));
    await rejects(dying.insertUpload(upload), /killed/);
    ok((await keysUnder(kv, "blobstore", "uploadPart")).length > 0, "pages");
    strictEqual(await catalog.getUpload("half"), undefined);
    deepStrictEqual(await collect(catalog.uploads()), []);
    ok(!await catalog.initPart("half", 0, stepPart(0)));
    ok(!await catalog.completePart("half", 1, upload.parts[1]!.hash));
    ok(!await catalog.setUploadHash("half", hashOf("whole")));
    ok(
      !await catalog.advanceHashState("half", 0, {
        parts: 1,
        state: new Uint8Array(212),
      }),
    );
    ok(!await catalog.removeUpload("half", undefined));
    await rejects(catalog.insertUpload(upload), ConflictError, "not fresh");
    strictEqual(await catalog.removeExpiredUploads(new Date(500)), 0);
    strictEqual(await catalog.removeExpiredUploads(new Date(2000)), 1);
    deepStrictEqual(await keysUnder(kv, "blobstore"), [], "nothing left");
  } finally {
    await close();
  }
});

Deno.test("KvCatalog: an expired record removed while it is inserted fails the insert, and leaves nothing", async () => {
  const { kv, close } = await memoryKv();
  try {
    const catalog = new KvCatalog(kv);
    const racing = new KvCatalog(
      dyingKv(kv, 0, async (n) => {
        if (n === 2) {
          strictEqual(await catalog.removeExpiredUploads(new Date(2000)), 1);
        }
      }),
    );
    await rejects(
      racing.insertUpload(bigUpload("late", new Date(1000))),
      (err) =>
        err instanceof ConflictError &&
        /was removed while its 157 pages were written/.test(err.message),
    );
    strictEqual(await catalog.getUpload("late"), undefined);
    // The removal took every page below the header's part count, and no
    // page was written after it.
    deepStrictEqual(await keysUnder(kv, "blobstore"), [], "nothing left");
  } finally {
    await close();
  }
});

Deno.test("KvCatalog: a big upload read while it changes: never a header without its pages, nor parts its hash state does not cover", async () => {
  const { kv, close } = await memoryKv();
  try {
    const catalog = new KvCatalog(kv);
    // Runs `between` once, after the reader read the header and before it
    // lists the pages.
    let between: (() => Promise<unknown>) | undefined;
    const reader = new KvCatalog(
      new Proxy(kv, {
        get(target, prop) {
          if (prop === "list") {
            return (
              selector: Deno.KvListSelector,
              options?: Deno.KvListOptions,
            ) => {
              const hook = between;
              between = undefined;
              return (async function* () {
                await hook?.();
                yield* target.list(selector, options);
              })();
            };
          }
          const value = Reflect.get(target, prop, target);
          return typeof value === "function" ? value.bind(target) : value;
        },
      }),
    );
    const upload = bigUpload("big", new Date(9e12));
    const state = { parts: 5000, state: new Uint8Array(212).fill(7) };
    await catalog.insertUpload({ ...upload, hashState: state });

    // A part completed in between (pages only): an exact snapshot.
    between = () => catalog.completePart("big", 5000, upload.parts[5000]!.hash);
    const completed = await reader.getUpload("big");
    strictEqual(between, undefined, "the hook ran");
    strictEqual(completed?.parts[5000]?.complete, true);
    deepStrictEqual(completed.hashState, state);

    // The header changed in between (a part added beyond the end, the
    // state advanced over part 5000): the header as first read, the pages
    // as listed after it.
    const added = {
      ...upload.parts[0]!,
      hash: hashOf("added"),
      complete: false,
    };
    between = async () => {
      ok(await catalog.initPart("big", MOST_PARTS - 1, added));
      ok(
        await catalog.advanceHashState("big", 5000, {
          parts: 5001,
          state: new Uint8Array(212).fill(8),
        }),
      );
    };
    const changed = await reader.getUpload("big");
    strictEqual(between, undefined, "the hook ran");
    strictEqual(changed?.parts.length, MOST_PARTS - 1, "the first count");
    deepStrictEqual(changed.hashState, state, "the first state");
    ok(
      changed.parts.slice(0, changed.hashState!.parts).every((p) =>
        p?.complete
      ),
      "every part the state covers is complete",
    );
    strictEqual((await reader.getUpload("big"))?.parts.length, MOST_PARTS);

    // Removed in between: gone, not a header with no parts.
    between = () => catalog.removeUpload("big", undefined);
    strictEqual(await reader.getUpload("big"), undefined);
    strictEqual(between, undefined, "the hook ran");
    deepStrictEqual(await keysUnder(kv, "blobstore"), []);
  } finally {
    await close();
  }
});

// ---- secondary indexes ----

/** Wraps `kv` so that every entry its `list` yields is counted. */
function countingKv(kv: Deno.Kv): { kv: Deno.Kv; listed: () => number } {
  let listed = 0;
  const proxy = new Proxy(kv, {
    get(target, prop) {
      if (prop === "list") {
        return (
          selector: Deno.KvListSelector,
          options?: Deno.KvListOptions,
        ) => {
          const inner = target.list(selector, options);
          return (async function* () {
            for await (const entry of inner) {
              listed++;
              yield entry;
            }
          })();
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { kv: proxy, listed: () => listed };
}

Deno.test("KvCatalog: GC and expiry read only what they return", async () => {
  const { kv, close } = await memoryKv();
  try {
    const counting = countingKv(kv);
    const catalog = new KvCatalog(counting.kv);
    const t0 = 1_700_000_000_000;
    for (let i = 0; i < 300; i++) {
      await catalog.insertRef({
        hash: hashOf(`ref ${i}`),
        name: `n${i}`,
        putTime: new Date(t0 + i * 1000),
        size: i,
      });
      await catalog.insertUpload({
        id: `u${i}`,
        expires: new Date(t0 + i * 1000),
        parts: [],
      });
    }
    let before = counting.listed();
    const old = await collect(catalog.refsPutBefore(new Date(t0 + 4000)));
    strictEqual(old.length, 5);
    strictEqual(counting.listed() - before, 5, "entries read for GC");

    before = counting.listed();
    strictEqual(await catalog.removeExpiredUploads(new Date(t0 + 3000)), 3);
    strictEqual(counting.listed() - before, 3, "entries read for expiry");
    strictEqual(await catalog.getUpload("u2"), undefined);
    ok(await catalog.getUpload("u3"));

    // A touched reference moves in the index; an extended upload too.
    await catalog.touchRef(hashOf("ref 0"), new Date(t0 + 999_000));
    deepStrictEqual(
      (await collect(catalog.refsPutBefore(new Date(t0 + 4000)))).map((r) =>
        r.name
      ),
      ["n1", "n2", "n3", "n4"],
    );
    ok(await catalog.setUploadHash("u3", hashOf("x")));
    ok(await catalog.setOwner("u3", "me", new Date(t0 + 999_000)));
    strictEqual(await catalog.removeExpiredUploads(new Date(t0 + 5000)), 1);
    ok(await catalog.getUpload("u3"), "extended upload kept");
  } finally {
    await close();
  }
});

// ---- atomicity across instances ----

Deno.test("KvCatalog: two instances on one KV file stay atomic", async (t) => {
  const { kv, path, close } = await tempKv();
  const other = await Deno.openKv(path);
  const a = new KvCatalog(kv);
  const b = new KvCatalog(other);
  const expires = new Date(Date.now() + HOUR);
  try {
    await t.step("insertRef: exactly one wins", async () => {
      for (let i = 0; i < 40; i++) {
        const hash = hashOf(`race ${i}`);
        const putTime = new Date();
        const [x, y] = await Promise.all([
          a.insertRef({ hash, name: "a", putTime, size: 1 }),
          b.insertRef({ hash, name: "b", putTime, size: 1 }),
        ]);
        ok(x !== y, `insert ${i}: ${x} ${y}`);
        strictEqual((await a.getRef(hash))?.name, x ? "a" : "b");
      }
    });

    await t.step("touchRef against removeRef: never both", async () => {
      for (let i = 0; i < 40; i++) {
        const hash = hashOf(`touch ${i}`);
        const putTime = new Date(1000 + i);
        ok(await a.insertRef({ hash, name: "n", putTime, size: 1 }));
        const later = new Date(5000 + i);
        const [removed, touched] = await Promise.all([
          a.removeRef(hash, putTime),
          b.touchRef(hash, later),
        ]);
        ok(removed !== (touched !== undefined), `trial ${i}`);
        const ref = await b.getRef(hash);
        strictEqual(
          ref?.putTime.getTime(),
          removed ? undefined : later.getTime(),
        );
      }
      // The put-time index agrees with the references.
      const indexed = await collect(a.refsPutBefore(new Date(10_000)));
      for (const ref of indexed) deepStrictEqual(await b.getRef(ref.hash), ref);
      strictEqual(
        indexed.length,
        (await keysUnder(kv, "blobstore", "refPutTime")).filter((k) =>
          (k[2] as number) <= 10_000
        ).length,
      );
    });

    await t.step("initPart of 400 parts from both: none lost", async () => {
      await a.insertUpload({ id: "many", expires, parts: [] });
      const record = (i: number): PartRecord => ({
        hash: hashOf(`p${i}`),
        size: i,
        offset: i,
        complete: false,
      });
      const inits = await Promise.all(
        Array.from(
          { length: 400 },
          (_, i) => (i % 2 ? a : b).initPart("many", i, record(i)),
        ),
      );
      ok(inits.every((x) => x));
      const completes = await Promise.all(
        Array.from(
          { length: 400 },
          (_, i) => (i % 3 ? b : a).completePart("many", i, record(i).hash),
        ),
      );
      ok(completes.every((x) => x));
      const upload = await b.getUpload("many");
      strictEqual(upload?.parts.length, 400);
      ok(
        upload.parts.every((p, i) => p?.complete && p.hash === record(i).hash),
      );
    });

    await t.step(
      "the same part from both: each record whole, exactly one completes, then final",
      async () => {
        await a.insertUpload({ id: "same", expires, parts: [] });
        for (let i = 0; i < 30; i++) {
          const mine = {
            hash: hashOf(`a${i}`),
            size: 1,
            offset: 0,
            complete: false,
          };
          const theirs = { ...mine, hash: hashOf(`b${i}`) };
          // An incomplete part may be replaced: both inits succeed, the
          // record is one of them whole, and only its owner completes.
          await Promise.all([
            a.initPart("same", i, mine),
            b.initPart("same", i, theirs),
          ]);
          const [x, y] = await Promise.all([
            a.completePart("same", i, mine.hash),
            b.completePart("same", i, theirs.hash),
          ]);
          ok(x !== y, `part ${i}`);
          deepStrictEqual((await a.getUpload("same"))?.parts[i], {
            ...(x ? mine : theirs),
            complete: true,
          });
          ok(!await b.initPart("same", i, x ? theirs : mine), "final");
        }
      },
    );

    await t.step("finishing and owning: exactly one wins", async () => {
      for (let i = 0; i < 20; i++) {
        const id = `fin${i}`;
        await a.insertUpload({ id, expires, parts: [] });
        const [x, y] = await Promise.all([
          a.setUploadHash(id, hashOf("x")),
          b.setUploadHash(id, hashOf("y")),
        ]);
        ok(x !== y);
        const [o, p] = await Promise.all([
          a.setOwner(id, "alice", expires),
          b.setOwner(id, "bob", expires),
        ]);
        ok(o !== p);
        strictEqual((await b.getUpload(id))?.owner, o ? "alice" : "bob");
      }
    });

    await t.step("a part never lands in a finished upload", async () => {
      for (let i = 0; i < 30; i++) {
        const id = `late${i}`;
        await a.insertUpload({ id, expires, parts: [] });
        const rec = {
          hash: hashOf(`l${i}`),
          size: 1,
          offset: 0,
          complete: false,
        };
        const [finished, added] = await Promise.all([
          a.setUploadHash(id, hashOf("whole")),
          b.initPart(id, i * 7, rec),
        ]);
        ok(finished);
        const upload = await a.getUpload(id);
        // Either the part went in first, or it was refused.
        strictEqual(upload?.parts[i * 7]?.hash, added ? rec.hash : undefined);
      }
    });

    await t.step("removal racing an init leaves no stray page", async () => {
      for (let i = 0; i < 30; i++) {
        const id = `gone${i}`;
        await a.insertUpload({ id, expires, parts: [] });
        const rec = {
          hash: hashOf(`g${i}`),
          size: 1,
          offset: 0,
          complete: false,
        };
        const [removed] = await Promise.all([
          a.removeUpload(id, undefined),
          b.initPart(id, 70 + i, rec),
        ]);
        ok(removed);
        strictEqual(await b.getUpload(id), undefined);
        deepStrictEqual(await keysUnder(kv, "blobstore", "uploadPart", id), []);
      }
    });
  } finally {
    other.close();
    await close();
  }
});

// ---- KvBackend specifics ----

Deno.test("KvBackend: chunks stay under the value limit; ranges fetch only their chunks; remove deletes every chunk", async () => {
  const { kv, close } = await memoryKv();
  try {
    const counting = countingKv(kv);
    const backend = new KvBackend(counting.kv);
    const bytes = bytesOf(3 * 1024 * 1024 + 5, 11);
    const name = newBlobName(hashOf(bytes));
    await backend.put(
      name,
      chunkedStream(bytes, 100_000),
      bytes.length,
      hashOf(bytes),
    );
    const chunks = await keysUnder(kv, "blobstore", "objectChunk");
    strictEqual(chunks.length, 49);
    for await (
      const { value } of kv.list<Uint8Array>({
        prefix: ["blobstore", "objectChunk"],
      })
    ) {
      ok(value.length <= 65536);
    }
    const before = counting.listed();
    const { body } = await backend.get(name, {
      start: 1_000_000,
      end: 1_000_010,
    });
    deepStrictEqual(await readAll(body), bytes.slice(1_000_000, 1_000_010));
    strictEqual(counting.listed() - before, 1, "chunks read for 10 bytes");
    const across = counting.listed();
    const edge = await backend.get(name, { start: 65_530, end: 65_540 });
    deepStrictEqual(await readAll(edge.body), bytes.slice(65_530, 65_540));
    strictEqual(counting.listed() - across, 2, "chunks read across an edge");

    // A removal during a read fails the read; it never yields wrong bytes.
    const reader = (await backend.get(name)).body.getReader();
    ok(!(await reader.read()).done);
    await backend.remove(name);
    await rejects(
      (async () => {
        while (!(await reader.read()).done);
      })(),
      NotFoundError,
    );
    deepStrictEqual(await keysUnder(kv, "blobstore"), []);
  } finally {
    await close();
  }
});

Deno.test("KvBackend: a failed put leaves no chunk and no marker", async () => {
  const { kv, close } = await memoryKv();
  try {
    const backend = new KvBackend(kv);
    const bytes = bytesOf(2_000_000);
    await rejects(
      backend.put(
        "x",
        chunkedStream(bytes, 65536),
        bytes.length,
        hashOf("other"),
      ),
    );
    deepStrictEqual(await keysUnder(kv, "blobstore"), []);
  } finally {
    await close();
  }
});

Deno.test("KvBackend: a sweep stops a put stalled past the grace period", async () => {
  const { kv, close } = await memoryKv();
  try {
    const backend = new KvBackend(kv);
    const bytes = bytesOf(1_500_000);
    let release!: () => void;
    const stalled = new Promise<void>((r) => release = r);
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent === 1_000_000) await stalled;
        const chunk = bytes.slice(sent, sent + 500_000);
        sent += chunk.length;
        if (chunk.length) controller.enqueue(chunk);
        else controller.close();
      },
    }, { highWaterMark: 0 });
    const put = backend.put("slow", body, bytes.length, hashOf(bytes));
    while (sent < 1_000_000) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 20));
    strictEqual(await backend.sweep(0), 1);
    release();
    await rejects(put);
    await rejects(backend.get("slow"), NotFoundError);
    deepStrictEqual(await keysUnder(kv, "blobstore"), []);
  } finally {
    await close();
  }
});

// ---- crash safety ----

/**
 * Runs, in a child process, a store put of `size` bytes on a KV file that
 * exits the process once `exitAfter` bytes were read from the source.
 */
async function crashingPut(path: string, size: number, exitAfter: number) {
  const code = `
    const { KvBackend } = await import(${
    JSON.stringify(new URL("./backend.ts", import.meta.url).href)
  });
    const { KvCatalog } = await import(${
    JSON.stringify(new URL("./catalog.ts", import.meta.url).href)
  });
    const { Store } = await import(${
    JSON.stringify(new URL("../store.ts", import.meta.url).href)
  });
    const kv = await Deno.openKv(${JSON.stringify(path)});
    const store = new Store({ catalog: new KvCatalog(kv), backend: new KvBackend(kv) });
    let sent = 0;
    const body = new ReadableStream({
      pull(controller) {
        if (sent >= ${exitAfter}) Deno.exit(0);
        controller.enqueue(new Uint8Array(65536).fill(sent & 255));
        sent += 65536;
      },
    }, { highWaterMark: 0 });
    await store.put(body, ${JSON.stringify(hashOf("whatever"))}, ${size});
    Deno.exit(3); // not reached
  `;
  const { code: status, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--unstable-kv", code],
    stdout: "null",
    stderr: "piped",
  }).output();
  strictEqual(status, 0, new TextDecoder().decode(stderr));
}

Deno.test("KvBackend: a put killed midway leaves nothing visible, and a sweep cleans it", async () => {
  const { kv, path, close } = await tempKv();
  try {
    await crashingPut(path, 8 << 20, 3 << 20);
    const store = new Store({
      catalog: new KvCatalog(kv),
      backend: new KvBackend(kv),
    });
    const backend = store.backend as KvBackend;
    // The debris is there: chunks of the killed put, under its marker.
    ok((await keysUnder(kv, "blobstore", "objectChunk")).length >= 30);
    strictEqual((await keysUnder(kv, "blobstore", "objectPending")).length, 1);
    // Nothing of it is visible.
    await rejects(store.open(hashOf("whatever")), NotFoundError);
    deepStrictEqual(await collect(backend.list()), []);
    // Listing deletes nothing, even past the grace period.
    deepStrictEqual(
      await collect(new KvBackend(kv, "blobstore", { graceMs: 0 }).list()),
      [],
    );
    strictEqual((await keysUnder(kv, "blobstore", "objectPending")).length, 1);
    await store.gc(new Refs(), new Date());
    // A fresh put is within its grace period; past it, the sweep cleans.
    strictEqual(await backend.sweep(), 0);
    strictEqual(await backend.sweep(0), 1);
    deepStrictEqual(await keysUnder(kv, "blobstore"), []);
  } finally {
    await close();
  }
});

// ---- batch removal (GC) ----

/**
 * Wraps `kv` so that `race` runs once, right after the first `getMany`
 * that `armed()` allows has read its entries and before the caller sees
 * them: a concurrent writer between a batch's read and its commit.
 */
function racingKv(
  kv: Deno.Kv,
  race: () => Promise<void>,
): { kv: Deno.Kv; arm(): void; raced: () => boolean } {
  let armed = false;
  let raced = false;
  const proxy = new Proxy(kv, {
    get(target, prop) {
      if (prop === "getMany") {
        return async (keys: Deno.KvKey[]) => {
          const entries = await target.getMany(keys);
          if (armed) {
            armed = false;
            await race();
            raced = true;
          }
          return entries;
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { kv: proxy, arm: () => (armed = true), raced: () => raced };
}

Deno.test("KvCatalog.removeRefs: 250 references in batches, each removed only if unchanged", async () => {
  const { kv, close } = await memoryKv();
  try {
    const catalog = new KvCatalog(kv);
    const putTime = new Date(1_000_000);
    const refs = Array.from({ length: 250 }, (_, i) => ({
      hash: hashOf(`batch ${i}`),
      name: `n${i}`,
      putTime,
      size: i,
    }));
    for (const ref of refs) ok(await catalog.insertRef(ref));
    // Moved (stays), removed by someone else (gone), re-put under another
    // name (gone, the new one stays), removed twice in the list (gone).
    await catalog.touchRef(refs[7].hash, new Date(2_000_000));
    await catalog.touchRef(refs[150].hash, new Date(2_000_000));
    ok(await catalog.removeRef(refs[42].hash, putTime));
    ok(await catalog.removeRef(refs[201].hash, putTime));
    const reput = { ...refs[201], name: "again", putTime: new Date(3_000_000) };
    ok(await catalog.insertRef(reput));

    const gone = await catalog.removeRefs(refs);
    deepStrictEqual(
      [...gone].sort(),
      refs.filter((_, i) => i !== 7 && i !== 150).map((r) => r.hash).sort(),
    );
    deepStrictEqual(
      (await collect(catalog.refsPutBefore(new Date(9_000_000)))).map((r) =>
        r.hash
      ).sort(),
      [refs[7].hash, refs[150].hash, reput.hash].sort(),
      "the index holds exactly the references left",
    );
    strictEqual((await keysUnder(kv, "blobstore", "ref")).length, 3);
    deepStrictEqual(await catalog.getRef(reput.hash), reput);
  } finally {
    await close();
  }
});

Deno.test("KvCatalog.removeRefs: a put between a batch's read and its commit wins; the rest of the batch goes", async () => {
  const { kv, close } = await memoryKv();
  try {
    const putTime = new Date(1_000_000);
    const refs = Array.from({ length: 150 }, (_, i) => ({
      hash: hashOf(`raced ${i}`),
      name: `n${i}`,
      putTime,
      size: i,
    }));
    const other = new KvCatalog(kv);
    for (const ref of refs) ok(await other.insertRef(ref));
    const racing = racingKv(kv, async () => {
      ok(await other.touchRef(refs[3].hash, new Date(5_000_000)));
    });
    const catalog = new KvCatalog(racing.kv);
    racing.arm();
    const gone = await catalog.removeRefs(refs);
    ok(racing.raced(), "the touch ran inside the first batch");
    ok(!gone.has(refs[3].hash), "the touched reference stays");
    strictEqual(gone.size, 149);
    deepStrictEqual(await other.getRef(refs[3].hash), {
      ...refs[3],
      putTime: new Date(5_000_000),
    });
    strictEqual((await keysUnder(kv, "blobstore", "ref")).length, 1);
    strictEqual((await keysUnder(kv, "blobstore", "refPutTime")).length, 1);
  } finally {
    await close();
  }
});

Deno.test("KvCatalog.removeRefs: long keys make smaller batches, within KV's limits", async () => {
  const { kv, close } = await memoryKv();
  try {
    // A 1000-character prefix: 100 references to a batch would name ~310
    // KiB of keys, beyond the 80 KiB some Deno versions allow; each names
    // 3.3 KiB, so 24 fit in one operation.
    let atomics = 0;
    const counting = new Proxy(kv, {
      get(target, prop) {
        if (prop === "atomic") atomics++;
        const value = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const catalog = new KvCatalog(counting, "p".repeat(1000));
    const putTime = new Date(1_000_000);
    const refs = Array.from({ length: 120 }, (_, i) => ({
      hash: hashOf(`long ${i}`),
      name: `n${i}`,
      putTime,
      size: i,
    }));
    for (const ref of refs) ok(await catalog.insertRef(ref));
    atomics = 0;
    strictEqual((await catalog.removeRefs(refs)).size, 120);
    strictEqual(atomics, 5, "operations for 120 references");
    deepStrictEqual(await keysUnder(kv), []);
  } finally {
    await close();
  }
});

Deno.test("KvBackend.removeMany: every chunk and marker goes, absent names are no error", async () => {
  const { kv, close } = await memoryKv();
  try {
    const backend = new KvBackend(kv);
    const put = async (i: number, size: number) => {
      const bytes = bytesOf(size, i);
      const name = newBlobName(hashOf(bytes));
      await backend.put(name, chunkedStream(bytes, 65536), size, hashOf(bytes));
      return name;
    };
    // 130 objects (two batches of headers); in the first, 4 objects of 110
    // chunks make more than 500 chunk deletions (several operations).
    const names: string[] = [];
    for (let i = 0; i < 130; i++) {
      names.push(await put(i, i % 30 === 0 ? 110 * 65536 : i % 3 ? i : 0));
    }
    const keep = await put(1000, 100_000);
    await backend.removeMany([...names, "absent", newBlobName(hashOf("x"))]);
    for (const name of names) await rejects(backend.get(name), NotFoundError);
    deepStrictEqual(
      (await collect(backend.list())).map((o) => o.name),
      [keep],
    );
    strictEqual((await keysUnder(kv, "blobstore", "objectChunk")).length, 2);
    deepStrictEqual(await keysUnder(kv, "blobstore", "objectPending"), []);
    deepStrictEqual(
      await readAll((await backend.get(keep)).body),
      bytesOf(100_000, 1000),
    );
    await backend.removeMany([]);
  } finally {
    await close();
  }
});

Deno.test("KvBackend.removeMany: an object removed between the read and the commit", async () => {
  const { kv, close } = await memoryKv();
  try {
    const other = new KvBackend(kv);
    const names: string[] = [];
    for (let i = 0; i < 20; i++) {
      const bytes = bytesOf(70_000, i);
      const name = newBlobName(hashOf(bytes));
      await other.put(name, chunkedStream(bytes, 65536), 70_000, hashOf(bytes));
      names.push(name);
    }
    const racing = racingKv(kv, () => other.remove(names[5]));
    const backend = new KvBackend(racing.kv);
    racing.arm();
    await backend.removeMany(names);
    ok(racing.raced());
    deepStrictEqual(await keysUnder(kv, "blobstore"), []);
  } finally {
    await close();
  }
});
