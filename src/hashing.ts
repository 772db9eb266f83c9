/**
 * Where SHA-384 runs: inline on the thread that moves the bytes, or on a
 * worker thread fed with copies of the chunks, so that hashing a large
 * blob overlaps its I/O instead of taking turns with it.
 *
 * Workers are Web Workers where the runtime has them (Deno, Bun), else
 * `node:worker_threads` (Node). Idle ones go after a moment, so they never
 * keep a process alive. Chunks travel in batches of
 * {@linkcode BATCH_SIZE}: Deno's per-message cost makes small messages
 * slower than hashing inline. Where a worker cannot start (no worker threads, as on Deno
 * Deploy; a runtime that cannot load the worker's module), hashing stays
 * inline: the result is the same, only slower for large blobs.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { FromWorker, ToWorker } from "./hash_worker.ts";
import { ResumableSha384 } from "./resumable_sha384.ts";

/**
 * Where a store hashes what it verifies: `"inline"` on the thread that
 * moves the bytes, `"worker"` on a worker thread whatever the size, and
 * `"auto"` (the default) on a worker for bodies of at least
 * {@linkcode WORKER_MIN_SIZE} bytes. Without worker threads, all three hash
 * inline.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { type Hashing, MemoryBackend, MemoryCatalog, Store } from "@blobstore/blobstore";
 *
 * const hashing: Hashing = "inline";
 * const store = new Store({ catalog: new MemoryCatalog(), backend: new MemoryBackend(), hashing });
 * assert(store.hashing === "inline");
 * ```
 */
export type Hashing = "auto" | "inline" | "worker";

/**
 * The least declared size that `"auto"` hashes on a worker. Below it, the
 * cost of copying chunks to another thread and waiting for its answer is
 * more than the overlap gains: in the bench's crossover rows (puts to the
 * file system, 2 cores), a worker was 0.89 and 0.86 of inline at 256 KiB
 * and 1 MiB, 1.08 at 4 MiB and 1.02 at 16 MiB.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { WORKER_MIN_SIZE } from "@blobstore/blobstore";
 *
 * assert(WORKER_MIN_SIZE >= 64 * 1024);
 * ```
 */
export const WORKER_MIN_SIZE = 4 * 1024 * 1024;

/**
 * The most bytes sent to a worker and not yet hashed there: beyond it, the
 * sender waits, so a worker slower than the I/O holds memory to this.
 */
const MAX_IN_FLIGHT = 8 * 1024 * 1024;

/** The size of the copies sent to a worker (one message each). */
const BATCH_SIZE = 1024 * 1024;

/** How long an idle worker lives, in case another job comes. */
const IDLE_MS = 200;

/** How many worker threads hash at most: one per core, up to two. */
const MAX_WORKERS = 2;

/**
 * Batches the workers have sent back, ready to be filled again: enough for
 * every worker's in-flight bytes, so that steady hashing allocates nothing.
 */
const spare: Uint8Array[] = [];
const MAX_SPARE = MAX_WORKERS * (8 + 2);

/** How long a new worker may take to load before hashing stays inline. */
const READY_TIMEOUT_MS = 30_000;

/** One SHA-384 computation over the chunks given to it, in order. */
export interface Sha384Job {
  /** Where it runs. */
  readonly where: "inline" | "worker";
  /** Hashes `chunk`; a promise means: wait before sending more. */
  update(chunk: Uint8Array): void | Promise<void>;
  /**
   * For a resumable job: the state after the chunks given so far, while
   * the job goes on (a running hash saved at each part's end).
   */
  save(): Promise<Uint8Array>;
  /** The hex digest, and for a resumable job the state after the last chunk. */
  finish(): Promise<{ digest: string; state?: Uint8Array }>;
  /** Drops the job. */
  abort(): void;
}

/** What {@linkcode startSha384} starts. */
export interface Sha384JobOptions {
  /** Where to hash (default `"auto"`). */
  hashing?: Hashing;
  /** The number of bytes to come, if known (`"auto"` decides on it). */
  size?: number;
  /**
   * For a resumable hash: the state to resume, or `null` for a fresh one.
   * Absent: a plain SHA-384, whose state cannot be saved (and is faster).
   */
  resume?: Uint8Array | null;
}

/** Starts a SHA-384 job where `options.hashing` says. */
export async function startSha384(
  options: Sha384JobOptions = {},
): Promise<Sha384Job> {
  const { hashing = "auto", size, resume } = options;
  const onWorker = hashing === "worker" ||
    (hashing === "auto" && (size === undefined || size >= WORKER_MIN_SIZE));
  if (onWorker) {
    const job = await pool.start(resume);
    if (job) return job;
  }
  counts.inline++;
  return await inlineJob(resume);
}

/**
 * How many jobs ran where, and why workers are off if they are: for tests
 * and benchmarks that must know which path they measured.
 */
export function hashingStats(): {
  worker: number;
  inline: number;
  unavailable?: string;
} {
  return { ...counts, unavailable: pool.unavailable };
}

const counts = { worker: 0, inline: 0 };

function notResumable(): Error {
  return new Error("save() asked of a SHA-384 job that is not resumable");
}

