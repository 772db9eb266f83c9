/**
 * The worker thread of `hashing.ts`: hashes the chunks it is sent, one job
 * per stream, so that SHA-384 runs beside the main thread's I/O instead of
 * between its reads and writes.
 *
 * It runs as a Web Worker (Deno, Bun) or under `node:worker_threads`
 * (Node), whichever started it.
 *
 * Messages in: `start` (a job, plain or resumed from a saved state),
 * `data` (a chunk, transferred), `save` (a resumable job's state so far),
 * `end`, `abort`. Messages out: `ack` (the bytes a job has hashed, for the
 * sender's flow control, with the chunk transferred back for reuse),
 * `saved` (the state asked for), `done` (the digest, and for a resumable
 * job its saved state), `error`.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { ResumableSha384 } from "./resumable_sha384.ts";

/** A message to the worker. */
export type ToWorker =
  | { op: "start"; id: number; resume?: Uint8Array | null }
  | { op: "data"; id: number; chunk: Uint8Array }
  | { op: "save"; id: number }
  | { op: "end"; id: number }
  | { op: "abort"; id: number };

/** A message from the worker. */
export type FromWorker =
  | { op: "ack"; id: number; bytes: number; chunk?: Uint8Array }
  | { op: "saved"; id: number; state: Uint8Array }
  | { op: "done"; id: number; digest: string; state?: Uint8Array }
  | { op: "error"; id: number; message: string }
  | { op: "ready" };

interface Job {
  /** Messages of a job are handled in order, after its hasher exists. */
  chain: Promise<void>;
  hasher?: Hash | ResumableSha384;
  bytes: number;
  failed: boolean;
}

/** The two ways a worker talks to its parent. */
interface Port {
  postMessage(message: FromWorker, transfer?: ArrayBuffer[]): void;
  on(event: "message", listener: (message: ToWorker) => void): void;
}

async function parentPort(): Promise<Port | undefined> {
  // deno-lint-ignore no-explicit-any
  const scope = globalThis as any;
  if (typeof scope.WorkerGlobalScope === "function") {
    return {
      postMessage: (message, transfer) => scope.postMessage(message, transfer),
      on: (_event, listener) =>
        scope.addEventListener(
          "message",
          (event: MessageEvent<ToWorker>) => listener(event.data),
        ),
    };
  }
  const { parentPort } = await import("node:worker_threads");
  return parentPort ?? undefined;
}

const port = await parentPort();
if (port) {
  const jobs = new Map<number, Job>();
  const send = (message: FromWorker, transfer: ArrayBuffer[] = []) =>
    port.postMessage(message, transfer);

  const step = (id: number, job: Job, work: () => Promise<void> | void) => {
    job.chain = job.chain.then(async () => {
      if (job.failed) return;
      try {
        await work();
      } catch (err) {
        job.failed = true;
        jobs.delete(id);
        send({ op: "error", id, message: String(err) });
      }
    });
  };

  port.on("message", (message: ToWorker) => {
    const { id } = message;
    if (message.op === "start") {
      const job: Job = { chain: Promise.resolve(), bytes: 0, failed: false };
      jobs.set(id, job);
      const resume = message.resume;
      step(id, job, async () => {
        job.hasher = resume === undefined
          ? createHash("sha384")
          : await ResumableSha384.create(resume ?? undefined);
      });
      return;
    }
    const job = jobs.get(id);
    if (!job) return;
    if (message.op === "data") {
      step(id, job, () => {
        const { chunk } = message;
        job.hasher!.update(chunk);
        job.bytes += chunk.byteLength;
        // The chunk goes back for the sender to fill again: buffers then
        // ping-pong between the threads instead of piling up here until
        // this isolate's garbage collector notices them.
        send({ op: "ack", id, bytes: job.bytes, chunk }, [
          chunk.buffer as ArrayBuffer,
        ]);
      });
    } else if (message.op === "save") {
      step(id, job, () => {
        const hasher = job.hasher;
        if (!(hasher instanceof ResumableSha384)) {
          throw new Error("save asked of a job that is not resumable");
        }
        const state = hasher.save().slice();
        send({ op: "saved", id, state }, [state.buffer as ArrayBuffer]);
      });
    } else if (message.op === "end") {
      step(id, job, () => {
        jobs.delete(id);
        const hasher = job.hasher!;
        if (hasher instanceof ResumableSha384) {
          // A copy of its own: the transfer detaches it.
          const state = hasher.save().slice();
          send({ op: "done", id, digest: hasher.digest(), state }, [
            state.buffer as ArrayBuffer,
          ]);
        } else {
          send({ op: "done", id, digest: hasher.digest("hex") });
        }
      });
    } else {
      job.failed = true;
      jobs.delete(id);
    }
  });
  // Sent once the imports above have loaded: a worker that cannot load
  // them (a runtime without hash-wasm, say) never says it, and its pool
  // falls back to hashing inline.
  send({ op: "ready" });
}
