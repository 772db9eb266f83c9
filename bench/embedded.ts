/**
 * The embedded backends against the raw file system, in the same run:
 *
 * - put of a 256 MiB blob through `FileBackend` vs hashing the same chunks
 *   while writing them with `Deno.open`, then fsync (what a put must do at
 *   least); target ≥ 0.9.
 * - open (read back whole) through `FileBackend` vs reading the file with
 *   `Deno.open`, 1 MiB at a time into fresh buffers (what a stream must
 *   hand its consumer); target ≥ 0.9. And, for scale, vs reading it into
 *   one reused buffer (the bare cost of the reads; no target).
 * - put and open through `KvBackend` on a KV file, against the same
 *   baselines (no target: KV is a database, not a file), and a bare
 *   `kv.atomic().set` of the same bytes in 64 KiB values, the KV write
 *   speed that bounds a put into KV.
 * - peak RSS growth during a 1 GiB put and open, each backend; ≤ 64 MiB.
 * - one `Store.gc` over 100,000 references (10,000 with `--quick`), half
 *   of them garbage, with `KvCatalog` on a KV file and `FileBackend`: its
 *   time, and the per-reference path's on a sample for comparison.
 *
 * Standalone: `deno run -A --unstable-kv bench/embedded.ts [--quick]
 * [--only TEXT]` (`--quick`: 64 MiB, 1 round). Data goes to a temporary
 * directory, removed at the end. `embeddedSuite` plugs into
 * `bench/main.ts`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import { FileBackend } from "../src/fs/backend.ts";
import { KvBackend } from "../src/kv/backend.ts";
import { KvCatalog } from "../src/kv/catalog.ts";
import { newBlobName } from "../src/names.ts";
import { Refs } from "../src/refs.ts";
import { Store } from "../src/store.ts";
import type { BenchCase, BenchSuite } from "./harness.ts";
import { putBoundNote } from "./bound.ts";
import { keepEveryOther, perReferenceMs } from "./gc.ts";
import { rssCases } from "./rss.ts";
import { standalone } from "./run.ts";
import { CHUNK, chunksOf, drain, hashOfSize, streamOf } from "./data.ts";

const MiB = 2 ** 20;

let workDir: string | undefined;
let kv: Deno.Kv | undefined;

/** The FileBackend and KvBackend cases. */
export const embeddedSuite: BenchSuite = {
  name: "embedded",
  async open({ quick }) {
    const size = quick ? 64 * MiB : 256 * MiB;
    const hash = hashOfSize(size);
    workDir = await Deno.makeTempDir({ prefix: "blobstore-bench-" });
    const files = new FileBackend(join(workDir, "files"));
    kv = await Deno.openKv(join(workDir, "bench.kv"));
    const kvBackend = new KvBackend(kv);
    const rawPath = join(workDir, "raw");

    // The baseline writes a fresh file and removes the previous one, as a
    // put round does, so both do the same file-system work.
    let rawCount = 0;
    const rawWrite = async () => {
      const previous = rawPath + rawCount;
      rawCount++;
      const h = createHash("sha384");
      const file = await Deno.open(rawPath + rawCount, {
        write: true,
        createNew: true,
      });
      try {
        for (const chunk of chunksOf(size)) {
          h.update(chunk);
          let written = 0;
          while (written < chunk.length) {
            written += await file.write(chunk.subarray(written));
          }
        }
        await file.sync();
      } finally {
        file.close();
      }
      if (h.digest("hex") !== hash) throw new Error("raw write: wrong hash");
      await Deno.remove(previous).catch(() => {});
    };
    // What any streaming reader must do at least: read 1 MiB at a time
    // into fresh buffers (a consumer may keep every chunk it is given).
    // With `reuse`, into one buffer: the bare cost of the reads.
    const rawRead = async (reuse: boolean) => {
      using file = await Deno.open(rawPath + rawCount, { read: true });
      let buffer = new Uint8Array(MiB);
      let total = 0;
      for (let n; (n = await file.read(buffer)) !== null;) {
        total += n;
        if (!reuse) buffer = new Uint8Array(MiB);
      }
      if (total !== size) throw new Error("short read");
    };

    // Each put round writes a fresh name and removes the previous one, so
    // the disk holds at most two copies.
    const putCase = (
      label: string,
      backend: FileBackend | KvBackend,
      target?: number,
    ): BenchCase => {
      let last: string | undefined;
      return {
        name: `put ${label} vs hash + write with Deno.open`,
        size,
        target,
        async beforeRound() {
          if (last) await backend.remove(last);
          last = undefined;
        },
        async ours() {
          const name = `${hash}-${
            crypto.randomUUID().replaceAll("-", "").slice(0, 16)
          }`;
          await backend.put(name, streamOf(size), size, hash);
          last = name;
        },
        baseline: rawWrite,
        async teardown() {
          if (last) await backend.remove(last);
          last = undefined;
        },
        note: target ? putBoundNote : undefined,
      };
    };
    const openCase = (
      label: string,
      backend: FileBackend | KvBackend,
      reuse: boolean,
      target?: number,
    ): BenchCase => {
      const name = `${hash}-${reuse ? "0000000000000002" : "0000000000000001"}`;
      let stored = false;
      return {
        name: `open ${label} vs read with Deno.open${
          reuse ? " into one reused buffer" : ""
        }`,
        size,
        target,
        async setup() {
          if (!stored) {
            await backend.put(name, streamOf(size), size, hash);
            stored = true;
          }
          // The raw file the baseline reads.
          if (rawCount === 0) await rawWrite();
        },
        async ours() {
          const { body } = await backend.get(name);
          if (await drain(body) !== size) throw new Error("short read");
        },
        baseline: () => rawRead(reuse),
        async teardown() {
          await backend.remove(name);
          stored = false;
        },
      };
    };

    // What a put into KV must do at least: write the bytes as KV values.
    // (KvBackend's own layout, value size and batching are its business;
    // this is the store's raw speed for the same bytes.)
    let bareKey: Deno.KvKey | undefined;
    const removeBareKv = async () => {
      if (!bareKey) return;
      const entries = kv!.list({ prefix: bareKey });
      let op = kv!.atomic();
      let n = 0;
      for await (const { key } of entries) {
        op = op.delete(key);
        if (++n % 1000 === 0) {
          await commitOrThrow(op);
          op = kv!.atomic();
        }
      }
      await commitOrThrow(op);
      bareKey = undefined;
    };
    const kvPut = putCase("KvBackend (KV file)", kvBackend);
    const kvPutCase: BenchCase = {
      ...kvPut,
      name: "put KvBackend (KV file) vs bare kv.atomic().set of 64 KiB values",
      async beforeRound() {
        await kvPut.beforeRound?.();
        await removeBareKv();
      },
      async baseline() {
        const key = bareKey = ["bare", crypto.randomUUID()];
        let i = 0;
        let op = kv!.atomic();
        for (const chunk of chunksOf(size)) {
          op = op.set([...key, i++], chunk);
          // Ten 64 KiB values per commit, as KvBackend: under KV's 800 KiB.
          if (i % 10 === 0) {
            await commitOrThrow(op);
            op = kv!.atomic();
          }
        }
        await commitOrThrow(op);
      },
      async teardown() {
        await kvPut.teardown?.();
        await removeBareKv();
      },
    };
    // What a read from KV does at least: list the same 64 KiB values, 16
    // per batch as KvBackend does. Its RSS growth shows what the values
    // KV hands out weigh until V8 collects them.
    const kvOpen = openCase("KvBackend (KV file)", kvBackend, false);
    const kvOpenCase: BenchCase = {
      ...kvOpen,
      name: "open KvBackend (KV file) vs bare kv.list of 64 KiB values",
      async setup() {
        await kvOpen.setup?.();
        let op = kv!.atomic();
        let i = 0;
        for (const chunk of chunksOf(size)) {
          op = op.set(["bareread", i++], chunk);
          if (i % 10 === 0) {
            await commitOrThrow(op);
            op = kv!.atomic();
          }
        }
        await commitOrThrow(op);
      },
      async baseline() {
        let n = 0;
        const entries = kv!.list<Uint8Array>({ prefix: ["bareread"] }, {
          batchSize: 16,
        });
        for await (const { value } of entries) n += value.byteLength;
        if (n !== size) throw new Error("bare kv.list: short read");
      },
      note: (row) =>
        `${row.case}: peak RSS growth ${row.peakRssGrowthMiB} MiB ours, ${row.baselinePeakRssGrowthMiB} MiB bare`,
    };
    const rssSize = quick ? 128 * MiB : 1024 * MiB;
    return [
      putCase("FileBackend", files, 0.9),
      openCase("FileBackend", files, false, 0.9),
      openCase("FileBackend", files, true),
      putCase("KvBackend (KV file)", kvBackend),
      kvPutCase,
      openCase("KvBackend (KV file)", kvBackend, false),
      kvOpenCase,
      ...rssCases("FileBackend", files, rssSize),
      ...rssCases("KvBackend", kvBackend, rssSize),
      gcCase(workDir, quick ? 10_000 : 100_000),
    ];
  },
  async close() {
    kv?.close();
    if (workDir) await Deno.remove(workDir, { recursive: true });
  },
};

