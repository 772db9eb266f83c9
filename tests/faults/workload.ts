/**
 * The fault suite's workload and its audit: concurrent workers put blobs,
 * upload multipart blobs and run GC against a store while servers are
 * killed and restarted under them; afterwards the audit checks that every
 * acknowledged blob opens with its exact bytes, that every failure was a
 * typed error, that no reference points at missing bytes, and that after
 * `gc` plus `sweepOrphans` no unreferenced bytes remain.
 *
 * @module
 */

import { MongoError } from "mongodb";
import { BlobStoreError } from "../../src/errors.ts";
import type { MultipartIndex } from "../../src/multipart.ts";
import { Refs } from "../../src/refs.ts";
import type { Store } from "../../src/store.ts";
import { bytesOf, chunkedStream, collect, hashOf } from "../helpers.ts";
import type { OwnedProcess } from "./servers.ts";

/** A seeded pseudo-random generator (mulberry32), for reproducible runs. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Whether `err` is an error a caller can act on: a `BlobStoreError`
 * (including `SwiftError` and `TimeoutError`), a MongoDB driver error
 * (`MongoError`: network, server selection, server errors), or an error
 * that keeps one of those as its `cause`.
 */
export function isTypedError(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 8; depth++) {
    if (e instanceof BlobStoreError || e instanceof MongoError) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/** What a test under faults runs against. */
export interface Rig {
  /** For messages. */
  name: string;
  store: Store;
  /** The servers the injector kills and restarts. */
  servers: OwnedProcess[];
  /** Bytes a backend holds that its listing does not show (must be none). */
  leftovers(): Promise<string[]>;
  /**
   * The backend's segment size, for a backend that writes larger blobs as
   * several objects (Swift's Static Large Objects): puts above it are
   * counted apart.
   */
  segmentSize?: number;
  /**
   * The blobs whose segments lie without a manifest (a put killed between
   * its segments and its manifest), read from the storage itself.
   */
  unfinishedSegmentSets?(): Promise<string[]>;
}

/** A blob whose put was acknowledged. */
interface AckedPut {
  hash: string;
  size: number;
  seed: number;
  /** How many segments the backend wrote it as (0: one plain object). */
  segments: number;
}

/** What the workload did with a segmenting backend, and what the sweep found. */
export interface SegmentedReport {
  segmentSize: number;
  /** Puts above the segment size: started, acknowledged, read back intact after GC. */
  puts: number;
  ackedPuts: number;
  intactPuts: number;
  /** The most segments of an acknowledged put. */
  maxSegments: number;
  /** Parts above the segment size: started, and stored. */
  parts: number;
  storedParts: number;
  /** Blobs with segments but no manifest after the final GC, before the sweep. */
  unfinishedSets: number;
  /** How many of those the sweep removed. */
  sweptSets: number;
}

/** A multipart blob whose finish was acknowledged. */
interface AckedUpload {
  id: string;
  hash: string;
  index: MultipartIndex;
}

/** The operations the workload runs, for counts and for in-flight snapshots. */
export type OpKind = "put" | "newUpload" | "putPart" | "finish" | "gc";

/** What a workload did and what the audit found. */
export interface FaultReport {
  rig: string;
  faults: number;
  /** For each fault, which operations were in flight when it struck (summed). */
  inFlightAtFault: Record<OpKind, number>;
  succeeded: Record<OpKind, number>;
  failed: Record<OpKind, number>;
  untyped: string[];
  /**
   * Node socket errors (EPIPE, ECONNRESET) that escaped the MongoDB driver
   * unwrapped under Deno: untyped, but the driver's, counted apart.
   */
  rawSocketErrors: string[];
  hung: string[];
  ackedPuts: number;
  ackedUploads: number;
  lost: string[];
  danglingRefs: string[];
  leaked: string[];
  sweptOrphans: number;
  /** With a segmenting backend only. */
  segmented?: SegmentedReport;
  ms: number;
}

function counts(): Record<OpKind, number> {
  return { put: 0, newUpload: 0, putPart: 0, finish: 0, gc: 0 };
}

/** Workload shape. */
export interface WorkloadOptions {
  /** How many faults to inject (each: kill, wait, restart). */
  faults: number;
  /** Concurrent workers (default 4). */
  workers?: number;
  /** Seed of the random choices. */
  seed: number;
  /** The store's minPartSize (parts are 1 to 2 times it). */
  minPartSize: number;
  /** Largest single put in bytes. */
  maxPutSize: number;
  /** An operation taking longer than this counts as hung (default 90 s). */
  hangMs?: number;
  /** Freeze (SIGSTOP) some servers instead of killing them: a hung, not a dead, server. */
  freeze?: boolean;
  /** Progress lines. */
  log?: (line: string) => void;
}

/**
 * Runs the workload on `rig` while injecting `faults` faults, then audits
 * the store. Throws nothing itself: the report says what went wrong.
 */
export async function runUnderFaults(
  rig: Rig,
  options: WorkloadOptions,
): Promise<FaultReport> {
  const started = Date.now();
  const random = seededRandom(options.seed);
  const log = options.log ?? (() => {});
  const report: FaultReport = {
    rig: rig.name,
    faults: 0,
    inFlightAtFault: counts(),
    succeeded: counts(),
    failed: counts(),
    untyped: [],
    rawSocketErrors: [],
    hung: [],
    ackedPuts: 0,
    ackedUploads: 0,
    lost: [],
    danglingRefs: [],
    leaked: [],
    sweptOrphans: 0,
    segmented: rig.segmentSize === undefined ? undefined : {
      segmentSize: rig.segmentSize,
      puts: 0,
      ackedPuts: 0,
      intactPuts: 0,
      maxSegments: 0,
      parts: 0,
      storedParts: 0,
      unfinishedSets: 0,
      sweptSets: 0,
    },
    ms: 0,
  };
  const { segmented } = report;
  /** How many segments a blob of `size` bytes is written as (0: none). */
  const segmentsOf = (size: number) =>
    segmented && size > segmented.segmentSize
      ? Math.ceil(size / segmented.segmentSize)
      : 0;
  const inFlight = counts();
  const live = new Set<string>();
  const puts: AckedPut[] = [];
  const uploads: AckedUpload[] = [];
  let nextSeed = Math.floor(random() * 1e9);
  let stopping = false;
  const { store } = rig;
  const hangMs = options.hangMs ?? 90_000;

  /** Runs one operation, counting it and classifying its failure. */
  async function op<T>(
    kind: OpKind,
    what: string,
    fn: () => Promise<T>,
  ): Promise<T | undefined> {
    inFlight[kind]++;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const hang = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new HangError(`${what} took over ${hangMs} ms`)),
          hangMs,
        );
      });
      const result = await Promise.race([fn(), hang]);
      report.succeeded[kind]++;
      return result;
    } catch (err) {
      report.failed[kind]++;
      if (err instanceof HangError) report.hung.push(err.message);
      else if (isRawSocketError(err)) {
        report.rawSocketErrors.push(`${what}: ${describe(err)}`);
      } else if (!isTypedError(err)) {
        report.untyped.push(`${what}: ${describe(err)}`);
      }
      return undefined;
    } finally {
      clearTimeout(timer);
      inFlight[kind]--;
    }
  }

  async function put() {
    const seed = nextSeed++;
    const size = 1 + Math.floor(random() * options.maxPutSize);
    const bytes = bytesOf(size, seed);
    const hash = hashOf(bytes);
    const segments = segmentsOf(size);
    if (segmented && segments) segmented.puts++;
    live.add(hash);
    const ok = await op("put", `put ${size} bytes`, async () => {
      await store.put(chunkedStream(bytes, 64 * 1024), hash, size);
      return true;
    });
    if (ok) {
      puts.push({ hash, size, seed, segments });
      if (segmented && segments) {
        segmented.ackedPuts++;
        segmented.maxSegments = Math.max(segmented.maxSegments, segments);
      }
    } else live.delete(hash);
  }

  async function multipart() {
    const id = await op(
      "newUpload",
      "newUpload",
      () => store.newUpload(new Date(Date.now() + 24 * 3600_000)),
    );
    if (id === undefined) return;
    const count = 2 + Math.floor(random() * 2);
    const parts: { hash: string }[] = [];
    let offset = 0;
    for (let i = 0; i < count; i++) {
      const size = options.minPartSize +
        Math.floor(random() * options.minPartSize);
      const bytes = bytesOf(size, nextSeed++);
      const hash = hashOf(bytes);
      const segments = segmentsOf(size);
      if (segmented && segments) segmented.parts++;
      const ok = await op(
        "putPart",
        `putPart ${i} (${size} bytes)`,
        () =>
          store.putPart(
            id,
            i,
            chunkedStream(bytes, 64 * 1024),
            size,
            offset,
            hash,
          ).then(() => true),
      );
      if (!ok) return;
      if (segmented && segments) segmented.storedParts++;
      parts.push({ hash });
      offset += size;
    }
    const finished = await op(
      "finish",
      `finishUpload (${count} parts)`,
      () => store.finishUpload(id, parts),
    );
    if (finished) uploads.push({ id, ...finished });
  }

  async function gc() {
    // `before` first: a put that starts after the live set is read has a
    // later put time, so the collection cannot take it.
    const before = new Date(Date.now() - 5);
    const refs = new Refs();
    for (const hash of live) refs.add(hash);
    await op("gc", "gc", () => store.gc(refs, before));
  }

  async function worker() {
    while (!stopping) {
      const r = random();
      if (r < 0.6) await put();
      else if (r < 0.9) await multipart();
      else await gc();
    }
  }

  async function injector() {
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    for (let i = 0; i < options.faults; i++) {
      await sleep(300 + random() * 900);
      const server = rig.servers[i % rig.servers.length];
      for (const kind of Object.keys(inFlight) as OpKind[]) {
        report.inFlightAtFault[kind] += inFlight[kind];
      }
      const freeze = options.freeze && i % 3 === 2;
      if (freeze) {
        server.freeze();
        await sleep(1500 + random() * 1500);
        server.thaw();
        log(`fault ${i + 1}: froze and thawed ${server.name}`);
      } else {
        await server.kill();
        await sleep(200 + random() * 1500);
        await server.start();
        log(`fault ${i + 1}: killed and restarted ${server.name}`);
      }
      server.faults++;
      report.faults++;
    }
    // let the workload run against healthy servers for a moment
    await sleep(500);
    stopping = true;
  }

  const workers = Array.from({ length: options.workers ?? 4 }, worker);
  await Promise.all([injector(), ...workers]);
  report.ackedPuts = puts.length;
  report.ackedUploads = uploads.length;
  log(
    `${rig.name}: workload done, ${puts.length} puts and ${uploads.length} uploads acknowledged; auditing`,
  );
  await audit(rig, puts, uploads, report);
  report.ms = Date.now() - started;
  return report;
}

