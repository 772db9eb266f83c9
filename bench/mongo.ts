/**
 * MongoDB: MongoBackend and MongoCatalog against the bare driver on the
 * same server, in the same run:
 *
 * - put of a 256 MiB blob through `MongoBackend` (streamed, verified:
 *   SHA-384 and size) vs a bare `GridFSBucket` upload stream fed the same
 *   chunks through `node:stream`'s `pipeline` (target ≥ 0.9), and vs the
 *   same bare upload hashing the chunks as they go (the least a verified
 *   put does; no target).
 * - open (read back whole) through `MongoBackend` vs iterating a bare
 *   `GridFSBucket` download stream of the same bytes; target ≥ 0.9.
 * - small blobs: 10,000 `Store.put`s of 1 KiB with MongoCatalog (and a
 *   MemoryBackend, so the row measures the catalog: a put of a new blob is
 *   two round trips, `touchRef` then `insertRef`) vs 10,000 bare
 *   `insertOne`s of the same reference documents (target ≥ 0.5), and vs
 *   the same two steps done bare, the bound where a lookup costs more than
 *   an insert (FerretDB v1 scans the collection to find a missing `_id`).
 *   Each round starts from empty collections. A note gives each bare
 *   step's cost, empty and full, and the best ratio they allow.
 * - peak RSS growth during a 1 GiB put and open; ≤ 64 MiB.
 * - `Store.gc` over 100,000 references, half of them garbage, with
 *   MongoCatalog + MongoBackend (seeded in bulk, untimed): its time, with
 *   the removals batched (`removeRefs`, `removeMany`).
 *
 * Each put round writes fresh names; the copies of the round before are
 * removed before it, untimed, so every round sees the same small database
 * (FerretDB v1 scans whole collections for many queries: see the README).
 *
 * Needs a MongoDB server at MONGODB_URL (default: the local FerretDB of
 * `bash scripts/ferretdb.sh start`). Standalone: `deno run -A
 * bench/mongo.ts [--quick] [--only TEXT]`. Everything goes to a fresh
 * database, dropped at the end. `mongoSuite` plugs into `bench/main.ts`.
 *
 * @module
 */

import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import {
  type Db,
  type Document,
  GridFSBucket,
  Long,
  MongoClient,
  type ObjectId,
} from "mongodb";
import { createHash } from "node:crypto";
import { MemoryBackend, Refs, Store } from "../mod.ts";
import { MongoBackend, MongoCatalog } from "../mongo.ts";
import { newBlobName } from "../src/names.ts";
import type { BenchCase, BenchSuite } from "./harness.ts";
import { standalone } from "./run.ts";
import { putBoundNote } from "./bound.ts";
import { keepEveryOther, perReferenceMs } from "./gc.ts";
import { rssCases } from "./rss.ts";
import { seedBlobs } from "../tests/mongo_seed.ts";
import { chunksOf, drain, hashOfSize, streamOf } from "./data.ts";

const MiB = 2 ** 20;
const PREFIX = "blobstore";
const MONGODB_URL = Deno.env.get("MONGODB_URL") ??
  "mongodb://127.0.0.1:27117/";

function randomSuffix(): string {
  return crypto.randomUUID().replaceAll("-", "").slice(0, 16);
}

let client: MongoClient | undefined;
let db: Db | undefined;

/** The MongoDB cases. */
export const mongoSuite: BenchSuite = {
  name: "mongo",
  async open({ quick }) {
    try {
      client = await MongoClient.connect(MONGODB_URL, {
        serverSelectionTimeoutMS: 3000,
      });
    } catch (err) {
      return `no MongoDB server at ${MONGODB_URL} (${
        (err as Error).message
      }); run \`bash scripts/ferretdb.sh start\``;
    }
    db = client.db(`blobstore_bench_${randomSuffix()}`);
    const size = quick ? 64 * MiB : 256 * MiB;
    return [
      ...putOpenCases(db, size),
      ...smallBlobsCases(db, quick ? 1_000 : 10_000),
      ...rssCases(
        "MongoBackend",
        new MongoBackend(db, "rss"),
        quick ? 128 * MiB : 1024 * MiB,
      ),
      gcCase(db, quick ? 4_000 : 100_000),
    ];
  },
  async close() {
    await db?.dropDatabase().catch(() => {});
    await client?.close();
    db = client = undefined;
  },
};

