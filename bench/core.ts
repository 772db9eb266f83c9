/**
 * Cases that need no service: the digester, a put into memory, Refs, and
 * the peak RSS of a 1 GiB put and open in memory (where the target does not
 * apply: MemoryBackend holds the bytes).
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  MemoryBackend,
  MemoryCatalog,
  Refs,
  Sha384Stream,
  Store,
} from "../mod.ts";
import type { BenchSuite } from "./harness.ts";
import { chunksOf, hashOfSize, streamOf } from "./data.ts";
import { rssCases } from "./rss.ts";
import { standalone } from "./run.ts";

const MiB = 2 ** 20;

/** The digester, memory put and Refs cases. */
export const coreSuite: BenchSuite = {
  name: "core",
  open({ quick }) {
    const digestSize = quick ? 64 * MiB : 512 * MiB;
    const putSize = quick ? 64 * MiB : 256 * MiB;
    const refCount = quick ? 200_000 : 1_000_000;
    const rssSize = quick ? 128 * MiB : 1024 * MiB;
    return Promise.resolve([
      {
        name: "Sha384Stream vs node:crypto",
        size: digestSize,
        target: 0.95,
        async ours() {
          const hasher = new Sha384Stream();
          await streamOf(digestSize).pipeThrough(hasher).pipeTo(
            new WritableStream(),
          );
          await hasher.digest;
        },
        baseline() {
          const hash = createHash("sha384");
          for (const chunk of chunksOf(digestSize)) hash.update(chunk);
          hash.digest("hex");
          return Promise.resolve();
        },
      },
      (() => {
        const hash = hashOfSize(putSize);
        let store = newMemoryStore();
        return {
          name: "put into MemoryBackend vs hashing alone",
          size: putSize,
          target: 0.85,
          async ours() {
            store = newMemoryStore(); // a fresh store: every round stores anew
            await store.put(streamOf(putSize), hash, putSize);
          },
          async baseline() {
            const h = createHash("sha384");
            for await (const chunk of streamOf(putSize)) h.update(chunk);
            h.digest("hex");
          },
          teardown() {
            store = newMemoryStore();
            return Promise.resolve();
          },
        };
      })(),
      refsCase(refCount),
      ...rssCases("MemoryBackend", new MemoryBackend(), rssSize, {
        holdsBytes: true,
      }),
      garbageFloorCase(rssSize),
    ]);
  },
};

/**
 * What V8 lets garbage grow to: a stream of fresh 1 MiB buffers (FileBackend's
 * read size), each dropped by the consumer, with no backend at all. A
 * streamed open cannot show less growth than this floor (V8 collects
 * buffers only once ~64 MB of new ones have been allocated since its last
 * collection).
 */
function garbageFloorCase(size: number) {
  return {
    name: "garbage floor: fresh 1 MiB buffers streamed and dropped, no backend",
    size,
    rounds: 1,
    targetText: "none (the floor of every open's RSS growth)",
    async ours() {
      let left = size;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          controller.enqueue(new Uint8Array(MiB));
          if ((left -= MiB) <= 0) controller.close();
        },
      }, { highWaterMark: 0 });
      for await (const _ of body) { /* dropped */ }
    },
  };
}

function newMemoryStore() {
  return new Store({
    catalog: new MemoryCatalog(),
    backend: new MemoryBackend(),
  });
}

function refsCase(count: number) {
  const hashes = Array.from(
    { length: count },
    (_, i) => createHash("sha384").update(String(i)).digest("hex"),
  );
  let keep: unknown;
  return {
    name: `Refs (${count.toLocaleString("en")} hashes, add + has) vs Set`,
    size: 2 * count,
    unit: "ops" as const,
    minRate: 1_000_000,
    maxRssGrowthMiB: 64 * count / 1_000_000,
    targetText: `≥ 1,000,000 ops/s, RSS growth ≤ ${64 * count / 1_000_000} MiB`,
    ours() {
      const refs = new Refs(count);
      for (const h of hashes) refs.add(h);
      for (const h of hashes) if (!refs.has(h)) throw new Error("lost " + h);
      keep = refs;
      return Promise.resolve();
    },
    baseline() {
      const set = new Set<string>();
      for (const h of hashes) set.add(h);
      for (const h of hashes) if (!set.has(h)) throw new Error("lost " + h);
      keep = set;
      return Promise.resolve();
    },
    teardown() {
      keep = undefined;
      return Promise.resolve(keep as undefined);
    },
  };
}

if (import.meta.main) await standalone(coreSuite);
