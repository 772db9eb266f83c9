/**
 * The soak: many clients over loopback HTTP for a bounded time, with a GC
 * running alongside, and proof at the end that nothing was lost, nothing
 * corrupted, nothing leaked, and memory stayed bounded.
 *
 * ```sh
 * deno run -A --unstable-kv scripts/soak.ts [--clients 32] [--duration 60s]
 *   [--seed N] [--gc-interval 2s] [--min-part-size 256K]
 *   [--mongodb URL] [--swift]
 * ```
 *
 * The server is `createHandler` over the embedded default (Deno KV catalog
 * and file backend in a temporary directory; `--mongodb URL` uses a fresh
 * database of that MongoDB instead, `--swift` a fresh bucket of the Swift
 * named by the `SWIFT_*` variables), served by `Deno.serve` on a free
 * loopback port. Each client loops over a mix of operations:
 *
 * - `put`: a new blob (1 KiB to 2 MiB, most of them small);
 * - `put-dup`: the content of an earlier blob again, often one still held
 *   by another client, sometimes one already dropped;
 * - `get-range` and `get-full`: a blob the client set holds, checked byte
 *   for byte against its content;
 * - `multipart`: an upload in 2 or 3 parts then finished (one in five is
 *   abandoned and deleted instead), the finished blob read by hash;
 * - dropping a blob it holds, so that the GC has garbage to collect.
 *
 * The live set is every blob acknowledged (2xx) and not yet dropped. The
 * GC runs every `--gc-interval` with the live set as its refs and a
 * cut-off before the start of every operation still in flight (minus a
 * second): the store's contract, under which a blob put after the cut-off
 * is never touched. A read of a live blob that fails is a lost blob.
 *
 * At the end: every live blob is read whole and hashed; a last GC runs
 * with the live set; then the catalog must hold exactly the live blobs and
 * the parts of live multipart blobs, and the backend exactly the objects
 * the catalog names (anything more is a leak). RSS is sampled throughout:
 * the median of the last third may not exceed that of the first third by
 * more than half plus 64 MiB. Any failure exits with status 1.
 *
 * `runSoak` is the same run as a function, for the bounded test in
 * `tests/soak_test.ts`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import { createHandler } from "../src/http/handler.ts";
import { MultipartBlobs } from "../src/multipart_blobs.ts";
import { Refs } from "../src/refs.ts";
import { openSeams } from "../src/server/config.ts";
import type { Seams } from "../src/server/seams.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/** How to run a soak. */
export interface SoakOptions {
  /** Concurrent clients (default 32). */
  clients?: number;
  /** How long the clients run, in ms (default 60 000). */
  durationMs?: number;
  /** Seeds the content and the choices (default: random). */
  seed?: number;
  /** Time between two GC runs, in ms (default 2000). */
  gcIntervalMs?: number;
  /** The store's least part size (default 256 KiB: parts stay small). */
  minPartSize?: number;
  /** The most blobs one client holds before it drops its oldest (default 40). */
  maxHeldPerClient?: number;
  /** Environment for the seams (default: none, the embedded default). */
  env?: (name: string) => string | undefined;
  /** Where progress goes (default: nowhere). */
  log?: (line: string) => void;
}

