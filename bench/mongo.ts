/**
 * MongoBackend against a bare `GridFSBucket` on the same server, in the
 * same run, and the time of a GC over 10,000 references:
 *
 * - put of a 256 MiB blob through `MongoBackend` (streamed, verified:
 *   SHA-384 and size) vs a bare `GridFSBucket` upload stream fed the same
 *   chunks through `node:stream`'s `pipeline`; target ≥ 0.9.
 * - open (read back whole) through `MongoBackend` vs iterating a bare
 *   `GridFSBucket` download stream of the same bytes; target ≥ 0.9.
 * - `Store.gc` over 10,000 references with MongoCatalog + MongoBackend:
 *   once with all of them still referenced (the pass itself), once with 1%
 *   garbage (100 removals).
 *
 * Peak RSS growth is reported for both paths (on FerretDB v1 the bare
 * download holds a whole blob: see `src/backends/gridfs.ts`).
 *
 * Each round puts one copy per path, opens both, then removes both outside
 * the timings, so every round sees the same small database (FerretDB v1
 * scans whole collections for GridFS queries: see the README). Rounds
 * alternate which path goes first.
 *
 * Needs a MongoDB server at MONGODB_URL (default: the local FerretDB of
 * `bash scripts/ferretdb.sh start`). Standalone:
 * `deno run -A bench/mongo.ts [--quick]` (`--quick`: 64 MiB, 1 round, GC
 * over 2,000). Everything goes to a fresh database, dropped at the end.
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
  ObjectId,
} from "mongodb";
import { createHash } from "node:crypto";
import { Refs, Store } from "../mod.ts";
import { MongoBackend, MongoCatalog } from "../mongo.ts";
import { type BenchRow, markdownTable, sampleRss } from "./harness.ts";
import { chunksOf, drain, hashOfSize, streamOf } from "./data.ts";

const MiB = 2 ** 20;
const PREFIX = "blobstore";
const MONGODB_URL = Deno.env.get("MONGODB_URL") ??
  "mongodb://127.0.0.1:27117/";

interface Sample {
  ms: number;
  rssGrowthMiB: number;
}

async function timed(fn: () => Promise<void>): Promise<Sample> {
  const { result: ms, growthMiB } = await sampleRss(async () => {
    const start = performance.now();
    await fn();
    return performance.now() - start;
  });
  return { ms, rssGrowthMiB: growthMiB };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function row(
  name: string,
  size: number,
  ours: Sample[],
  base: Sample[],
  target: number,
): BenchRow {
  const rate = (samples: Sample[]) =>
    Math.round(size / 1e6 / (median(samples.map((s) => s.ms)) / 1000));
  const ratio = Math.round(rate(ours) / rate(base) * 1000) / 1000;
  return {
    case: name,
    size,
    ours: rate(ours),
    baseline: rate(base),
    ratio,
    target,
    met: ratio >= target,
    peakRssGrowthMiB:
      Math.round(Math.max(...ours.map((s) => s.rssGrowthMiB)) * 10) / 10,
    unit: "MB/s",
  };
}

function randomSuffix(): string {
  return crypto.randomUUID().replaceAll("-", "").slice(0, 16);
}

/** Times put and open of `size` bytes, ours and bare, for `rounds` rounds. */
async function benchPutOpen(db: Db, size: number, rounds: number) {
  const backend = new MongoBackend(db, PREFIX);
  const bucket = new GridFSBucket(db, { bucketName: PREFIX });
  const hash = hashOfSize(size);
  const samples = {
    oursPut: [] as Sample[],
    barePut: [] as Sample[],
    oursOpen: [] as Sample[],
    bareOpen: [] as Sample[],
  };
  for (let r = 0; r < rounds; r++) {
    const name = `${hash}-${randomSuffix()}`;
    const bareName = `bare-${randomSuffix()}`;
    let bareId: ObjectId | undefined;
    const oursPut = () => backend.put(name, streamOf(size), size, hash);
    const barePut = async () => {
      const upload = bucket.openUploadStream(bareName);
      bareId = upload.id;
      await pipeline(Readable.from(chunksOf(size)), upload);
    };
    const oursOpen = async () => {
      const { body } = await backend.get(name);
      if (await drain(body) !== size) {
        throw new Error("MongoBackend: short read");
      }
    };
    const bareOpen = async () => {
      let n = 0;
      for await (const chunk of bucket.openDownloadStream(bareId!)) {
        n += (chunk as Uint8Array).byteLength;
      }
      if (n !== size) throw new Error("bare GridFSBucket: short read");
    };
    const oursFirst = r % 2 === 0;
    for (
      const [kind, fn] of oursFirst
        ? [["oursPut", oursPut], ["barePut", barePut]] as const
        : [["barePut", barePut], ["oursPut", oursPut]] as const
    ) {
      samples[kind].push(await timed(fn));
    }
    for (
      const [kind, fn] of oursFirst
        ? [["oursOpen", oursOpen], ["bareOpen", bareOpen]] as const
        : [["bareOpen", bareOpen], ["oursOpen", oursOpen]] as const
    ) {
      samples[kind].push(await timed(fn));
    }
    await backend.remove(name);
    await bucket.delete(bareId!);
    console.error(
      `round ${r + 1}: put ${samples.oursPut[r].ms.toFixed(0)} ms ours, ${
        samples.barePut[r].ms.toFixed(0)
      } ms bare; open ${samples.oursOpen[r].ms.toFixed(0)} ms ours, ${
        samples.bareOpen[r].ms.toFixed(0)
      } ms bare`,
    );
  }
  const peak = (samples: Sample[]) =>
    Math.max(...samples.map((s) => s.rssGrowthMiB)).toFixed(1);
  const note = `peak RSS growth of the bare GridFSBucket: put ${
    peak(samples.barePut)
  } MiB, open ${peak(samples.bareOpen)} MiB`;
  return {
    note,
    rows: [
      row(
        "put MongoBackend vs bare GridFSBucket upload",
        size,
        samples.oursPut,
        samples.barePut,
        0.9,
      ),
      row(
        "open MongoBackend vs bare GridFSBucket download",
        size,
        samples.oursOpen,
        samples.bareOpen,
        0.9,
      ),
    ],
  };
}