class HangError extends Error {}

/** A Node system error of a socket (as `node:net` under Deno raises them). */
function isRawSocketError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return !isTypedError(err) && typeof code === "string" &&
    ["EPIPE", "ECONNRESET", "ECONNREFUSED", "ETIMEDOUT"].includes(code);
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  return `${err.constructor.name}${code ? ` (${code})` : ""}: ${err.message}`;
}

async function openHash(
  store: Store,
  hash: string,
  index?: MultipartIndex,
): Promise<string | undefined> {
  try {
    const { body } = await store.open(hash, index ? { index } : {});
    return hashOf(new Uint8Array(await new Response(body).arrayBuffer()));
  } catch (err) {
    return `error ${describe(err)}`;
  }
}

/**
 * Checks every acknowledged blob opens with its exact bytes; returns the
 * lost ones, and adds the intact puts' hashes to `intact`.
 */
async function lostBlobs(
  store: Store,
  puts: AckedPut[],
  uploads: AckedUpload[],
  intact = new Set<string>(),
): Promise<string[]> {
  const lost: string[] = [];
  for (const { hash, size, segments } of puts) {
    const got = await openHash(store, hash);
    if (got === hash) intact.add(hash);
    else {
      lost.push(
        `put ${hash.slice(0, 12)} (${size} B, ${segments} segments): ${got}`,
      );
    }
  }
  for (const { id, hash, index } of uploads) {
    const got = await openHash(store, hash, index);
    if (got !== hash) lost.push(`upload ${id}: ${got}`);
  }
  return lost;
}