/** Latency figures of one kind of operation, in ms. */
export interface LatencyStats {
  count: number;
  errors: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** What a soak measured and found. */
export interface SoakReport {
  seed: number;
  clients: number;
  seconds: number;
  /** HTTP requests answered as expected per second, every kind together. */
  opsPerSecond: number;
  /** Latency by kind of operation (`gc` is one collection). */
  latency: Record<string, LatencyStats>;
  /** Blobs acknowledged during the run (puts, duplicates and finishes). */
  acknowledged: number;
  /** Blobs live at the end, all read back whole. */
  verified: number;
  /** Live blobs that could not be read, or not whole. */
  lost: number;
  /** Live blobs whose bytes were not theirs. */
  corrupted: number;
  /** Catalog references and backend objects left that nothing needs. */
  leaked: number;
  /** References whose bytes were missing from the backend. */
  dangling: number;
  /** References and objects at the end. */
  refs: number;
  objects: number;
  gcRuns: number;
  /** The last GC, with the clients stopped: references removed and its time. */
  finalGc: { removed: number; seconds: number };
  /** RSS medians of the first and last thirds, and the peak, in bytes. */
  rss: { first: number; last: number; peak: number; samples: number };
  /** Everything that went wrong; empty when the soak passed. */
  failures: string[];
}

// ---------------------------------------------------------------------------
// Content: every blob is a seed and a size, regenerated whenever checked.

/** Fills `out` with xorshift32 output from `seed`. */
function fill(out: Uint8Array, seed: number): void {
  let x = (seed | 0) || 0x9e3779b9;
  const words = new Uint32Array(out.buffer, out.byteOffset, out.length >> 2);
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
  for (let i = words.length * 4; i < out.length; i++) out[i] = (x >>> i) & 0xff;
}

function contentOf(seed: number, size: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  fill(out, seed);
  return out;
}

function hashOf(bytes: Uint8Array): string {
  return createHash("sha384").update(bytes).digest("hex");
}

/** mulberry32, for the clients' choices. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    let t = (state = (state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

// ---------------------------------------------------------------------------
// The live set

interface Content {
  seed: number;
  size: number;
  hash: string;
}

interface LiveBlob extends Content {
  /** Clients holding it, readers included. */
  holds: number;
  /** For a multipart blob: its upload and its parts' hashes. */
  uploadId?: string;
  parts?: string[];
}

/**
 * Every blob acknowledged and not yet dropped. Every method runs without
 * awaiting, so the GC's snapshot and the clients' holds never interleave.
 */
class LiveSet {
  readonly blobs = new Map<string, LiveBlob>();
  /** Multipart blobs dropped by every holder, for the GC to release. */
  released: LiveBlob[] = [];
  /** Content put whole at some point, for duplicates. */
  readonly pool: Content[] = [];

  hold(content: Content, extra: Partial<LiveBlob> = {}): LiveBlob {
    const blob = this.blobs.get(content.hash) ??
      { ...content, holds: 0, ...extra };
    blob.holds++;
    this.blobs.set(content.hash, blob);
    return blob;
  }

  drop(hash: string): void {
    const blob = this.blobs.get(hash);
    if (!blob) throw new Error(`dropped a blob not held: ${hash}`);
    if (--blob.holds > 0) return;
    this.blobs.delete(hash);
    if (blob.uploadId) this.released.push(blob);
  }

  remember(content: Content): void {
    this.pool.push(content);
    if (this.pool.length > 2000) this.pool.splice(0, 1000);
  }

  refs(): Refs {
    const refs = new Refs(this.blobs.size);
    for (const hash of this.blobs.keys()) refs.add(hash);
    return refs;
  }
}

// ---------------------------------------------------------------------------
// Measurements

class Recorder {
  readonly durations = new Map<string, number[]>();
  readonly errors = new Map<string, number>();
  readonly failures: string[] = [];
  /** HTTP requests answered as expected. */
  requests = 0;

  record(kind: string, ms: number): void {
    let list = this.durations.get(kind);
    if (!list) this.durations.set(kind, list = []);
    list.push(ms);
  }

  error(kind: string, message: string): void {
    this.errors.set(kind, (this.errors.get(kind) ?? 0) + 1);
    // The first few of each kind say enough.
    if (this.failures.filter((f) => f.startsWith(`${kind}:`)).length < 5) {
      this.failures.push(`${kind}: ${message}`);
    }
  }

  stats(): Record<string, LatencyStats> {
    const out: Record<string, LatencyStats> = {};
    const kinds = new Set([...this.durations.keys(), ...this.errors.keys()]);
    for (const kind of [...kinds].sort()) {
      const sorted = (this.durations.get(kind) ?? []).sort((a, b) => a - b);
      const at = (q: number) =>
        sorted.length === 0 ? 0 : round(
          sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))],
        );
      out[kind] = {
        count: sorted.length,
        errors: this.errors.get(kind) ?? 0,
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        max: round(sorted.at(-1) ?? 0),
      };
    }
    return out;
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

/** Operations in flight, by start time: the GC cuts off before the oldest. */
class InFlight {
  #starts = new Map<number, number>();
  #next = 0;

  start(): () => void {
    const id = this.#next++;
    this.#starts.set(id, Date.now());
    return () => this.#starts.delete(id);
  }

