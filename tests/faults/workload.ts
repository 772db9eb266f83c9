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
import { seededRandom } from "../rng.ts";
import type { OwnedProcess } from "./servers.ts";

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
  /**
   * What the backend holds after the final sweep that no reference names
   * (`named`: the object names the references hold), read from the
   * storage itself, not through the backend's listing: bytes the listing
   * does not show, or everything unreferenced when the rig lists the
   * storage directly. Must be none.
   */
  leftovers(named: ReadonlySet<string>): Promise<Leftovers>;
  /** For a backend that writes larger blobs in pieces. */
  pieces?: Pieces;
  /**
   * How long to wait before the final zero-grace sweep (a listing that
   * rounds times up, as s3api rounds an upload's start up to the next
   * second, shows what was just written as not yet old enough).
   */
  sweepDelayMs?: number;
}

/** What {@linkcode Rig.leftovers} found. */
export interface Leftovers {
  /** Everything no reference names, described: leaks. */
  leaked: string[];
  /** What the rig counted in the storage, for the report. */
  counts?: Record<string, number>;
}

/**
 * How a backend writes larger blobs as several pieces: Swift's Static
 * Large Objects (segments, then a manifest), S3's multipart uploads (parts,
 * then a completion). Puts and upload parts above the piece size are
 * counted apart, and so are the sets of pieces a killed put left
 * unfinished.
 */
export interface Pieces {
  /** The piece size: blobs above it are written in pieces. */
  size: number;
  /** What the rig writes, for the report ("Static Large Objects"). */
  label: string;
  /** What a piece is called ("segments", "parts"). */
  piece: string;
  /** What an unfinished set is called ("segment sets without a manifest"). */
  unfinishedLabel: string;
  /**
   * The unfinished sets (a put killed between its pieces and their
   * completion), read from the storage itself.
   */
  unfinished(): Promise<string[]>;
}

/** A blob whose put was acknowledged. */
interface AckedPut {
  hash: string;
  size: number;
  seed: number;
  /** How many pieces the backend wrote it as (0: one plain object). */
  pieces: number;
}

