/**
 * Large uploads through the store, on the File backend and (when it is
 * up) Swift, with the store's default hashing (SHA-384 on worker threads
 * for large bodies):
 *
 * - 256 MiB as 32 parts of 8 MiB sent in order (each part verified and
 *   folded into the upload's running hash) vs one put of 256 MiB; target
 *   ≥ 0.9: the part path costs no more per byte than a single put.
 * - finishing uploads of 256 MiB, 1 GiB and 4 GiB in 8 MiB parts sent in
 *   order: the running hash covers every part, so the finish reads nothing
 *   back and must not grow with size (ms per part reported); beside it the
 *   worst case, parts sent in reverse: the last part sent (part 0) closes
 *   the gap and folds every other part in, reading them back, and the
 *   finish after it is again instant. The row gives both.
 * - where hashing on a worker starts to pay: puts of 256 KiB to 64 MiB
 *   with `hashing: "worker"` vs `"inline"` (the crossover behind
 *   `WORKER_MIN_SIZE`).
 *
 * `--quick` (CI): 64 MiB uploads, one round. Standalone:
 * `deno run -A bench/multipart.ts [--quick] [--only TEXT]`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { Backend } from "../src/backend.ts";
import { FileBackend } from "../src/fs/backend.ts";
import type { Hashing } from "../src/hashing.ts";
import { MemoryCatalog } from "../src/memory/catalog.ts";
import { Store } from "../src/store.ts";
import { SwiftBackend } from "../src/swift/backend.ts";
import { SwiftAuth } from "../src/swift/auth.ts";
import type { BenchCase, BenchSuite } from "./harness.ts";
import { standalone } from "./run.ts";
import { CHUNK, variantChunks, variantHash, variantStream } from "./data.ts";

const MiB = 2 ** 20;
const PART = 8 * MiB;

const swiftCredentials = {
  authURL: Deno.env.get("SWIFT_AUTH_URL") ??
    "http://127.0.0.1:8390/auth/v1.0",
  tenant: "test",
  username: "tester",
  secret: "testing",
};

/** The hashes of every part of an upload of `size` bytes, and the whole's. */
function uploadHashes(size: number, seed: number) {
  const whole = createHash("sha384");
  const parts: string[] = [];
  for (let i = 0; i < size / PART; i++) {
    const part = createHash("sha384");
    for (const chunk of variantChunks(PART, seed + i)) {
      part.update(chunk);
      whole.update(chunk);
    }
    parts.push(part.digest("hex"));
  }
  return { parts, whole: whole.digest("hex") };
}

/** A backend to run on, made fresh for each case and emptied after it. */
interface Place {
  name: string;
  open(): Promise<{ backend: Backend; close(): Promise<void> }>;
}

const filePlace: Place = {
  name: "File",
  async open() {
    const root = await Deno.makeTempDir({ prefix: "blobstore-bench-mp-" });
    return {
      backend: new FileBackend(root),
      close: () => Deno.remove(root, { recursive: true }),
    };
  },
};

async function swiftPlace(): Promise<Place | string> {
  try {
    await new SwiftAuth(swiftCredentials, { timeoutMs: 5000 }).session();
  } catch (err) {
    return `Swift not reachable (${(err as Error).message})`;
  }
  return {
    name: "Swift",
    // deno-lint-ignore require-await
    async open() {
      const bucket = `blobstore-bench-mp-${crypto.randomUUID().slice(0, 8)}`;
      const backend = new SwiftBackend({ ...swiftCredentials, bucket });
      return {
        backend,
        async close() {
          const names: string[] = [];
          for await (const { name } of backend.list!()) names.push(name);
          for (const name of names) await backend.remove(name);
        },
      };
    },
  };
}

function newStore(backend: Backend, hashing?: Hashing): Store {
  return new Store({
    catalog: new MemoryCatalog(),
    backend,
    maxParts: 1000,
    hashing,
  });
}

/** Puts every part of an upload of `size` bytes, in `order`. */
async function putParts(
  store: Store,
  seed: number,
  hashes: string[],
  order: number[],
  onPart?: (part: number, ms: number) => void,
): Promise<string> {
  const id = await store.newUpload(new Date(Date.now() + 3600_000));
  for (const i of order) {
    const start = performance.now();
    await store.putPart(
      id,
      i,
      variantStream(PART, seed + i),
      PART,
      i * PART,
      hashes[i],
    );
    onPart?.(i, performance.now() - start);
  }
  return id;
}

let seeds = 1;