  oldest(): number {
    let oldest = Date.now();
    for (const start of this.#starts.values()) oldest = Math.min(oldest, start);
    return oldest;
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? 0 : sorted[Math.floor(sorted.length / 2)];
}

// ---------------------------------------------------------------------------
// Clients

interface World {
  base: string;
  live: LiveSet;
  recorder: Recorder;
  inFlight: InFlight;
  minPartSize: number;
  maxHeld: number;
  deadline: number;
  nextSeed: () => number;
}

/** Thrown by a client step for an answer that should not have come. */
class Unexpected extends Error {}

async function call(
  world: World,
  client: number,
  path: string,
  init: RequestInit & { expect: number[] },
): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set("x-soak-client", String(client));
  const res = await fetch(`${world.base}${path}`, {
    ...init,
    headers,
    signal: AbortSignal.timeout(60_000),
  });
  if (!init.expect.includes(res.status)) {
    const text = await res.text().catch(() => "");
    throw new Unexpected(
      `${init.method ?? "GET"} ${path.slice(0, 40)}…: expected ${
        init.expect.join(" or ")
      }, got ${res.status} ${text.slice(0, 200)}`,
    );
  }
  world.recorder.requests++;
  return res;
}

/** Times `step` as `kind`, counting its failure as an error of that kind. */
async function timed<T>(
  world: World,
  kind: string,
  step: () => Promise<T>,
): Promise<T | undefined> {
  const done = world.inFlight.start();
  const started = performance.now();
  try {
    const result = await step();
    world.recorder.record(kind, performance.now() - started);
    return result;
  } catch (err) {
    world.recorder.error(
      kind,
      err instanceof Error ? err.message : String(err),
    );
    return undefined;
  } finally {
    done();
  }
}

function blobSize(rand: () => number): number {
  const r = rand();
  if (r < 0.7) return KiB + Math.floor(rand() * 15 * KiB);
  if (r < 0.95) return 16 * KiB + Math.floor(rand() * 240 * KiB);
  return 256 * KiB + Math.floor(rand() * (2 * MiB - 256 * KiB));
}

async function putContent(
  world: World,
  client: number,
  kind: string,
  content: Content,
): Promise<boolean> {
  const bytes = contentOf(content.seed, content.size);
  const ok = await timed(world, kind, async () => {
    const res = await call(world, client, `/blobs/${content.hash}`, {
      method: "PUT",
      body: bytes,
      expect: [200, 201],
    });
    await res.body?.cancel();
    return true;
  });
  return ok === true;
}

async function readBack(
  world: World,
  client: number,
  blob: LiveBlob,
  rand: () => number,
): Promise<void> {
  const whole = rand() < 0.15 || blob.size === 0;
  const start = whole ? 0 : Math.floor(rand() * blob.size);
  const end = whole
    ? blob.size
    : Math.min(blob.size, start + 1 + Math.floor(rand() * 256 * KiB));
  await timed(world, whole ? "get-full" : "get-range", async () => {
    const res = await call(world, client, `/blobs/${blob.hash}`, {
      headers: whole ? {} : { range: `bytes=${start}-${end - 1}` },
      expect: [whole ? 200 : 206],
    });
    const got = new Uint8Array(await res.arrayBuffer());
    const expected = contentOf(blob.seed, blob.size).subarray(start, end);
    if (got.length !== expected.length || hashOf(got) !== hashOf(expected)) {
      throw new Error(
        `LOST or CORRUPTED: ${blob.hash} [${start}, ${end}) read back ${got.length} other bytes`,
      );
    }
  });
}

/** An upload in parts, then finished (or, one in five, abandoned). */
async function multipart(
  world: World,
  client: number,
  rand: () => number,
  held: string[],
): Promise<void> {
  const partCount = 2 + Math.floor(rand() * 2);
  const sizes = Array.from(
    { length: partCount },
    (_, i) =>
      i < partCount - 1
        ? world.minPartSize + Math.floor(rand() * world.minPartSize)
        : 1 + Math.floor(rand() * world.minPartSize),
  );
  const seed = world.nextSeed();
  const whole = contentOf(seed, sizes.reduce((a, b) => a + b, 0));
  const abandon = rand() < 0.2;
  await timed(
    world,
    abandon ? "multipart-abandoned" : "multipart",
    async () => {
      const created = await call(world, client, "/uploads", {
        method: "POST",
        expect: [201],
      });
      const { id } = await created.json();
      const partHashes: string[] = [];
      let offset = 0;
      for (const size of sizes) {
        const bytes = whole.slice(offset, offset + size);
        const hash = hashOf(bytes);
        const part = partHashes.length;
        const put = await timed(world, "part", async () => {
          const res = await call(
            world,
            client,
            `/uploads/${id}/parts/${part}?hash=${hash}&offset=${offset}`,
            { method: "PUT", body: bytes, expect: [200] },
          );
          await res.body?.cancel();
          return true;
        });
        if (!put) throw new Error(`upload ${id}: part ${part} failed`);
        partHashes.push(hash);
        offset += size;
      }
      if (abandon) {
        const res = await call(world, client, `/uploads/${id}`, {
          method: "DELETE",
          expect: [204],
        });
        await res.body?.cancel();
        return;
      }
      const finished = await timed(world, "finish", async () => {
        const res = await call(world, client, `/uploads/${id}/finish`, {
          method: "POST",
          body: JSON.stringify({ parts: partHashes.map((hash) => ({ hash })) }),
          headers: { "content-type": "application/json" },
          expect: [200],
        });
        return await res.json();
      });
      if (!finished) throw new Error(`upload ${id} not finished`);
      const hash = hashOf(whole);
      if (finished.hash !== hash) {
        throw new Error(`finish said ${finished.hash}, expected ${hash}`);
      }
      world.live.hold({ seed, size: whole.length, hash }, {
        uploadId: id,
        parts: partHashes,
      });
      held.push(hash);
    },
  );
}

async function runClient(
  world: World,
  client: number,
  seed: number,
): Promise<void> {
  const rand = random(seed);
  const held: string[] = []; // this client's holds, oldest first
  const { live } = world;
  while (Date.now() < world.deadline) {
    const r = rand();
    if (r < 0.35) {
      const size = blobSize(rand);
      const content = { seed: world.nextSeed(), size, hash: "" };
      content.hash = hashOf(contentOf(content.seed, size));
      if (await putContent(world, client, "put", content)) {
        live.hold(content);
        live.remember(content);
        held.push(content.hash);
      }
    } else if (r < 0.45 && live.pool.length > 0) {
      const content = live.pool[Math.floor(rand() * live.pool.length)];
      if (await putContent(world, client, "put-dup", content)) {
        live.hold(content);
        held.push(content.hash);
      }
    } else if (r < 0.85 && live.blobs.size > 0) {
      // A blob some client holds; held for the read so no GC may take it.
      const blobs = [...live.blobs.values()];
      const blob = live.hold(blobs[Math.floor(rand() * blobs.length)]);
      try {
        await readBack(world, client, blob, rand);
      } finally {
        live.drop(blob.hash);
      }
    } else if (r < 0.9) {
      await multipart(world, client, rand, held);
    } else if (held.length > 0) {
      live.drop(held.splice(Math.floor(rand() * held.length), 1)[0]);
    }
    while (held.length > world.maxHeld) live.drop(held.shift()!);
  }
}

// ---------------------------------------------------------------------------
// GC alongside

async function collect(
  seams: Seams,
  blobs: MultipartBlobs,
  live: LiveSet,
  before: Date,
): Promise<void> {
  // Multipart blobs nobody holds: their upload records go, and their parts
  // become garbage for this collection.
  const released = live.released;
  live.released = [];
  for (const blob of released) await blobs.release(blob.hash, blob.uploadId!);
  await seams.store.removeExpiredUploads(new Date());
  // The snapshot is taken in one synchronous step; the cut-off was chosen
  // before it, earlier than every operation still in flight.
  await seams.store.gc(live.refs(), before);
}

async function runCollector(
  seams: Seams,
  blobs: MultipartBlobs,
  world: World,
  intervalMs: number,
  stopped: () => boolean,
): Promise<number> {
  let runs = 0;
  while (!stopped()) {
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
    if (stopped()) break;
    const before = new Date(world.inFlight.oldest() - 1000);
    const started = performance.now();
    try {
      await collect(seams, blobs, world.live, before);
      world.recorder.record("gc", performance.now() - started);
      runs++;
    } catch (err) {
      world.recorder.error(
        "gc",
        err instanceof Error ? err.stack ?? err.message : String(err),
      );
    }
  }
  return runs;
}

// ---------------------------------------------------------------------------
// The end: read everything back, collect, and count what is left.

async function verifyLive(
  world: World,
  report: Pick<SoakReport, "verified" | "lost" | "corrupted" | "failures">,
): Promise<void> {
  const blobs = [...world.live.blobs.values()];
  const check = async (blob: LiveBlob) => {
    const res = await fetch(`${world.base}/blobs/${blob.hash}`);
    if (res.status !== 200) {
      await res.body?.cancel();
      report.lost++;
      report.failures.push(`lost: ${blob.hash} answered ${res.status}`);
      return;
    }
    const hash = createHash("sha384");
    let size = 0;
    for await (const chunk of res.body!) {
      hash.update(chunk);
      size += chunk.length;
    }
    if (size !== blob.size || hash.digest("hex") !== blob.hash) {
      report.corrupted++;
      report.failures.push(
        `corrupted: ${blob.hash} read back ${size} other bytes`,
      );
      return;
    }
    report.verified++;
  };
  for (let at = 0; at < blobs.length; at += 16) {
    await Promise.all(blobs.slice(at, at + 16).map(check));
  }
}

async function countLeaks(
  seams: Seams,
  live: LiveSet,
  report: Pick<
    SoakReport,
    "leaked" | "dangling" | "refs" | "objects" | "failures"
  >,
): Promise<void> {
  const needed = new Set<string>();
  for (const blob of live.blobs.values()) {
    if (blob.parts) blob.parts.forEach((hash) => needed.add(hash));
    else needed.add(blob.hash);
  }
  const names = new Set<string>();
  for await (const ref of seams.catalog.refsPutBefore(new Date(8.64e15))) {
    names.add(ref.name);
    if (!needed.has(ref.hash)) {
      report.leaked++;
      if (report.leaked <= 5) {
        report.failures.push(`leaked reference: ${ref.hash}`);
      }
    }
  }
  const objects = new Set<string>();
  for await (const { name } of seams.backend.list!()) objects.add(name);
  for (const name of objects) {
    if (!names.has(name)) {
      report.leaked++;
      if (report.leaked <= 5) report.failures.push(`leaked object: ${name}`);
    }
  }
  for (const name of names) {
    if (!objects.has(name)) {
      report.dangling++;
      report.failures.push(`reference to missing bytes: ${name}`);
    }
  }
  report.refs = names.size;
  report.objects = objects.size;
}

// ---------------------------------------------------------------------------
// The run

/**
 * Runs a soak and returns what it measured; `failures` is empty when it
 * passed.
 *
 * @example
 * ```ts ignore
 * const report = await runSoak({ clients: 8, durationMs: 10_000 });
 * console.log(formatReport(report));
 * ```
 */
export async function runSoak(options: SoakOptions = {}): Promise<SoakReport> {
  const clients = options.clients ?? 32;
  const durationMs = options.durationMs ?? 60_000;
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const log = options.log ?? (() => {});
  const data = await Deno.makeTempDir({ prefix: "blobstore-soak-" });
  const seams = await openSeams({
    data,
    env: options.env ?? (() => undefined),
  });
  const minPartSize = options.minPartSize ?? 256 * KiB;
  seams.store.minPartSize = minPartSize;
  const recorder = new Recorder();
  const handler = createHandler(seams.store, {
    authorize: false,
    maxConcurrentUploads: 2, // each client sends one at a time: never a 429
    clientKey: (req) => req.headers.get("x-soak-client") ?? "unknown",
    onError: (err) =>
      recorder.error(
        "server",
        err instanceof Error ? err.stack ?? err.message : String(err),
      ),
  });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    handler,
  );
  let seedCounter = seed * 1000;
  const world: World = {
    base: `http://127.0.0.1:${server.addr.port}`,
    live: new LiveSet(),
    recorder,
    inFlight: new InFlight(),
    minPartSize,
    maxHeld: options.maxHeldPerClient ?? 40,
    deadline: Date.now() + durationMs,
    nextSeed: () => ++seedCounter,
  };
  log(
    `soak: ${clients} clients for ${
      durationMs / 1000
    } s, seed ${seed}, on ${seams.description.catalog} + ${seams.description.backend}`,
  );