async function inlineJob(resume?: Uint8Array | null): Promise<Sha384Job> {
  if (resume === undefined) {
    const hash = createHash("sha384");
    return {
      where: "inline",
      update: (chunk) => void hash.update(chunk),
      save: () => Promise.reject(notResumable()),
      finish: () => Promise.resolve({ digest: hash.digest("hex") }),
      abort: () => {},
    };
  }
  const hash = await ResumableSha384.create(resume ?? undefined);
  return {
    where: "inline",
    update: (chunk) => void hash.update(chunk),
    save: () => Promise.resolve(hash.save().slice()),
    finish: () =>
      Promise.resolve({ digest: hash.digest(), state: hash.save() }),
    abort: () => {},
  };
}

/** A Web Worker or a `node:worker_threads` one, as the pool uses them. */
interface HashThread {
  postMessage(message: ToWorker, transfer?: ArrayBuffer[]): void;
  /** Keeps the process alive while jobs run, or lets it end (idle). */
  hold(busy: boolean): void;
  terminate(): void;
}

interface ThreadEvents {
  message(message: FromWorker): void;
  error(reason: string): void;
}

async function startThread(events: ThreadEvents): Promise<HashThread> {
  // The worker module beside this one, with this one's extension: `.ts`
  // from source, `.js` where the package was built to JavaScript (JSR's
  // npm form, which Node loads).
  const extension = import.meta.url.endsWith(".js") ? ".js" : ".ts";
  const url = new URL(`./hash_worker${extension}`, import.meta.url);
  if (typeof Worker === "function") {
    const worker = new Worker(url, { type: "module" });
    worker.onmessage = (event) => events.message(event.data);
    worker.onerror = (event) => {
      event.preventDefault();
      events.error(`hash worker failed: ${event.message}`);
    };
    // A Web Worker cannot be unreferenced: the pool ends idle ones.
    return {
      postMessage: (message, transfer = []) =>
        worker.postMessage(message, transfer),
      hold: () => {},
      terminate: () => worker.terminate(),
    };
  }
  const { Worker: NodeWorker } = await import("node:worker_threads");
  const worker = new NodeWorker(url);
  worker.on("message", events.message);
  worker.on("error", (err) => events.error(`hash worker failed: ${err}`));
  // The exit that terminate() causes (an idle worker ending) is no failure:
  // reporting it would turn workers off for good after the first idle end.
  let terminated = false;
  worker.on("exit", (code) => {
    if (!terminated) events.error(`hash worker exited (${code})`);
  });
  worker.unref();
  return {
    postMessage: (message, transfer) => worker.postMessage(message, transfer),
    hold: (busy) => busy ? worker.ref() : worker.unref(),
    terminate: () => {
      terminated = true;
      void worker.terminate();
    },
  };
}

interface Slot {
  thread: HashThread;
  ready: Promise<boolean>;
  jobs: Map<number, WorkerJob>;
  idle?: ReturnType<typeof setTimeout>;
}

class WorkerPool {
  #slots: Slot[] = [];
  #nextId = 1;
  /** Why workers are not used, once a worker failed to start. */
  unavailable?: string;

  async start(resume?: Uint8Array | null): Promise<Sha384Job | undefined> {
    if (this.unavailable !== undefined) return undefined;
    const slot = this.#pick() ?? await this.#spawn();
    if (!slot || !await slot.ready) return undefined;
    const id = this.#nextId++;
    const job = new WorkerJob(
      id,
      slot,
      () => this.#release(slot, id),
      resume !== undefined,
    );
    if (slot.jobs.size === 0) slot.thread.hold(true);
    clearTimeout(slot.idle);
    slot.jobs.set(id, job);
    slot.thread.postMessage({ op: "start", id, resume });
    counts.worker++;
    return job;
  }

  /** The least busy live worker, unless a new one would be idle. */
  #pick(): Slot | undefined {
    const idle = this.#slots.find((slot) => slot.jobs.size === 0);
    if (idle || this.#slots.length >= MAX_WORKERS) {
      return idle ??
        this.#slots.reduce((a, b) => a.jobs.size <= b.jobs.size ? a : b);
    }
    return undefined;
  }

  #release(slot: Slot, id: number): void {
    if (!slot.jobs.delete(id) || slot.jobs.size > 0) return;
    slot.thread.hold(false);
    clearTimeout(slot.idle);
    slot.idle = setTimeout(() => this.#end(slot), IDLE_MS);
  }

  #end(slot: Slot): void {
    if (slot.jobs.size > 0) return;
    const at = this.#slots.indexOf(slot);
    if (at >= 0) this.#slots.splice(at, 1);
    slot.thread.terminate();
  }

  async #spawn(): Promise<Slot | undefined> {
    let settle!: (ready: boolean) => void;
    const slot = {
      ready: new Promise<boolean>((resolve) => settle = resolve),
      jobs: new Map(),
    } as Slot;
    const timer = setTimeout(() => {
      this.#fail(slot, `hash worker not ready in ${READY_TIMEOUT_MS} ms`);
      settle(false);
    }, READY_TIMEOUT_MS);
    try {
      slot.thread = await startThread({
        message: (message) => {
          if (message.op === "ready") {
            clearTimeout(timer);
            settle(true);
          } else slot.jobs.get(message.id)?.receive(message);
        },
        error: (reason) => {
          clearTimeout(timer);
          this.#fail(slot, reason);
          settle(false);
        },
      });
    } catch (err) {
      clearTimeout(timer);
      this.unavailable = `worker threads unavailable: ${err}`;
      return undefined;
    }
    this.#slots.push(slot);
    return slot;
  }

  /**
   * A worker that failed takes its jobs with it (their streams error) and
   * turns workers off for good: one that cannot load would fail again.
   */
  #fail(slot: Slot, reason: string): void {
    const at = this.#slots.indexOf(slot);
    if (at >= 0) this.#slots.splice(at, 1);
    this.unavailable ??= reason;
    slot.thread?.terminate();
    for (const job of slot.jobs.values()) job.fail(new Error(reason));
    slot.jobs.clear();
  }
}