async function audit(
  rig: Rig,
  puts: AckedPut[],
  uploads: AckedUpload[],
  report: FaultReport,
): Promise<void> {
  const { store } = rig;
  report.lost = await lostBlobs(store, puts, uploads);
  // No reference may point at missing or different bytes.
  const refs = await collect(
    store.catalog.refsPutBefore(new Date(8.64e15)),
  );
  for (const ref of refs) {
    try {
      const { body } = await store.backend.get(ref.name);
      const got = hashOf(
        new Uint8Array(await new Response(body).arrayBuffer()),
      );
      if (got !== ref.hash) {
        report.danglingRefs.push(`${ref.hash}: bytes differ`);
      }
    } catch (err) {
      report.danglingRefs.push(`${ref.hash} → ${ref.name}: ${describe(err)}`);
    }
  }
  // Collect what nobody acknowledged, then sweep the orphans: every object
  // left must be named by a reference, and nothing hidden may remain.
  const keep = new Refs();
  for (const { hash } of puts) keep.add(hash);
  await store.gc(keep, new Date());
  // Grace period 0, and honestly so: every worker has stopped and every
  // put has returned (a hung one fails the run), so a set of segments
  // without a manifest now is debris, never a put still writing.
  const unfinished = await rig.unfinishedSegmentSets?.() ?? [];
  // Debris no listing shows (a GridFS put's chunks without a files document)
  // first, then the objects no reference names.
  await store.backend.sweep?.(0);
  report.sweptOrphans = (await store.sweepOrphans({ olderThan: 0 })).removed;
  if (report.segmented) {
    const still = new Set(await rig.unfinishedSegmentSets?.() ?? []);
    report.segmented.unfinishedSets = unfinished.length;
    report.segmented.sweptSets = unfinished.filter((n) => !still.has(n))
      .length;
  }
  const named = new Set(
    (await collect(store.catalog.refsPutBefore(new Date(8.64e15)))).map((r) =>
      r.name
    ),
  );
  for (const object of await collect(store.backend.list!())) {
    if (!named.has(object.name)) report.leaked.push(object.name);
  }
  report.leaked.push(...await rig.leftovers());
  // and GC took nothing acknowledged
  const intact = new Set<string>();
  report.lost.push(
    ...(await lostBlobs(store, puts, uploads, intact)).map((l) =>
      `after gc: ${l}`
    ),
  );
  if (report.segmented) {
    report.segmented.intactPuts = puts.filter((p) =>
      p.segments > 0 && intact.has(p.hash)
    ).length;
  }
}