  const rss: number[] = [];
  const sampler = setInterval(() => rss.push(Deno.memoryUsage().rss), 250);
  const progress = setInterval(() => {
    const memory = Deno.memoryUsage();
    log(
      `  ${recorder.requests} requests, ${world.live.blobs.size} live blobs, rss ${
        (memory.rss / MiB).toFixed(0)
      } MiB (heap ${(memory.heapUsed / MiB).toFixed(0)} MiB, external ${
        (memory.external / MiB).toFixed(0)
      } MiB)`,
    );
  }, 10_000);
  let stopped = false;
  const blobs = new MultipartBlobs(seams.store);
  const collector = runCollector(
    seams,
    blobs,
    world,
    options.gcIntervalMs ?? 2000,
    () => stopped,
  );
  const started = performance.now();
  try {
    await Promise.all(
      Array.from(
        { length: clients },
        (_, i) => runClient(world, i, seed + i + 1),
      ),
    );
    const seconds = (performance.now() - started) / 1000;
    stopped = true;
    const gcRuns = await collector;
    clearInterval(sampler);
    clearInterval(progress);

    const stats = recorder.stats();
    const acknowledged = ["put", "put-dup", "multipart"]
      .reduce((sum, kind) => sum + (stats[kind]?.count ?? 0), 0);
    const report: SoakReport = {
      seed,
      clients,
      seconds: round(seconds),
      opsPerSecond: round(recorder.requests / seconds),
      latency: stats,
      acknowledged,
      verified: 0,
      lost: 0,
      corrupted: 0,
      leaked: 0,
      dangling: 0,
      refs: 0,
      objects: 0,
      gcRuns,
      finalGc: { removed: 0, seconds: 0 },
      rss: rssFigures(rss),
      failures: [...recorder.failures],
    };
    log(`soak: verifying ${world.live.blobs.size} live blobs`);
    await verifyLive(world, report);
    const refsBefore = await countRefs(seams);
    const gcStarted = performance.now();
    await collect(seams, blobs, world.live, new Date());
    report.finalGc = {
      removed: refsBefore - await countRefs(seams),
      seconds: round((performance.now() - gcStarted) / 1000),
    };
    await countLeaks(seams, world.live, report);
    const { first, last } = report.rss;
    if (last > first * 1.5 + 64 * MiB) {
      report.failures.push(
        `memory grew: RSS median ${
          (first / MiB).toFixed(0)
        } MiB in the first third, ${
          (last / MiB).toFixed(0)
        } MiB in the last (allowed: x1.5 + 64 MiB)`,
      );
    }
    return report;
  } finally {
    stopped = true;
    clearInterval(sampler);
    clearInterval(progress);
    await server.shutdown();
    // A MongoDB database or a Swift bucket outlives the run: empty it.
    if (options.env) await removeEverything(seams).catch(() => {});
    await seams.close();
    await Deno.remove(data, { recursive: true }).catch(() => {});
  }
}

