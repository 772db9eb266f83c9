/**
 * MongoCatalog and MongoBackend on a real server: `MONGODB_URL`, by default
 * the FerretDB that `scripts/ferretdb.sh` starts. Every fixture uses a fresh
 * database with a random name and drops it when done.
 *
 * @module
 */

import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert";
import {
  Binary,
  BSON,
  type Db,
  type Document,
  GridFSBucket,
  Long,
  MongoClient,
  MongoError,
  MongoServerError,
  ObjectId,
} from "mongodb";
import { MongoBackend, MongoCatalog, MongoStoreError } from "../../mongo.ts";
import {
  BadParamsError,
  CorruptBlobError,
  HashMismatchError,
  NotFoundError,
  SizeMismatchError,
} from "../errors.ts";
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
  failingStream,
  hashOf,
  readAll,
} from "../../tests/helpers.ts";
import { MongoMultipartRegistry } from "./registry.ts";
import { seedBlobs, seededBytes } from "../../tests/mongo_seed.ts";
import { MONGODB_URL, serviceAvailable } from "../../tests/services.ts";

const PREFIX = "blobstore";

/** A document read or written raw, keyed by a string as the catalog's are. */
interface RawDoc extends Document {
  _id: string;
}
const KiB = 1024;

function connect(): Promise<MongoClient> {
  return MongoClient.connect(MONGODB_URL, { serverSelectionTimeoutMS: 3000 });
}

const available = await serviceAvailable(
  `MongoDB server at ${MONGODB_URL}`,
  async () => {
    const client = await connect();
    try {
      await client.db("admin").command({ ping: 1 });
    } finally {
      await client.close();
    }
  },
);

function freshDatabaseName(): string {
  return `blobstore_test_${
    crypto.randomUUID().replaceAll("-", "").slice(0, 16)
  }`;
}

/** A client for one test, and fresh databases on it that close drops. */
async function openServer() {
  const client = await connect();
  const databases: Db[] = [];
  return {
    client,
    /** A new, empty database, dropped by `close`. */
    freshDb(): Db {
      const db = client.db(freshDatabaseName());
      databases.push(db);
      return db;
    },
    /** Drops a database now (a fixture closing). */
    async drop(db: Db) {
      await db.dropDatabase();
      databases.splice(databases.indexOf(db), 1);
    },
    async close() {
      try {
        for (const db of databases) await db.dropDatabase();
      } finally {
        await client.close();
      }
    },
  };
}

type Server = Awaited<ReturnType<typeof openServer>>;

/** A `Deno.test` on a server connection, skipped when there is no server. */
function mongoTest(
  name: string,
  fn: (server: Server, t: Deno.TestContext) => Promise<void>,
) {
  Deno.test({
    name,
    ignore: !available,
    async fn(t) {
      const server = await openServer();
      try {
        await fn(server, t);
      } finally {
        await server.close();
      }
    },
  });
}

function counts(db: Db) {
  return Promise.all([
    db.collection(`${PREFIX}.files`).countDocuments(),
    db.collection(`${PREFIX}.chunks`).countDocuments(),
  ]);
}

mongoTest("MongoBackend: backend contract", async (server, t) => {
  await testBackendContract(t, () => {
    const db = server.freshDb();
    return Promise.resolve({
      backend: new MongoBackend(db, PREFIX),
      close: () => server.drop(db),
    });
  });
});

mongoTest(
  "MongoBackend: backend contract with 1000-byte chunks",
  async (server, t) => {
    // Small chunks put the contract's ranges across many chunk boundaries.
    await testBackendContract(t, () => {
      const db = server.freshDb();
      return Promise.resolve({
        backend: new MongoBackend(db, PREFIX, { chunkSizeBytes: 1000 }),
        close: () => server.drop(db),
      });
    });
  },
);

mongoTest("MongoCatalog: catalog contract", async (server, t) => {
  await testCatalogContract(t, () => {
    const db = server.freshDb();
    return Promise.resolve({
      catalog: new MongoCatalog(db, PREFIX),
      close: () => server.drop(db),
    });
  });
});

mongoTest("MongoCatalog + MongoBackend: store contract", async (server, t) => {
  await testStoreContract(t, () => {
    const db = server.freshDb();
    return Promise.resolve({
      catalog: new MongoCatalog(db, PREFIX),
      backend: new MongoBackend(db, PREFIX),
      close: () => server.drop(db),
    });
  });
});