/** Put (against the bare upload, and the bare upload hashing) and open. */
function putOpenCases(db: Db, size: number): BenchCase[] {
  const backend = new MongoBackend(db, PREFIX);
  const bucket = new GridFSBucket(db, { bucketName: PREFIX });
  const hash = hashOfSize(size);
  const ours: string[] = [];
  const bare: ObjectId[] = [];
  const removeCopies = async () => {
    for (const name of ours.splice(0)) await backend.remove(name);
    for (const id of bare.splice(0)) await bucket.delete(id);
  };
  const oursPut = async () => {
    const name = newBlobName(hash);
    ours.push(name);
    await backend.put(name, streamOf(size), size, hash);
  };
  const barePut = async (hashing: boolean) => {
    const upload = bucket.openUploadStream(`bare-${randomSuffix()}`);
    bare.push(upload.id);
    const digest = createHash("sha384");
    const chunks = hashing
      ? (function* () {
        for (const chunk of chunksOf(size)) {
          digest.update(chunk);
          yield chunk;
        }
      })()
      : chunksOf(size);
    await pipeline(Readable.from(chunks), upload);
    if (hashing && digest.digest("hex") !== hash) {
      throw new Error("bare upload: wrong hash");
    }
  };
  // Three rounds, not five: FerretDB v1 writes GridFS at ~35 MB/s here.
  const put: BenchCase = {
    name: "put MongoBackend vs bare GridFSBucket upload",
    size,
    target: 0.9,
    rounds: 3,
    beforeRound: removeCopies,
    ours: oursPut,
    baseline: () => barePut(false),
    teardown: removeCopies,
    note: putBoundNote,
  };
  return [
    put,
    {
      ...put,
      name: "put MongoBackend vs bare GridFSBucket upload + SHA-384",
      target: undefined,
      baseline: () => barePut(true),
      note: undefined,
    },
    {
      name: "open MongoBackend vs bare GridFSBucket download",
      size,
      target: 0.9,
      rounds: 3,
      async setup() {
        await oursPut();
        await barePut(false);
      },
      async ours() {
        const { body } = await backend.get(ours[0]);
        if (await drain(body) !== size) throw new Error("short read");
      },
      async baseline() {
        let n = 0;
        for await (const chunk of bucket.openDownloadStream(bare[0])) {
          n += (chunk as Uint8Array).byteLength;
        }
        if (n !== size) throw new Error("bare GridFSBucket: short read");
      },
      teardown: removeCopies,
    },
  ];
}

/**
 * `count` puts of distinct 1 KiB blobs through a store on MongoCatalog vs
 * `count` bare `insertOne`s of the same reference documents (target ≥
 * 0.5), or with `twoSteps`, vs the two bare steps a put of a new blob
 * takes (`findOneAndUpdate` on a missing `_id`, then `insertOne`): the
 * bound on a server where a lookup costs more than an insert.
 */