async function removeEverything(seams: Seams): Promise<void> {
  for await (const { name } of seams.backend.list!()) {
    await seams.backend.remove(name);
  }
}

async function countRefs(seams: Seams): Promise<number> {
  let count = 0;
  for await (const _ of seams.catalog.refsPutBefore(new Date(8.64e15))) count++;
  return count;
}

function rssFigures(samples: number[]): SoakReport["rss"] {
  const third = Math.max(1, Math.floor(samples.length / 3));
  return {
    first: median(samples.slice(0, third)),
    last: median(samples.slice(-third)),
    peak: Math.max(0, ...samples),
    samples: samples.length,
  };
}

/**
 * The report as a few lines for people: the totals, then a table of
 * latencies by kind.
 *
 * @example
 * ```ts ignore
 * console.log(formatReport(await runSoak()));
 * ```
 */
export function formatReport(report: SoakReport): string {
  const mib = (bytes: number) => `${(bytes / MiB).toFixed(0)} MiB`;
  const lines = [
    `seed ${report.seed}: ${report.clients} clients, ${report.seconds} s, ${report.opsPerSecond} requests/s, ${report.gcRuns} GC runs`,
    `acknowledged ${report.acknowledged}; live at the end ${report.verified} verified, ${report.lost} lost, ${report.corrupted} corrupted; ${report.leaked} leaked, ${report.dangling} dangling (${report.refs} references, ${report.objects} objects)`,
    `final GC (clients stopped): ${report.finalGc.removed} references removed in ${report.finalGc.seconds} s`,
    `RSS median first third ${mib(report.rss.first)}, last third ${
      mib(report.rss.last)
    }, peak ${mib(report.rss.peak)} (${report.rss.samples} samples)`,
    "",
    "kind                     count  errors   ops/s   p50 ms   p90 ms   p99 ms   max ms",
  ];
  for (const [kind, s] of Object.entries(report.latency)) {
    lines.push(
      [
        kind.padEnd(22),
        String(s.count).padStart(7),
        String(s.errors).padStart(7),
        (s.count / report.seconds).toFixed(1).padStart(7),
        ...[s.p50, s.p90, s.p99, s.max].map((v) => v.toFixed(1).padStart(8)),
      ].join(" "),
    );
  }
  if (report.failures.length > 0) {
    lines.push("", "FAILURES:", ...report.failures.map((f) => `  ${f}`));
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------
// Command line

/** Parses `60`, `60s`, `2m`, `500ms` into milliseconds. */
function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!match) {
    throw new Error(
      `invalid duration ${JSON.stringify(text)} (expected like 60s, 2m, 500ms)`,
    );
  }
  const unit = { ms: 1, s: 1000, m: 60_000 }[match[2] ?? "s"]!;
  return Number(match[1]) * unit;
}