mongoTest("MongoBackend: GridFS layout, both ways", async (server) => {
  const db = server.freshDb();
  const backend = new MongoBackend(db, PREFIX);
  const bucket = new GridFSBucket(db, { bucketName: PREFIX });
  const bytes = bytesOf(600 * KiB, 4);
  const hash = hashOf(bytes);
  const name = newBlobName(hash);
  await backend.put(name, chunkedStream(bytes, 64 * KiB), bytes.length, hash);

  const file = await db.collection(`${PREFIX}.files`).findOne({
    filename: name,
  });
  ok(file);
  strictEqual(file.length, bytes.length);
  strictEqual(file.chunkSize, 255 * KiB);
  ok(file.uploadDate instanceof Date);
  const chunks = await db.collection(`${PREFIX}.chunks`)
    .find({ files_id: file._id }).sort({ n: 1 }).toArray();
  deepStrictEqual(chunks.map((c) => c.n), [0, 1, 2]);
  deepStrictEqual(
    await readAll(ReadableStream.from(bucket.openDownloadStreamByName(name))),
    bytes,
    "a bare GridFSBucket reads what MongoBackend wrote",
  );

  // A file written as the Go store (or any GridFS client) wrote it.
  const other = bytesOf(300 * KiB + 7, 5);
  const otherName = newBlobName(hashOf(other));
  await new Promise((resolve, reject) =>
    bucket.openUploadStream(otherName, { chunkSizeBytes: 100 * KiB })
      .once("finish", resolve).once("error", reject).end(other)
  );
  const opened = await backend.get(otherName, {
    start: 99 * KiB,
    end: 201 * KiB,
  });
  strictEqual(opened.size, other.length);
  deepStrictEqual(await readAll(opened.body), other.slice(99 * KiB, 201 * KiB));
  deepStrictEqual(
    (await Array.fromAsync(backend.list())).map((o) => o.name).sort(),
    [name, otherName].sort(),
  );
});

mongoTest(
  "MongoBackend: a ranged get reads only the chunks it needs",
  async (server) => {
    const client = await MongoClient.connect(MONGODB_URL, {
      monitorCommands: true,
    });
    try {
      const db = client.db(server.freshDb().databaseName);
      const backend = new MongoBackend(db, PREFIX, { chunkSizeBytes: 1000 });
      const bytes = bytesOf(10_000, 6);
      const name = newBlobName(hashOf(bytes));
      await backend.put(
        name,
        chunkedStream(bytes, 4096),
        10_000,
        hashOf(bytes),
      );
      let chunksRead = 0;
      client.on("commandSucceeded", (event) => {
        const cursor = (event.reply as Document)?.cursor;
        if (cursor?.ns === `${db.databaseName}.${PREFIX}.chunks`) {
          chunksRead += (cursor.firstBatch ?? cursor.nextBatch).length;
        }
      });
      const { body } = await backend.get(name, { start: 2500, end: 3500 });
      deepStrictEqual(await readAll(body), bytes.slice(2500, 3500));
      strictEqual(chunksRead, 2, "chunks 2 and 3 only");
    } finally {
      await client.close();
    }
  },
);

mongoTest(
  "MongoBackend: a read fails cleanly on a missing chunk or a removal",
  async (server) => {
    const db = server.freshDb();
    // Two chunks per round trip: a read spans several batches.
    const backend = new MongoBackend(db, PREFIX, {
      chunkSizeBytes: 1000,
      readBatchBytes: 2000,
    });
    const bytes = bytesOf(10_000, 12);
    const hash = hashOf(bytes);
    const name = newBlobName(hash);
    await backend.put(name, chunkedStream(bytes, 4096), bytes.length, hash);

    // Opened, then removed before the first read: the chunks are gone.
    const { body } = await backend.get(name);
    await backend.remove(name);
    await rejects(readAll(body), NotFoundError);

    const other = newBlobName(hash);
    await backend.put(other, chunkedStream(bytes, 4096), bytes.length, hash);
    const file = await db.collection(`${PREFIX}.files`).findOne({
      filename: other,
    });
    await db.collection(`${PREFIX}.chunks`).deleteOne({
      files_id: file!._id,
      n: 6,
    });
    deepStrictEqual(
      await readAll((await backend.get(other, { end: 6000 })).body),
      bytes.slice(0, 6000),
      "the chunks before the missing one read fine",
    );
    await rejects(
      readAll((await backend.get(other, { start: 5500 })).body),
      (err: unknown) =>
        err instanceof CorruptBlobError &&
        err.message.includes("chunk 6 is missing"),
    );
  },
);