function smallBlobsCases(db: Db, count: number): BenchCase[] {
  const store = new Store({
    catalog: new MongoCatalog(db, "small"),
    backend: new MemoryBackend(),
  });
  let round = 0;
  let blobs: { bytes: Uint8Array; hash: string }[] = [];
  // Every round starts from empty collections: on FerretDB v1 a lookup of a
  // missing _id scans the collection, so what is left from earlier rounds
  // would slow the next (and both sides alike).
  const newBlobs = async () => {
    for (const name of ["small.blobref", "bare.blobref", "bare2.blobref"]) {
      await db.collection(name).drop().catch(() => {});
    }
    round++;
    blobs = Array.from({ length: count }, (_, i) => {
      const bytes = new Uint8Array(1024);
      new DataView(bytes.buffer).setUint32(0, round);
      new DataView(bytes.buffer).setUint32(4, i);
      return { bytes, hash: createHash("sha384").update(bytes).digest("hex") };
    });
  };
  const bare = (collection: string, twoSteps: boolean) => {
    const refs = db.collection<Document & { _id: string }>(collection);
    return async () => {
      for (const { hash } of blobs) {
        const puttime = new Date();
        if (twoSteps) {
          const found = await refs.findOneAndUpdate({ _id: hash }, {
            $set: { puttime },
          }, { returnDocument: "after" });
          if (found) throw new Error("bare: hash already there");
        }
        await refs.insertOne({
          _id: hash,
          name: newBlobName(hash),
          puttime,
          size: Long.fromNumber(1024),
        });
      }
    };
  };
  const name = `small blobs: ${
    count.toLocaleString("en")
  } Store.put of 1 KiB via MongoCatalog`;
  let costs: StepCosts | undefined;
  const base: BenchCase = {
    name: `${name} vs bare insertOne`,
    size: count,
    unit: "ops",
    target: 0.5,
    rounds: 3,
    beforeRound: newBlobs,
    async ours() {
      for (const { bytes, hash } of blobs) await store.put(bytes, hash, 1024);
    },
    baseline: bare("bare.blobref", false),
    async teardown() {
      // Untimed: what each step costs empty and at the size a round ends
      // with, to state what bounds the ratio on this server.
      costs = await stepCosts(db, "bare.blobref", count);
    },
    note: () => costs && stepCostsNote(costs, count),
  };
  return [base, {
    ...base,
    name: `${name} vs bare findOneAndUpdate + insertOne (a new put's 2 steps)`,
    target: undefined,
    rounds: 1,
    baseline: bare("bare2.blobref", true),
    teardown: undefined,
    note: undefined,
  }];
}

/** Milliseconds per bare step, in an empty collection and a full one. */
interface StepCosts {
  insertEmpty: number;
  lookupEmpty: number;
  insertFull: number;
  lookupFull: number;
}

/**
 * Times `PROBES` bare `findOneAndUpdate`s of missing `_id`s (touchRef on
 * new content) and `insertOne`s (insertRef), in an empty collection and in
 * `collection`, which holds `count` references.
 */
async function stepCosts(
  db: Db,
  collection: string,
  count: number,
): Promise<StepCosts> {
  const PROBES = 50;
  const time = async (op: (i: number) => Promise<unknown>) => {
    await op(-1); // the first call of a kind may create or warm things
    const start = performance.now();
    for (let i = 0; i < PROBES; i++) await op(i);
    return (performance.now() - start) / PROBES;
  };
  const measure = async (name: string) => {
    const refs = db.collection<Document & { _id: string }>(name);
    const id = (kind: string, i: number) =>
      createHash("sha384").update(`${kind} ${randomSuffix()} ${i}`).digest(
        "hex",
      );
    const insert = await time((i) =>
      refs.insertOne({
        _id: id("probe", i),
        name: "probe",
        puttime: new Date(),
        size: Long.fromNumber(1024),
      })
    );
    const lookup = await time((i) =>
      refs.findOneAndUpdate({ _id: id("missing", i) }, {
        $set: { puttime: new Date() },
      }, { returnDocument: "after" })
    );
    return { insert, lookup };
  };
  const full = await measure(collection);
  if (await db.collection(collection).countDocuments() < count) {
    throw new Error(`${collection} holds fewer than ${count} references`);
  }
  await db.collection("probe.blobref").drop().catch(() => {});
  const empty = await measure("probe.blobref");
  await db.collection("probe.blobref").drop().catch(() => {});
  return {
    insertEmpty: empty.insert,
    lookupEmpty: empty.lookup,
    insertFull: full.insert,
    lookupFull: full.lookup,
  };
}