/**
 * Writes `count` one-chunk blobs straight into the collections, in bulk, as
 * the store would have put them, with put time `putTime`.
 */
async function seedBlobs(
  db: Db,
  count: number,
  putTime: Date,
): Promise<string[]> {
  const hashes: string[] = [];
  for (let from = 0; from < count; from += 1000) {
    const files = [], chunks = [], refs = [];
    for (let i = from; i < Math.min(from + 1000, count); i++) {
      const bytes = new Uint8Array(new Uint32Array([i]).buffer);
      const hash = createHash("sha384").update(bytes).digest("hex");
      const name = `${hash}-${randomSuffix()}`;
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
    await db.collection(`${PREFIX}.files`).insertMany(files);
    await db.collection(`${PREFIX}.chunks`).insertMany(chunks);
    await db.collection<Document & { _id: string }>(`${PREFIX}.blobref`)
      .insertMany(refs);
  }
  return hashes;
}

/** Times one `Store.gc` over `count` references of which `garbage` are. */
async function benchGc(db: Db, count: number, garbage: number) {
  await db.dropDatabase();
  const putTime = new Date(Date.now() - 60_000);
  const hashes = await seedBlobs(db, count, putTime);
  const refs = new Refs(count);
  const every = garbage ? Math.floor(count / garbage) : 0;
  hashes.forEach((hash, i) => every && i % every === 0 || refs.add(hash));
  const catalog = new MongoCatalog(db, PREFIX);
  await catalog.ensureIndexes();
  const store = new Store({ catalog, backend: new MongoBackend(db, PREFIX) });
  const start = performance.now();
  const stats = await store.gc(refs, new Date(putTime.getTime() + 1));
  const ms = performance.now() - start;
  if (stats.count !== count - garbage) {
    throw new Error(
      `GC kept ${stats.count} blobs (expected ${count - garbage})`,
    );
  }
  return ms;
}

if (import.meta.main) {
  const quick = Deno.args.includes("--quick");
  const size = quick ? 64 * MiB : 256 * MiB;
  const rounds = quick ? 1 : 5;
  const gcCount = quick ? 2_000 : 10_000;
  const gcGarbage = gcCount / 100;
  const client = await MongoClient.connect(MONGODB_URL, {
    serverSelectionTimeoutMS: 3000,
  }).catch((err) => {
    throw new Error(
      `no MongoDB server at ${MONGODB_URL} (${err.message}); run \`bash scripts/ferretdb.sh start\``,
    );
  });
  const db = client.db(`blobstore_bench_${randomSuffix()}`);
  const server = await db.admin().command({ buildInfo: 1 });
  try {
    const { rows, note } = await benchPutOpen(db, size, rounds);
    console.error(`GC over ${gcCount} references, none garbage`);
    const gcKeepAll = await benchGc(db, gcCount, 0);
    console.error(`GC over ${gcCount} references, ${gcGarbage} garbage`);
    const gcSome = await benchGc(db, gcCount, gcGarbage);
    console.log(markdownTable(rows));
    console.log(`\n${note}`);
    console.log(
      `\nStore.gc over ${gcCount.toLocaleString("en")} references: ${
        (gcKeepAll / 1000).toFixed(2)
      } s with none garbage, ${(gcSome / 1000).toFixed(2)} s with ${
        gcGarbage.toLocaleString("en")
      } garbage (${
        ((gcSome - gcKeepAll) / gcGarbage).toFixed(1)
      } ms per removal)`,
    );
    console.log(
      `\nserver: ${
        server.ferretdbVersion
          ? `FerretDB ${server.ferretdbVersion}`
          : `MongoDB ${server.version}`
      }; ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}, ${rounds} round(s), median`,
    );
  } finally {
    await db.dropDatabase();
    await client.close();
  }
}