mongoTest(
  "MongoBackend: a failed put leaves no file and no chunk",
  async (server) => {
    const db = server.freshDb();
    const backend = new MongoBackend(db, PREFIX);
    // Big enough that several chunks are inserted before the failure shows.
    const bytes = bytesOf(2 * 1024 * KiB, 8);
    const hash = hashOf(bytes);
    const cases: [string, () => Promise<void>, (err: unknown) => boolean][] = [
      [
        "wrong hash",
        () =>
          backend.put(
            newBlobName(hash),
            chunkedStream(bytes, 64 * KiB),
            bytes.length,
            hashOf("other"),
          ),
        (err) => err instanceof HashMismatchError,
      ],
      [
        "too long",
        () =>
          backend.put(
            newBlobName(hash),
            chunkedStream(bytes, 64 * KiB),
            bytes.length - 1,
            hash,
          ),
        (err) => err instanceof SizeMismatchError,
      ],
      [
        "too short",
        () =>
          backend.put(
            newBlobName(hash),
            chunkedStream(bytes, 64 * KiB),
            bytes.length + 1,
            hash,
          ),
        (err) => err instanceof SizeMismatchError,
      ],
      [
        "source fails midway",
        () =>
          backend.put(
            newBlobName(hash),
            failingStream(bytes, 1500 * KiB, new Error("gone")),
            bytes.length,
            hash,
          ),
        (err) => (err as Error).message === "gone",
      ],
    ];
    for (const [what, put, expected] of cases) {
      // The store's errors and the source's own pass through unwrapped.
      await rejects(
        put(),
        (err) => expected(err) && !(err instanceof MongoStoreError),
        what,
      );
      deepStrictEqual(await counts(db), [0, 0], `files and chunks (${what})`);
    }
  },
);

mongoTest("MongoCatalog: documents have the Go shapes", async (server) => {
  const db = server.freshDb();
  const catalog = new MongoCatalog(db, PREFIX);
  const raw = (collection: string, id: string) =>
    db.collection<RawDoc>(`${PREFIX}.${collection}`).findOne({ _id: id }, {
      promoteLongs: false,
    });
  const hash = hashOf("blob");
  const putTime = new Date("2024-05-06T07:08:09.123Z");
  await catalog.insertRef({ hash, name: `${hash}-00`, putTime, size: 5 });
  deepStrictEqual(await raw("blobref", hash), {
    _id: hash,
    name: `${hash}-00`,
    puttime: putTime,
    size: Long.fromNumber(5),
  });

  const expires = new Date("2030-01-01T00:00:00Z");
  await catalog.insertUpload({ id: "up1", expires, parts: [] });
  deepStrictEqual(await raw("upload", "up1"), {
    _id: "up1",
    expires,
    parts: [],
  });
  const part = (offset: number) => ({
    hash: hashOf(`part at ${offset}`),
    size: 10,
    complete: false,
    offset,
  });
  ok(await catalog.initPart("up1", 2, part(20)));
  ok(await catalog.completePart("up1", 2, part(20).hash));
  ok(await catalog.setUploadHash("up1", hash));
  const owned = new Date("2031-01-01T00:00:00Z");
  ok(await catalog.setOwner("up1", "cs:~who/wordpress-1", owned));
  deepStrictEqual(await raw("upload", "up1"), {
    _id: "up1",
    expires: owned,
    parts: [null, null, {
      hash: part(20).hash,
      size: Long.fromNumber(10),
      complete: true,
      offset: Long.fromNumber(20),
    }],
    hash,
    owner: "cs:~who/wordpress-1",
  });
});

mongoTest(
  "MongoCatalog: reads documents written by the Go store",
  async (server) => {
    const db = server.freshDb();
    const catalog = new MongoCatalog(db, PREFIX);
    const hash = hashOf("go");
    const puttime = new Date("2017-01-02T03:04:05.678Z");
    await db.collection<RawDoc>(`${PREFIX}.blobref`).insertOne({
      _id: hash,
      name: `${hash}-1f`,
      puttime,
      size: Long.fromNumber(2 ** 33),
    });
    deepStrictEqual(await catalog.getRef(hash), {
      hash,
      name: `${hash}-1f`,
      putTime: puttime,
      size: 2 ** 33,
    });
    const expires = new Date("2017-02-01T00:00:00Z");
    await db.collection<RawDoc>(`${PREFIX}.upload`).insertOne({
      _id: "go-upload",
      expires,
      parts: [
        {
          hash,
          size: Long.fromNumber(7),
          offset: Long.fromNumber(0),
          complete: true,
        },
        null,
      ],
    });
    deepStrictEqual(await catalog.getUpload("go-upload"), {
      id: "go-upload",
      expires,
      parts: [{ hash, size: 7, offset: 0, complete: true }, null],
    });
    // Part 1 is a null gap: it can be created; part 0 is taken.
    const record = { hash, size: 3, offset: 7, complete: false };
    ok(!await catalog.initPart("go-upload", 0, record));
    ok(await catalog.initPart("go-upload", 1, record));
  },
);