/** How many garbage references the per-reference comparison removes. */
const PER_REF_SAMPLE = 100;

/**
 * One `Store.gc` over `count` references (every other one garbage) in a
 * `KvCatalog` on its own KV file, each naming a one-file blob in a
 * `FileBackend`; seeded untimed through the public API.
 */
function gcCase(dir: string, count: number): BenchCase {
  const garbage = count / 2;
  const putTime = new Date(Date.now() - 60_000);
  const kvPath = join(dir, "gc.kv");
  const backend = new FileBackend(join(dir, "gc-files"));
  let gcKv: Deno.Kv | undefined;
  let refs = new Refs(count);
  let perRefMs = 0;
  let kept = -1;
  return {
    name: `GC over ${
      count.toLocaleString("en")
    } references, half garbage (KvCatalog + FileBackend)`,
    size: count,
    unit: "ops",
    rounds: 1,
    targetText: "report time; deletes batched",
    async setup() {
      gcKv = await Deno.openKv(kvPath);
      const catalog = new KvCatalog(gcKv);
      const hashes = await seedGcBlobs(catalog, backend, count, putTime);
      refs = keepEveryOther(hashes);
      // For comparison, untimed: the per-reference path on a sample.
      perRefMs = await perReferenceMs(
        catalog,
        backend,
        hashes,
        refs,
        putTime,
        PER_REF_SAMPLE,
      );
    },
    async ours() {
      const store = new Store({ catalog: new KvCatalog(gcKv!), backend });
      kept = (await store.gc(refs, new Date(putTime.getTime() + 1))).count;
    },
    async teardown() {
      // Checked here, untimed: what GC kept, and the files it left.
      let left = 0;
      for await (const _ of backend.list()) left++;
      gcKv?.close();
      gcKv = undefined;
      await Deno.remove(kvPath).catch(() => {});
      await Deno.remove(backend.root, { recursive: true }).catch(() => {});
      if (kept !== count - garbage || left !== count - garbage) {
        throw new Error(
          `GC kept ${kept} references and left ${left} files (expected ${
            count - garbage
          } of each)`,
        );
      }
    },
    note: (row) =>
      `GC over ${count.toLocaleString("en")} references (${
        garbage.toLocaleString("en")
      } garbage), KvCatalog + FileBackend: ${
        (count / row.ours).toFixed(1)
      } s; the per-reference path measured on ${PER_REF_SAMPLE} of them: ${
        perRefMs.toFixed(2)
      } ms per removal, so ≈ ${
        (perRefMs * garbage / 1000).toFixed(0)
      } s for all`,
  };
}