/** Parses `262144`, `256K`, `1M` into bytes. */
function parseSize(text: string): number {
  const match = /^(\d+)([KM]?)$/i.exec(text.trim());
  if (!match) {
    throw new Error(
      `invalid size ${JSON.stringify(text)} (expected like 256K, 1M)`,
    );
  }
  return Number(match[1]) *
    { "": 1, k: KiB, m: MiB }[match[2].toLowerCase() as "" | "k" | "m"];
}

/**
 * The seams' environment for `--mongodb` and `--swift`: a fresh database
 * and a fresh bucket, so a run starts empty.
 */
function seamEnv(
  mongodb: string | undefined,
  swift: boolean,
): { get(name: string): string | undefined; mongoUrl?: string } {
  const run = crypto.randomUUID().slice(0, 8);
  const overrides: Record<string, string> = {};
  if (mongodb) {
    const url = new URL(mongodb);
    url.pathname = `/blobstore_soak_${run}`;
    overrides.MONGODB_URL = url.href;
  }
  if (swift) overrides.SWIFT_BUCKET = `blobstore-soak-${run}`;
  return {
    mongoUrl: overrides.MONGODB_URL,
    get: (name) =>
      overrides[name] ??
        (swift && name.startsWith("SWIFT_") ? Deno.env.get(name) : undefined),
  };
}

/** Drops the run's MongoDB database (the driver loads only for `--mongodb`). */
async function dropDatabase(url: string): Promise<void> {
  const { MongoClient } = await import("mongodb");
  const client = await MongoClient.connect(url);
  try {
    await client.db().dropDatabase();
  } finally {
    await client.close();
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      clients: { type: "string", default: "32" },
      duration: { type: "string", default: "60s" },
      seed: { type: "string" },
      "gc-interval": { type: "string", default: "2s" },
      "min-part-size": { type: "string", default: "256K" },
      mongodb: { type: "string" },
      swift: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
  });
  const env = values.mongodb || values.swift
    ? seamEnv(values.mongodb, values.swift)
    : undefined;
  const report = await runSoak({
    clients: Number(values.clients),
    durationMs: parseDuration(values.duration),
    seed: values.seed === undefined ? undefined : Number(values.seed),
    gcIntervalMs: parseDuration(values["gc-interval"]),
    minPartSize: parseSize(values["min-part-size"]),
    env: env?.get,
    log: (line) => console.error(line),
  });
  console.log(
    values.json ? JSON.stringify(report, null, 2) : formatReport(report),
  );
  if (env?.mongoUrl) await dropDatabase(env.mongoUrl);
  return report.failures.length === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