mongoTest(
  "MongoCatalog: hashstate, one field of our own beside the Go shapes",
  async (server) => {
    const db = server.freshDb();
    const catalog = new MongoCatalog(db, PREFIX);
    const uploads = db.collection<RawDoc>(`${PREFIX}.upload`);
    const raw = () => uploads.findOne({ _id: "go" }, { promoteValues: false });
    const expires = new Date("2017-02-01T00:00:00Z");
    const goDoc = {
      _id: "go",
      expires,
      parts: [{
        hash: hashOf("p0"),
        size: Long.fromNumber(7),
        offset: Long.fromNumber(0),
        complete: true,
      }],
    };
    await uploads.insertOne(goDoc);
    // A Go document has none: it advances from 0.
    const state = crypto.getRandomValues(new Uint8Array(212));
    ok(await catalog.advanceHashState("go", 0, { parts: 1, state }));
    const doc = await raw();
    const { hashstate, ...rest } = doc!;
    deepStrictEqual(rest, goDoc, "the Go fields as they were");
    deepStrictEqual(Object.keys(hashstate).sort(), ["parts", "state"]);
    strictEqual(hashstate.parts._bsontype, "Int32");
    strictEqual(hashstate.parts.value, 1);
    ok(hashstate.state instanceof Binary, "BinData");
    strictEqual(hashstate.state.sub_type, 0);
    deepStrictEqual(new Uint8Array(hashstate.state.value()), state);
    await rejects(
      catalog.advanceHashState("go", 1, { parts: 2.5, state }),
      BadParamsError,
      "a malformed state rejects",
    );
    // Go's steps $set their own fields: the state stays.
    ok(await catalog.setUploadHash("go", hashOf("whole")));
    ok(await catalog.setOwner("go", "cs:~who/x-1", new Date(9e12)));
    deepStrictEqual((await catalog.getUpload("go"))?.hashState, {
      parts: 1,
      state,
    });
  },
);

mongoTest(
  "MongoCatalog: an upload of 10,000 parts is one document of about 1.6 MB, well under 16 MiB",
  async (server) => {
    const db = server.freshDb();
    const catalog = new MongoCatalog(db, PREFIX);
    const uploads = db.collection<RawDoc>(`${PREFIX}.upload`);
    await catalog.insertUpload(bigUpload("big", new Date(9e12)));
    for (const n of [MOST_PARTS - 2, MOST_PARTS - 1]) {
      const record = {
        hash: hashOf(`last ${n}`),
        size: 5 * 1024 * 1024,
        offset: n * 5 * 1024 * 1024,
        complete: false,
      };
      ok(await catalog.initPart("big", n, record));
      ok(await catalog.completePart("big", n, record.hash));
    }
    ok(await catalog.completePart("big", 5000, hashOf("part 5000")));
    const state = crypto.getRandomValues(new Uint8Array(212));
    ok(await catalog.advanceHashState("big", 0, { parts: MOST_PARTS, state }));
    const doc = await uploads.findOne({ _id: "big" }, { promoteLongs: false });
    const size = BSON.calculateObjectSize(doc!);
    ok(size > 1.5e6 && size < 1.7e6, `${size} bytes`);
    strictEqual(doc!.parts.length, MOST_PARTS);
    deepStrictEqual(doc!.parts[MOST_PARTS - 1], {
      hash: hashOf(`last ${MOST_PARTS - 1}`),
      size: Long.fromNumber(5 * 1024 * 1024),
      offset: Long.fromNumber((MOST_PARTS - 1) * 5 * 1024 * 1024),
      complete: true,
    }, "the Go shape, int64s included");
    const upload = await catalog.getUpload("big");
    ok(upload?.parts.every((p) => p?.complete), "all complete");
    deepStrictEqual(upload?.hashState, { parts: MOST_PARTS, state });
    ok(await catalog.removeUpload("big", undefined));
    strictEqual(await uploads.countDocuments(), 0, "nothing left");
  },
);