/**
 * Stores `count` distinct 4-byte blobs put at `putTime` (files written
 * straight into the backend's layout, which a real put would also fsync;
 * references through `insertRef`, 64 at a time), and returns their hashes.
 */
async function seedGcBlobs(
  catalog: KvCatalog,
  backend: FileBackend,
  count: number,
  putTime: Date,
): Promise<string[]> {
  const hashes: string[] = [];
  for (let from = 0; from < count; from += 64) {
    const batch = [];
    for (let i = from; i < Math.min(from + 64, count); i++) {
      const bytes = new Uint8Array(new Uint32Array([i]).buffer);
      const hash = createHash("sha384").update(bytes).digest("hex");
      const name = newBlobName(hash);
      hashes.push(hash);
      batch.push((async () => {
        const dir = join(backend.root, name.slice(0, 2), name.slice(2, 4));
        await Deno.mkdir(dir, { recursive: true });
        await Deno.writeFile(join(dir, name), bytes);
        const ok = await catalog.insertRef({ hash, name, putTime, size: 4 });
        if (!ok) throw new Error(`seeding: reference ${hash} already there`);
      })());
    }
    await Promise.all(batch);
  }
  return hashes;
}

async function commitOrThrow(op: Deno.AtomicOperation): Promise<void> {
  const result = await op.commit();
  if (!result.ok) throw new Error("bare KV commit failed");
}

// The KV values are 64 KiB each: the largest KV takes.
if (CHUNK !== 64 * 1024) throw new Error("bench chunks must be 64 KiB");

if (import.meta.main) await standalone(embeddedSuite);