/** The cases of one place. */
function placeCases(place: Place, sizes: number[], quick: boolean) {
  const cases: BenchCase[] = [];
  for (const size of sizes) {
    const count = size / PART;
    let hashes: { parts: string[]; whole: string } | undefined;
    const seed = (seeds += 10_000);
    const label = size >= 1024 * MiB
      ? `${size / 1024 / MiB} GiB`
      : `${size / MiB} MiB`;
    let last = { finish: 0, gap: 0 };
    cases.push({
      name:
        `finish ${label} in ${count} × 8 MiB parts sent in order (${place.name})`,
      size,
      cost: "ms",
      rounds: size > 256 * MiB ? 1 : undefined,
      targetText: "flat with size",
      setup() {
        hashes ??= uploadHashes(size, seed);
        return Promise.resolve();
      },
      async ours() {
        const { backend, close } = await place.open();
        try {
          const store = newStore(backend);
          const order = [...Array(count).keys()];
          const id = await putParts(store, seed, hashes!.parts, order);
          const start = performance.now();
          const { hash } = await store.finishUpload(
            id,
            hashes!.parts.map((hash) => ({ hash })),
          );
          const ms = performance.now() - start;
          if (hash !== hashes!.whole) throw new Error("finish: wrong hash");
          return ms;
        } finally {
          await close();
        }
      },
      note: (row) =>
        `${row.case}: ${(row.ours / count).toFixed(3)} ms per part`,
    });
    if (quick || size > 1024 * MiB) continue;
    cases.push({
      name:
        `reverse order: finish + part 0 closing the gap, ${label} (${place.name})`,
      size,
      cost: "ms",
      rounds: 1,
      targetText: "report",
      setup() {
        hashes ??= uploadHashes(size, seed);
        return Promise.resolve();
      },
      async ours() {
        const { backend, close } = await place.open();
        try {
          const store = newStore(backend);
          const order = [...Array(count).keys()].reverse();
          let gap = 0;
          const id = await putParts(
            store,
            seed,
            hashes!.parts,
            order,
            (part, ms) => {
              if (part === 0) gap = ms;
            },
          );
          const start = performance.now();
          const { hash } = await store.finishUpload(
            id,
            hashes!.parts.map((hash) => ({ hash })),
          );
          const finish = performance.now() - start;
          if (hash !== hashes!.whole) throw new Error("finish: wrong hash");
          last = { finish, gap };
          return finish + gap;
        } finally {
          await close();
        }
      },
      note: (row) =>
        `${row.case}: part 0's put (which reads back and folds in the ${
          count - 1
        } parts after it) ${last.gap.toFixed(0)} ms, then finish ${
          last.finish.toFixed(1)
        } ms`,
    });
  }
  return cases;
}

/** Parts in order vs one put, File backend. */
function partsVsPut(size: number): BenchCase {
  const count = size / PART;
  let hashes: { parts: string[]; whole: string } | undefined;
  const seed = (seeds += 10_000);
  let round = 0;
  let place: { backend: Backend; close(): Promise<void> } | undefined;
  return {
    name: `${
      size / MiB
    } MiB as ${count} × 8 MiB parts in order vs one put (File)`,
    size,
    target: 0.9,
    setup() {
      hashes ??= uploadHashes(size, seed);
      return Promise.resolve();
    },
    async beforeRound() {
      await place?.close();
      place = await filePlace.open();
    },
    async ours() {
      const store = newStore(place!.backend);
      await putParts(
        store,
        seed,
        hashes!.parts,
        [...Array(count).keys()],
      );
    },
    async baseline() {
      // A blob of its own each round: a re-put would only verify.
      const stamp = seed + 5000 + round++;
      const hash = variantHash(size, stamp);
      await newStore(place!.backend).put(
        variantStream(size, stamp),
        hash,
        size,
      );
    },
    async teardown() {
      await place?.close();
    },
  };
}

/** Puts of `each` bytes with hashing on a worker vs inline, File backend. */
function crossover(each: number, quick: boolean): BenchCase {
  const count = Math.max(1, Math.min(64, (quick ? 16 : 64) * MiB / each));
  let place: { backend: Backend; close(): Promise<void> } | undefined;
  let stamp = (seeds += 10_000);
  const blobs = (n: number) =>
    Array.from({ length: n }, () => {
      const s = stamp++;
      return { s, hash: variantHash(each, s) };
    });
  let worker: { s: number; hash: string }[] = [];
  let inline: { s: number; hash: string }[] = [];
  const putAll = async (
    hashing: Hashing,
    list: { s: number; hash: string }[],
  ) => {
    const store = newStore(place!.backend, hashing);
    for (const { s, hash } of list) {
      await store.put(variantStream(each, s), hash, each);
    }
  };
  const label = each >= MiB ? `${each / MiB} MiB` : `${each / 1024} KiB`;
  return {
    name: `${count} puts of ${label}: SHA-384 on a worker vs inline (File)`,
    size: count * each,
    async beforeRound() {
      await place?.close();
      place = await filePlace.open();
      worker = blobs(count);
      inline = blobs(count);
    },
    ours: () => putAll("worker", worker),
    baseline: () => putAll("inline", inline),
    async teardown() {
      await place?.close();
    },
  };
}

/** The multipart and hashing cases. */
export const multipartSuite: BenchSuite = {
  name: "multipart",
  async open({ quick }) {
    if (CHUNK > PART) return "bench chunks larger than a part";
    const sizes = quick ? [64 * MiB] : [256 * MiB, 1024 * MiB, 4096 * MiB];
    const cases: BenchCase[] = [partsVsPut(quick ? 64 * MiB : 256 * MiB)];
    cases.push(...placeCases(filePlace, sizes, quick));
    const swift = await swiftPlace();
    if (typeof swift === "string") {
      console.error(`multipart: Swift rows skipped: ${swift}`);
    } else {
      cases.push(...placeCases(swift, sizes, quick));
    }
    const sizesX = quick
      ? [256 * 1024, 4 * MiB]
      : [256 * 1024, 1 * MiB, 4 * MiB, 16 * MiB, 64 * MiB];
    cases.push(...sizesX.map((each) => crossover(each, quick)));
    return cases;
  },
};

if (import.meta.main) await standalone(multipartSuite);