class WorkerJob implements Sha384Job {
  readonly where = "worker" as const;
  #id: number;
  #slot: Slot;
  #release: () => void;
  #sent = 0;
  #hashed = 0;
  #batch?: Uint8Array;
  #filled = 0;
  #resume?: () => void;
  #resumable: boolean;
  #saves: {
    resolve: (state: Uint8Array) => void;
    reject: (reason: Error) => void;
  }[] = [];
  #error?: Error;
  #result: Promise<{ digest: string; state?: Uint8Array }>;
  #settle!: {
    resolve: (value: { digest: string; state?: Uint8Array }) => void;
    reject: (reason: Error) => void;
  };

  constructor(
    id: number,
    slot: Slot,
    release: () => void,
    resumable: boolean,
  ) {
    this.#resumable = resumable;
    this.#id = id;
    this.#slot = slot;
    this.#release = release;
    this.#result = new Promise((resolve, reject) => {
      this.#settle = { resolve, reject };
    });
    this.#result.catch(() => {});
  }

  /**
   * Copies `chunk` into the batch being filled (the caller passes the
   * original on), sending each full batch: the copy is the worker's own,
   * so it is transferred, not cloned again.
   */
  update(chunk: Uint8Array): void | Promise<void> {
    if (this.#error) throw this.#error;
    let at = 0;
    while (at < chunk.byteLength) {
      this.#batch ??= spare.pop() ?? new Uint8Array(BATCH_SIZE);
      const n = Math.min(chunk.byteLength - at, BATCH_SIZE - this.#filled);
      this.#batch.set(chunk.subarray(at, at + n), this.#filled);
      this.#filled += n;
      at += n;
      if (this.#filled === BATCH_SIZE) this.#send();
    }
    if (this.#sent - this.#hashed <= MAX_IN_FLIGHT) return;
    return new Promise<void>((resolve) => this.#resume = resolve);
  }

  #send(): void {
    if (!this.#batch || this.#filled === 0) return;
    const chunk = this.#filled === BATCH_SIZE
      ? this.#batch
      : this.#batch.slice(0, this.#filled);
    this.#sent += chunk.byteLength;
    this.#slot.thread.postMessage({ op: "data", id: this.#id, chunk }, [
      chunk.buffer as ArrayBuffer,
    ]);
    this.#batch = undefined;
    this.#filled = 0;
  }

  save(): Promise<Uint8Array> {
    if (this.#error) return Promise.reject(this.#error);
    if (!this.#resumable) return Promise.reject(notResumable());
    this.#send();
    this.#slot.thread.postMessage({ op: "save", id: this.#id });
    return new Promise((resolve, reject) => {
      this.#saves.push({ resolve, reject });
    });
  }

  finish(): Promise<{ digest: string; state?: Uint8Array }> {
    if (!this.#error) {
      this.#send();
      this.#slot.thread.postMessage({ op: "end", id: this.#id });
    }
    return this.#result;
  }

  abort(): void {
    if (this.#error) return;
    this.#slot.thread.postMessage({ op: "abort", id: this.#id });
    this.fail(new Error("hash job aborted"));
    this.#release();
  }

  receive(message: FromWorker): void {
    if (message.op === "ack") {
      this.#hashed = message.bytes;
      const chunk = message.chunk;
      if (chunk?.byteLength === BATCH_SIZE && spare.length < MAX_SPARE) {
        spare.push(chunk);
      }
      if (this.#resume && this.#sent - this.#hashed <= MAX_IN_FLIGHT / 2) {
        this.#resume();
        this.#resume = undefined;
      }
    } else if (message.op === "saved") {
      this.#saves.shift()?.resolve(message.state);
    } else if (message.op === "done") {
      this.#release();
      this.#settle.resolve({ digest: message.digest, state: message.state });
    } else if (message.op === "error") {
      this.#release();
      this.fail(new Error(message.message));
    }
  }

  fail(error: Error): void {
    this.#error ??= error;
    this.#settle.reject(this.#error);
    for (const save of this.#saves.splice(0)) save.reject(this.#error);
    this.#resume?.();
    this.#resume = undefined;
  }
}

const pool = new WorkerPool();