mongoTest("MongoCatalog: conditional steps", async (server, t) => {
  const db = server.freshDb();
  const catalog = new MongoCatalog(db, PREFIX);
  const h = hashOf("x");
  const part = (n: number) => ({
    hash: hashOf(`part ${n}`),
    size: 10,
    offset: 10 * n,
    complete: false,
  });

  await t.step("references", async () => {
    const ref = { hash: h, name: "n1", putTime: new Date(1000), size: 5 };
    ok(await catalog.insertRef(ref));
    ok(!await catalog.insertRef({ ...ref, name: "n2" }), "duplicate hash");
    strictEqual((await catalog.getRef(h))?.name, "n1");
    strictEqual(await catalog.touchRef(hashOf("none"), new Date()), undefined);
    deepStrictEqual(await catalog.touchRef(h, new Date(2000)), {
      ...ref,
      putTime: new Date(2000),
    });
    ok(!await catalog.removeRef(h, new Date(1000)), "put time moved");
    deepStrictEqual(
      (await Array.fromAsync(catalog.refsPutBefore(new Date(1999)))).length,
      0,
    );
    deepStrictEqual(
      (await Array.fromAsync(catalog.refsPutBefore(new Date(2000)))).length,
      1,
    );
    ok(await catalog.removeRef(h, new Date(2000)));
    strictEqual(await catalog.getRef(h), undefined);
  });

  await t.step("parts", async () => {
    await catalog.insertUpload({ id: "u", expires: new Date(5000), parts: [] });
    ok(await catalog.initPart("u", 2, part(7)), "beyond the end");
    ok(await catalog.initPart("u", 2, part(2)), "incomplete: replaced");
    ok(await catalog.initPart("u", 0, part(0)), "a null gap");
    ok(await catalog.initPart("u", 1, part(1)));
    ok(!await catalog.initPart("nope", 0, part(0)), "no such upload");
    ok(await catalog.completePart("u", 1, part(1).hash));
    ok(!await catalog.initPart("u", 1, part(0)), "complete: final");
    ok(!await catalog.completePart("u", 1, part(0).hash), "other hash");
    ok(!await catalog.completePart("u", 5, part(5).hash), "no such part");
    deepStrictEqual((await catalog.getUpload("u"))?.parts, [
      part(0),
      { ...part(1), complete: true },
      part(2),
    ]);
  });

  await t.step("finish, owner, removal", async () => {
    ok(!await catalog.setOwner("u", "o", new Date(9000)), "unfinished");
    ok(!await catalog.removeUpload("u", "o"), "not owned by o");
    ok(await catalog.setUploadHash("u", h));
    ok(!await catalog.setUploadHash("u", hashOf("y")), "already set");
    ok(!await catalog.initPart("u", 3, part(3)), "finished");
    ok(await catalog.setOwner("u", "o", new Date(9000)));
    ok(await catalog.setOwner("u", "o", new Date(9500)), "same owner");
    ok(!await catalog.setOwner("u", "p", new Date(9000)), "other owner");
    strictEqual((await catalog.getUpload("u"))?.expires.getTime(), 9500);
    ok(!await catalog.removeUpload("u", undefined), "no longer unowned");
    ok(await catalog.removeUpload("u", "o"));
    strictEqual(await catalog.getUpload("u"), undefined);
  });

  await t.step(
    "concurrent steps on one upload, from two catalogs, lose nothing",
    async () => {
      // FerretDB v1 writes whole documents back: without the per-document
      // queue, concurrent parts overwrite each other and one slot has
      // several winners.
      const other = new MongoCatalog(db, PREFIX);
      await catalog.insertUpload({
        id: "c",
        expires: new Date(9e12),
        parts: [],
      });
      const created = await Promise.all(
        Array.from(
          { length: 8 },
          (_, n) => (n % 2 ? other : catalog).initPart("c", n, part(n)),
        ),
      );
      deepStrictEqual(created, Array(8).fill(true));
      // One slot from both: each record lands whole (an incomplete part
      // may be replaced), and once completed none replaces it.
      const sameSlot = () =>
        Promise.all(
          Array.from(
            { length: 4 },
            (_, i) => (i % 2 ? other : catalog).initPart("c", 9, part(9 + i)),
          ),
        );
      await sameSlot();
      const slot = (await catalog.getUpload("c"))!.parts[9]!;
      const n = [9, 10, 11, 12].find((n) => part(n).hash === slot.hash);
      ok(n !== undefined, "one of them");
      deepStrictEqual(slot, part(n), "whole");
      ok(await other.completePart("c", 9, slot.hash));
      deepStrictEqual(await sameSlot(), [false, false, false, false]);
      const parts = (await catalog.getUpload("c"))!.parts;
      deepStrictEqual(
        parts.slice(0, 8),
        Array.from({ length: 8 }, (_, n) => part(n)),
      );
      strictEqual(parts.length, 10);
      ok(await catalog.removeUpload("c", undefined));
    },
  );

  await t.step("expiry and indexes", async () => {
    await catalog.insertUpload({ id: "a", expires: new Date(5000), parts: [] });
    await catalog.insertUpload({ id: "b", expires: new Date(6000), parts: [] });
    strictEqual(await catalog.removeExpiredUploads(new Date(5500)), 1);
    deepStrictEqual(
      (await Array.fromAsync(catalog.uploads())).map((u) => u.id),
      ["b"],
    );
    const keys = async (collection: string) =>
      (await db.collection(`${PREFIX}.${collection}`).indexes())
        .map((index) => Object.keys(index.key).join());
    ok((await keys("blobref")).includes("puttime"));
    ok((await keys("upload")).includes("expires"));
    await catalog.ensureIndexes(); // idempotent
    await new MongoCatalog(db, PREFIX).ensureIndexes();
  });
});