/**
 * What bounds the small-blobs ratio: a new put is a lookup (touchRef) and
 * an insert (insertRef) where the baseline is the insert alone, over a
 * collection growing from empty to `count`; with the lookup's cost growing
 * linearly (a scan), the best ratio is the insert's share of the two at
 * the average size.
 */
function stepCostsNote(c: StepCosts, count: number): string {
  const perRefUs = (c.lookupFull - c.lookupEmpty) / count * 1000;
  const insert = (c.insertEmpty + c.insertFull) / 2;
  const lookup = (c.lookupEmpty + c.lookupFull) / 2;
  const ms = (x: number) => `${x.toFixed(2)} ms`;
  return `small blobs, the bare steps on this server (untimed probes): a lookup of a missing _id (touchRef's findOneAndUpdate) ${
    ms(c.lookupEmpty)
  } empty, ${ms(c.lookupFull)} at ${count.toLocaleString("en")} references (${
    perRefUs.toFixed(2)
  } µs per reference: a scan); an insertOne ${ms(c.insertEmpty)} empty, ${
    ms(c.insertFull)
  } full. A new put is both, the baseline the insert alone: from empty to ${
    count.toLocaleString("en")
  } references that bounds the ratio near ${
    (insert / (insert + lookup)).toFixed(3)
  } (an estimate from the probes; the two-step row measures it)`;
}

/**
 * One `Store.gc` over `count` references seeded in bulk (untimed), every
 * other one garbage, with MongoCatalog + MongoBackend.
 */
function duration(ms: number): string {
  return ms >= 7_200_000
    ? `${(ms / 3_600_000).toFixed(1)} h`
    : `${(ms / 60_000).toFixed(1)} min`;
}

/** How many garbage references the per-reference comparison removes. */
const PER_REF_SAMPLE = 10;

function gcCase(db: Db, count: number): BenchCase {
  const garbage = count / 2;
  const putTime = new Date(Date.now() - 60_000);
  let refs = new Refs(count);
  let perRefMs = 0;
  return {
    name: `GC over ${
      count.toLocaleString("en")
    } references, half garbage (MongoCatalog + MongoBackend)`,
    size: count,
    unit: "ops",
    rounds: 1,
    targetText: "report time; deletes batched",
    async setup() {
      const hashes = await seedBlobs(db, PREFIX, count, putTime);
      refs = keepEveryOther(hashes);
      const catalog = new MongoCatalog(db, PREFIX);
      await catalog.ensureIndexes();
      // For comparison, untimed: the per-reference path on a few of them.
      perRefMs = await perReferenceMs(
        catalog,
        new MongoBackend(db, PREFIX),
        hashes,
        refs,
        putTime,
        PER_REF_SAMPLE,
      );
    },
    async ours() {
      const store = new Store({
        catalog: new MongoCatalog(db, PREFIX),
        backend: new MongoBackend(db, PREFIX),
      });
      const stats = await store.gc(refs, new Date(putTime.getTime() + 1));
      if (stats.count !== count - garbage) {
        throw new Error(
          `GC kept ${stats.count} blobs (expected ${count - garbage})`,
        );
      }
      const left = await db.collection(`${PREFIX}.files`).countDocuments();
      if (left !== count - garbage) {
        throw new Error(`GC left ${left} files (expected ${count - garbage})`);
      }
    },
    async teardown() {
      for (const name of ["blobref", "files", "chunks"]) {
        await db.collection(`${PREFIX}.${name}`).drop().catch(() => {});
      }
    },
    note: (row) =>
      `GC over ${count.toLocaleString("en")} references (${
        garbage.toLocaleString("en")
      } garbage), removals batched: ${
        (count / row.ours).toFixed(1)
      } s; the per-reference path measured on ${PER_REF_SAMPLE} of them: ${
        perRefMs.toFixed(0)
      } ms per removal, so ≈ ${duration(perRefMs * garbage)} for all`,
  };
}

if (import.meta.main) await standalone(mongoSuite);