/** What the workload did with a backend writing pieces, and what the sweep found. */
export interface PiecesReport {
  /** The rig's {@linkcode Pieces}, without the listing. */
  size: number;
  label: string;
  piece: string;
  unfinishedLabel: string;
  /** Puts above the piece size: started, acknowledged, read back intact after GC. */
  puts: number;
  ackedPuts: number;
  intactPuts: number;
  /** The most pieces of an acknowledged put. */
  maxPieces: number;
  /** Upload parts above the piece size: started, and stored. */
  parts: number;
  storedParts: number;
  /** Unfinished sets after the final GC, before the sweep. */
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
  /** With a backend writing pieces only. */
  pieces?: PiecesReport;
  /** What the rig counted in the storage after the sweep. */
  counts?: Record<string, number>;
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
    pieces: rig.pieces && {
      size: rig.pieces.size,
      label: rig.pieces.label,
      piece: rig.pieces.piece,
      unfinishedLabel: rig.pieces.unfinishedLabel,
      puts: 0,
      ackedPuts: 0,
      intactPuts: 0,
      maxPieces: 0,
      parts: 0,
      storedParts: 0,
      unfinishedSets: 0,
      sweptSets: 0,
    },
    ms: 0,
  };
  const { pieces } = report;
  /** How many pieces a blob of `size` bytes is written as (0: none). */
  const piecesOf = (size: number) =>
    pieces && size > pieces.size ? Math.ceil(size / pieces.size) : 0;
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
    const count = piecesOf(size);
    if (pieces && count) pieces.puts++;
    live.add(hash);
    const ok = await op("put", `put ${size} bytes`, async () => {
      await store.put(chunkedStream(bytes, 64 * 1024), hash, size);
      return true;
    });
    if (ok) {
      puts.push({ hash, size, seed, pieces: count });
      if (pieces && count) {
        pieces.ackedPuts++;
        pieces.maxPieces = Math.max(pieces.maxPieces, count);
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
      const inPieces = piecesOf(size) > 0;
      if (pieces && inPieces) pieces.parts++;
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
      if (pieces && inPieces) pieces.storedParts++;
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
        const down = Date.now();
        await server.kill();
        await sleep(200 + random() * 1500);
        await server.start();
        log(
          `fault ${i + 1}: killed and restarted ${server.name} (down ${
            Date.now() - down
          } ms)`,
        );
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
    `${rig.name}: workload done in ${
      ((Date.now() - started) / 1000).toFixed(1)
    } s, ${puts.length} puts and ${uploads.length} uploads acknowledged; auditing`,
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
  for (const { hash, size, pieces } of puts) {
    const got = await openHash(store, hash);
    if (got === hash) intact.add(hash);
    else {
      lost.push(
        `put ${hash.slice(0, 12)} (${size} B, ${pieces} pieces): ${got}`,
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
  // put has returned (a hung one fails the run), so a set of pieces not
  // completed now is debris, never a put still writing.
  const unfinished = await rig.pieces?.unfinished() ?? [];
  // Debris no listing shows (a GridFS put's chunks without a files document)
  // first, then the objects no reference names.
  await store.backend.sweep?.(0);
  if (rig.sweepDelayMs) {
    await new Promise((r) => setTimeout(r, rig.sweepDelayMs));
  }
  report.sweptOrphans = (await store.sweepOrphans({ olderThan: 0 })).removed;
  if (report.pieces) {
    const still = new Set(await rig.pieces?.unfinished() ?? []);
    report.pieces.unfinishedSets = unfinished.length;
    report.pieces.sweptSets = unfinished.filter((n) => !still.has(n)).length;
  }
  const named = new Set(
    (await collect(store.catalog.refsPutBefore(new Date(8.64e15)))).map((r) =>
      r.name
    ),
  );
  for (const object of await collect(store.backend.list!())) {
    if (!named.has(object.name)) report.leaked.push(object.name);
  }
  const leftovers = await rig.leftovers(named);
  report.leaked.push(...leftovers.leaked);
  report.counts = leftovers.counts;
  // and GC took nothing acknowledged
  const intact = new Set<string>();
  report.lost.push(
    ...(await lostBlobs(store, puts, uploads, intact)).map((l) =>
      `after gc: ${l}`
    ),
  );
  if (report.pieces) {
    report.pieces.intactPuts = puts.filter((p) =>
      p.pieces > 0 && intact.has(p.hash)
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
    ...(r.pieces ? [piecesLine(r.pieces)] : []),
    ...(r.counts
      ? [
        `  in the storage after the sweep: ${
          Object.entries(r.counts).map(([k, v]) => `${k} ${v}`).join(", ")
        }`,
      ]
      : []),
    `  lost ${r.lost.length}, dangling refs ${r.danglingRefs.length}, leaked ${r.leaked.length}, untyped errors ${r.untyped.length} (+ ${r.rawSocketErrors.length} raw driver socket errors), hung ${r.hung.length}`,
  ].join("\n");
}

/** A size in KiB or MiB, for the report. */
export function sizeText(bytes: number): string {
  return bytes % (1024 * 1024) === 0
    ? `${bytes / (1024 * 1024)} MiB`
    : `${Math.round(bytes / 1024)} KiB`;
}

function piecesLine(p: PiecesReport): string {
  const size = sizeText(p.size);
  return `  ${p.label} (${p.piece} of ${size}): puts ${p.puts} started, ${p.ackedPuts} acknowledged, ${p.intactPuts} read back intact after gc (up to ${p.maxPieces} ${p.piece}); upload parts above ${size} ${p.parts} started, ${p.storedParts} stored; ${p.unfinishedLabel} before the sweep ${p.unfinishedSets}, swept ${p.sweptSets}`;
}