mongoTest(
  "Store on MongoDB: three concurrent puts leave exactly one GridFS file",
  async (server) => {
    const db = server.freshDb();
    const store = new Store({
      catalog: new MongoCatalog(db, PREFIX),
      backend: new MongoBackend(db, PREFIX),
    });
    const bytes = bytesOf(1024 * KiB, 11);
    const hash = hashOf(bytes);
    await Promise.all(
      [0, 1, 2].map(() =>
        store.put(chunkedStream(bytes, 64 * KiB), hash, bytes.length)
      ),
    );
    deepStrictEqual(await counts(db), [
      1,
      Math.ceil(bytes.length / (255 * KiB)),
    ]);
    const ref = await db.collection(`${PREFIX}.blobref`).findOne(
      { _id: hash } as Document,
    );
    const file = await db.collection(`${PREFIX}.files`).findOne({});
    strictEqual(file?.filename, ref?.name, "the file is the referenced one");
    deepStrictEqual(await readAll((await store.open(hash)).body), bytes);
  },
);

mongoTest("Store on MongoDB: GC over 2,000 references", async (server) => {
  // Each removal scans whole collections on FerretDB v1 (see the README),
  // so 1 in 20 is garbage: enough removals to matter, a short test.
  const db = server.freshDb();
  const catalog = new MongoCatalog(db, PREFIX);
  const store = new Store({ catalog, backend: new MongoBackend(db, PREFIX) });
  const total = 2000;
  const putTime = new Date(Date.now() - 60_000);
  const hashes = await seedBlobs(db, PREFIX, total, putTime);
  const isGarbage = (i: number) => i % 20 === 0;
  const refs = new Refs();
  hashes.forEach((hash, i) => isGarbage(i) || refs.add(hash));
  // Unreferenced, but held by an upload record: kept.
  await catalog.insertUpload({
    id: "held",
    expires: new Date(Date.now() + 3600_000),
    parts: [{ hash: hashes[0], size: 3, offset: 0, complete: true }],
  });
  // Unreferenced, but put again after the cut-off: not even examined.
  await catalog.touchRef(hashes[20], new Date());

  const stats = await store.gc(refs, new Date(putTime.getTime() + 1));
  const garbage = total / 20;
  deepStrictEqual(stats, {
    count: total - garbage + 1,
    maxSize: 3,
    meanSize: 3,
  });
  const left = total - garbage + 2;
  deepStrictEqual(await counts(db), [left, left]);
  strictEqual(await db.collection(`${PREFIX}.blobref`).countDocuments(), left);
  for (const i of [0, 1, 20, 1999]) {
    deepStrictEqual(
      await readAll((await store.open(hashes[i])).body),
      seededBytes(i),
    );
  }
  await rejects(store.open(hashes[40]), NotFoundError);
});

mongoTest(
  "MongoBackend: a sweep clears chunks of killed puts, past the grace period only",
  async (server) => {
    const db = server.freshDb();
    const backend = new MongoBackend(db, PREFIX, { graceMs: 60_000 });
    const bytes = bytesOf(3000, 77);
    const name = newBlobName(hashOf(bytes));
    await backend.put(
      name,
      chunkedStream(bytes, 1000),
      bytes.length,
      hashOf(bytes),
    );
    // What a put killed midway leaves: chunks, and no files document. One
    // started two minutes ago, one just now (it may still be running).
    const chunks = db.collection(`${PREFIX}.chunks`);
    const old = ObjectId.createFromTime(Math.floor(Date.now() / 1000) - 120);
    const young = new ObjectId();
    for (const files_id of [old, young]) {
      await chunks.insertMany([0, 1].map((n) => ({
        files_id,
        n,
        data: new Binary(new Uint8Array(10)),
      })));
    }
    deepStrictEqual((await collect(backend.list())).map((o) => o.name), [name]);
    strictEqual(
      (await chunks.distinct("files_id")).length,
      3,
      "listing deletes nothing",
    );
    strictEqual(await backend.sweep(), 1);
    deepStrictEqual(
      (await chunks.distinct("files_id")).map(String).sort(),
      [
        String(young),
        String((await db.collection(`${PREFIX}.files`).findOne())!._id),
      ].sort(),
    );
    strictEqual(await backend.sweep(0), 1);
    deepStrictEqual(await counts(db), [1, 1]);
    deepStrictEqual(await readAll((await backend.get(name)).body), bytes);
  },
);

/** A TCP port on 127.0.0.1 where nothing listens (just closed). */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