/** The one-line summary of a report. */
export function summarize(r: FaultReport): string {
  const sum = (c: Record<OpKind, number>) =>
    Object.entries(c).map(([k, v]) => `${k} ${v}`).join(", ");
  return [
    `${r.rig}: ${r.faults} faults in ${(r.ms / 1000).toFixed(1)} s`,
    `  in flight when struck: ${sum(r.inFlightAtFault)}`,
    `  succeeded: ${sum(r.succeeded)}`,
    `  failed (typed): ${sum(r.failed)}`,
    `  acknowledged: ${r.ackedPuts} puts, ${r.ackedUploads} multipart blobs; orphans swept: ${r.sweptOrphans}`,
    ...(r.segmented ? [segmentedLine(r.segmented)] : []),
    `  lost ${r.lost.length}, dangling refs ${r.danglingRefs.length}, leaked ${r.leaked.length}, untyped errors ${r.untyped.length} (+ ${r.rawSocketErrors.length} raw driver socket errors), hung ${r.hung.length}`,
  ].join("\n");
}

function segmentedLine(s: SegmentedReport): string {
  return `  segmented (segments of ${
    s.segmentSize / 1024
  } KiB): puts ${s.puts} started, ${s.ackedPuts} acknowledged, ${s.intactPuts} read back intact after gc (up to ${s.maxSegments} segments); parts ${s.parts} started, ${s.storedParts} stored; segment sets without manifest before the sweep ${s.unfinishedSets}, swept ${s.sweptSets}`;
}