Deno.test(
  "MongoCatalog and MongoBackend: driver failures are MongoStoreError, with the driver's error as cause and no connection string",
  async (t) => {
    const secret = "s3cret-pw";
    const url = `mongodb://blob:${secret}@127.0.0.1:${closedPort()}/`;
    // No server: the first operation fails server selection, quickly, and
    // closes the client's topology, so the rest fail as on a closed client.
    const client = new MongoClient(url, {
      serverSelectionTimeoutMS: 300,
      connectTimeoutMS: 300,
    });
    try {
      const db = client.db("unreachable");
      const catalog = new MongoCatalog(db, "x");
      const backend = new MongoBackend(db, "x");
      const h = hashOf("a");
      const ref = { hash: h, name: "n", putTime: new Date(1000), size: 1 };
      const part = { hash: h, size: 1, offset: 0, complete: false };
      const upload = { id: "u", expires: new Date(), parts: [] };
      const failing: [string, string, () => Promise<unknown>][] = [
        ["MongoCatalog.getRef", "x.blobref", () => catalog.getRef(h)],
        ["MongoCatalog.insertRef", "x.blobref", () => catalog.insertRef(ref)],
        [
          "MongoCatalog.touchRef",
          "x.blobref",
          () => catalog.touchRef(h, new Date()),
        ],
        [
          "MongoCatalog.removeRef",
          "x.blobref",
          () => catalog.removeRef(h, new Date()),
        ],
        [
          "MongoCatalog.removeRefs",
          "x.blobref",
          () => catalog.removeRefs([ref]),
        ],
        ["MongoCatalog.ensureIndexes", "", () => catalog.ensureIndexes()],
        [
          "MongoCatalog.ensureIndexes", // refsPutBefore ensures them first
          "",
          () => Array.fromAsync(catalog.refsPutBefore(new Date())),
        ],
        [
          "MongoCatalog.insertUpload",
          "x.upload",
          () => catalog.insertUpload(upload),
        ],
        ["MongoCatalog.getUpload", "x.upload", () => catalog.getUpload("u")],
        [
          "MongoCatalog.uploads",
          "x.upload",
          () => Array.fromAsync(catalog.uploads()),
        ],
        [
          "MongoCatalog.initPart",
          "x.upload",
          () => catalog.initPart("u", 0, part),
        ],
        [
          "MongoCatalog.completePart",
          "x.upload",
          () => catalog.completePart("u", 0, h),
        ],
        [
          "MongoCatalog.setUploadHash",
          "x.upload",
          () => catalog.setUploadHash("u", h),
        ],
        [
          "MongoCatalog.setOwner",
          "x.upload",
          () => catalog.setOwner("u", "o", new Date()),
        ],
        [
          "MongoCatalog.advanceHashState",
          "x.upload",
          () =>
            catalog.advanceHashState("u", 0, {
              parts: 1,
              state: new Uint8Array(212),
            }),
        ],
        [
          "MongoCatalog.removeUpload",
          "x.upload",
          () => catalog.removeUpload("u", "o"),
        ],
        [
          "MongoCatalog.ensureIndexes", // as removeExpiredUploads does first
          "",
          () => catalog.removeExpiredUploads(new Date()),
        ],
        ["MongoBackend.get", "x.files", () => backend.get("name")],
        [
          "MongoBackend.put",
          "x.files", // the GridFS file, whether its chunks or files document failed
          () =>
            backend.put(
              "name",
              chunkedStream(bytesOf(10, 1), 10),
              10,
              hashOf(bytesOf(10, 1)),
            ),
        ],
        ["MongoBackend.remove", "x.files", () => backend.remove("name")],
        [
          "MongoBackend.removeMany",
          "x.files",
          () => backend.removeMany(["name"]),
        ],
        ["MongoBackend.sweep", "x.chunks", () => backend.sweep()],
        [
          "MongoBackend.list",
          "x.files",
          () => Array.fromAsync(backend.list()),
        ],
      ];
      // Concurrently: each waits out the server selection timeout.
      const outcomes = await Promise.allSettled(
        failing.map(([, , op]) => op()),
      );
      failing.forEach(([operation, collection], i) => {
        const outcome = outcomes[i];
        ok(outcome.status === "rejected", `${operation} should fail`);
        const err = outcome.reason;
        ok(err instanceof MongoStoreError, `${operation}: ${err}`);
        strictEqual(err.name, "MongoStoreError");
        strictEqual(err.operation, operation);
        if (collection) strictEqual(err.collection, collection);
        ok(
          err.message.startsWith(
            `${operation} on "${err.collection}" failed: Mongo`,
          ),
          err.message,
        );
        ok(err.cause instanceof MongoError, `${operation}: the driver's error`);
        for (const leak of [secret, "mongodb://", "blob:"]) {
          ok(!err.message.includes(leak), `${operation}: ${err.message}`);
        }
      });

      await t.step(
        "the store's own errors pass through unwrapped",
        async () => {
          const bytes = bytesOf(10, 2);
          // Too many bytes in the first chunk: refused before any write.
          await rejects(
            backend.put("name", chunkedStream(bytes, 10), 3, hashOf(bytes)),
            (err) => err instanceof SizeMismatchError,
          );
          const gone = new Error("source gone");
          await rejects(
            backend.put(
              "name",
              failingStream(bytes, 0, gone),
              10,
              hashOf(bytes),
            ),
            (err) => err === gone,
          );
        },
      );
    } finally {
      await client.close();
    }
  },
);

mongoTest(
  "MongoCatalog: a server error not handled on purpose is a MongoStoreError keeping the server's",
  async (server) => {
    const catalog = new MongoCatalog(server.freshDb(), PREFIX);
    const upload = { id: "dup", expires: new Date(9e12), parts: [] };
    await catalog.insertUpload(upload);
    // Upload ids are fresh: a duplicate one is unexpected, not "there first".
    await rejects(catalog.insertUpload(upload), (err) => {
      ok(err instanceof MongoStoreError);
      ok(err.cause instanceof MongoServerError);
      strictEqual(err.cause.code, 11000);
      ok(
        err.message.startsWith(
          `MongoCatalog.insertUpload on "${PREFIX}.upload" failed: MongoServerError: `,
        ),
        err.message,
      );
      return true;
    });
    // A duplicate reference is the deliberate answer: false, no error.
    const ref = { hash: hashOf("r"), name: "n", putTime: new Date(), size: 1 };
    ok(await catalog.insertRef(ref));
    ok(!await catalog.insertRef(ref));
  },
);

Deno.test("MongoStoreError: no connection string or credentials in the message", () => {
  const cause = new Error(
    "bad URI mongodb+srv://admin:hunter22@db.example.net/x and u:pw@127.0.0.1:27017",
  );
  const err = new MongoStoreError("MongoBackend.get", "b.files", cause);
  strictEqual(err.cause, cause);
  for (const leak of ["hunter22", "admin", "mongodb+srv://", "u:pw"]) {
    ok(!err.message.includes(leak), err.message);
  }
  ok(
    err.message.startsWith(
      'MongoBackend.get on "b.files" failed: Error: bad URI ',
    ),
  );
});

mongoTest(
  "MongoCatalog and MongoBackend: on a closed client, calls and reads in progress fail with MongoStoreError",
  async (server) => {
    const client = await connect();
    const db = client.db(server.freshDb().databaseName);
    let closed = false;
    try {
      // Two chunks per round trip: the read below needs more round trips.
      const backend = new MongoBackend(db, PREFIX, {
        chunkSizeBytes: 1000,
        readBatchBytes: 2000,
      });
      const catalog = new MongoCatalog(db, PREFIX);
      const bytes = bytesOf(10_000, 13);
      const hash = hashOf(bytes);
      const name = newBlobName(hash);
      await backend.put(name, chunkedStream(bytes, 4096), 10_000, hash);
      ok(await catalog.insertRef({ hash, name, putTime: new Date(), size: 1 }));
      const reader = (await backend.get(name)).body.getReader();
      strictEqual((await reader.read()).value?.length, 1000);

      await client.close();
      closed = true;
      const isWrapped = (operation: string) => (err: unknown) =>
        err instanceof MongoStoreError && err.operation === operation &&
        err.cause instanceof MongoError;
      await rejects(
        (async () => {
          while (!(await reader.read()).done);
        })(),
        isWrapped("MongoBackend.get"),
      );
      await rejects(catalog.getRef(hash), isWrapped("MongoCatalog.getRef"));
      await rejects(
        catalog.touchRef(hash, new Date()),
        isWrapped("MongoCatalog.touchRef"),
      );
      await rejects(backend.get(name), isWrapped("MongoBackend.get"));
      await rejects(
        backend.put(
          newBlobName(hash),
          chunkedStream(bytes, 4096),
          10_000,
          hash,
        ),
        isWrapped("MongoBackend.put"),
      );
    } finally {
      if (!closed) await client.close();
    }
  },
);

mongoTest(
  "MongoMultipartRegistry: compare-and-set steps, and a closed client is a MongoStoreError",
  async (server) => {
    const client = await connect();
    const db = client.db(server.freshDb().databaseName);
    const registry = new MongoMultipartRegistry(db, PREFIX);
    const h = hashOf("multipart");
    const first = { uploadId: "u1", finished: new Date(1000) };
    const second = { uploadId: "u2", finished: new Date(2000) };
    try {
      strictEqual(await registry.get(h), undefined);
      ok(await registry.compareAndSet(h, undefined, first));
      ok(!(await registry.compareAndSet(h, undefined, second)), "already set");
      ok(!(await registry.compareAndSet(h, "u9", second)), "wrong expected id");
      ok(await registry.compareAndSet(h, "u1", second));
      deepStrictEqual(await registry.get(h), second);
      const listed = [];
      for await (const entry of registry.entries()) listed.push(entry);
      deepStrictEqual(listed, [{ hash: h, ...second }]);
      ok(await registry.compareAndSet(h, "u2", undefined));
      strictEqual(await registry.get(h), undefined);
    } finally {
      await client.close();
    }
    const err = await registry.get(h).then(() => undefined, (e) => e);
    ok(err instanceof MongoStoreError, `expected MongoStoreError, got ${err}`);
    ok(err.message.startsWith("MongoMultipartRegistry.get on "), err.message);
    ok(err.cause instanceof Error);
  },
);
