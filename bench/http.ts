/**
 * The HTTP service against a bare `Deno.serve` handler, over loopback, in
 * the same run:
 *
 * - upload: `PUT /blobs/{hash}` of a 256 MiB blob (streamed into the
 *   store, verified, written to the embedded default: Deno KV catalog and
 *   file backend, fsync included) vs a bare handler that reads the request
 *   body and drops it, and vs one that hashes it with SHA-384 (the least
 *   work a verified put does);
 * - download: `GET /blobs/{hash}` of that blob (from the file backend) vs a
 *   bare handler that streams 256 MiB from memory, and vs one that streams
 *   the same bytes from a file (the least work a download from disk does);
 * - server CPU per MiB (what Deno Deploy bills): the server process's user +
 *   system CPU time during each round of that PUT and that GET, against the
 *   bare handler hashing the body and the one streaming the file (the
 *   other bare handlers' figures go in notes); no target.
 *
 * Each server runs in its own process (this script with `--serve`), so the
 * client does not share its thread; the client sends with a
 * `Content-Length` over a raw connection (as `curl -T` does) and reads with
 * `fetch`. Every upload round sends a different blob, so each one is
 * really stored. Reports the median of the rounds, the ratio, and the
 * servers' peak RSS. Each server process also answers, on a second port
 * of its own, its `process.cpuUsage()` (process-wide: every thread), read
 * before and after each CPU round.
 *
 * Standalone: `deno run -A --unstable-kv bench/http.ts [--quick]`
 * (`--quick`: 64 MiB, 1 round). `httpSuite` plugs into `bench/main.ts`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import process from "node:process";
import { createHandler } from "../http.ts";
import { openSeams } from "../src/server/config.ts";
import { rawRequest } from "../tests/raw_http.ts";
import type { BenchCase, BenchRow, BenchSuite } from "./harness.ts";
import { putBoundNote } from "./bound.ts";
import { standalone } from "./run.ts";
import { chunksOf, drain } from "./data.ts";

const MiB = 2 ** 20;

/** The chunks of blob number `variant`: the shared pool, its first chunk marked. */
function* variantChunks(size: number, variant: number): Generator<Uint8Array> {
  let first = true;
  for (const chunk of chunksOf(size)) {
    if (!first) {
      yield chunk;
      continue;
    }
    first = false;
    const marked = chunk.slice();
    new DataView(marked.buffer).setFloat64(0, variant);
    yield marked;
  }
}

function variantHash(size: number, variant: number): string {
  const hash = createHash("sha384");
  for (const chunk of variantChunks(size, variant)) hash.update(chunk);
  return hash.digest("hex");
}

interface ChildServer {
  port: number;
  /** The process's CPU time so far, user + system, in ms. */
  cpuMs(): Promise<number>;
  peakRssMiB(): Promise<number>;
  stop(): Promise<void>;
}

async function startChild(
  kind: "bare" | "blobstore",
  size: number,
  data: string,
): Promise<ChildServer> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-kv",
      new URL(import.meta.url).pathname,
      "--serve",
      kind,
      String(size),
      data,
    ],
    env: { MONGODB_URL: "", SWIFT_AUTH_URL: "", BLOBSTORE_TOKEN: "" },
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!/^port (\d+)\n/m.test(text) || !/^cpu (\d+)\n/m.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${kind} server exited before listening`);
    text += value;
  }
  reader.releaseLock();
  const cpuPort = Number(text.match(/^cpu (\d+)/m)![1]);
  return {
    port: Number(text.match(/^port (\d+)/m)![1]),
    async cpuMs() {
      const res = await fetch(`http://127.0.0.1:${cpuPort}/`);
      const { user, system } = await res.json();
      return (user + system) / 1000;
    },
    async peakRssMiB() {
      const status = await Deno.readTextFile(`/proc/${child.pid}/status`);
      return Number(status.match(/VmHWM:\s+(\d+) kB/)![1]) / 1024;
    },
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await child.stdout.cancel().catch(() => {});
    },
  };
}

async function upload(
  port: number,
  path: string,
  size: number,
  chunks: Iterable<Uint8Array>,
) {
  const res = await rawRequest(port, {
    method: "PUT",
    path,
    headers: { "content-length": String(size) },
    body: chunks,
    discardBody: true,
  });
  if (!res || res.status >= 300) {
    throw new Error(`PUT ${path}: HTTP ${res?.status}`);
  }
}

async function download(port: number, path: string, size: number) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  if (res.status !== 200 || (await drain(res.body!)) !== size) {
    throw new Error(`GET ${path}: HTTP ${res.status} or short read`);
  }
}

/** The CPU time `server` spends while `work` runs, in ms per MiB of `size`. */
async function cpuPerMiB(
  server: ChildServer,
  size: number,
  work: () => Promise<void>,
): Promise<number> {
  const before = await server.cpuMs();
  await work();
  return (await server.cpuMs() - before) / (size / MiB);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** A cost as the table shows it: three significant digits. */
function figure(x: number): number {
  return Number(x.toPrecision(3));
}

let cleanup: (() => Promise<void>) | undefined;

/** The peak RSS of each server process over the whole run, in MiB. */
export const serverPeakRss: Record<string, number> = {};

/** The HTTP cases: blobstore's handler vs a bare handler, both over loopback. */
export const httpSuite: BenchSuite = {
  name: "http",
  async open({ quick }) {
    const size = quick ? 64 * MiB : 256 * MiB;
    const rounds = quick ? 1 : 5;
    const data = await Deno.makeTempDir({ prefix: "blobstore-bench-http-" });
    const bare = await startChild("bare", size, data);
    const ours = await startChild("blobstore", size, data);
    cleanup = async () => {
      serverPeakRss.bare = await bare.peakRssMiB();
      serverPeakRss.blobstore = await ours.peakRssMiB();
      await bare.stop();
      await ours.stop();
      await Deno.remove(data, { recursive: true });
    };
    console.error(
      `hashing ${4 * rounds + 1} distinct ${size / MiB} MiB blobs…`,
    );
    const hashes = Array.from(
      { length: 4 * rounds + 1 },
      (_, i) => variantHash(size, i),
    );
    // The blob the download rounds read.
    await upload(
      ours.port,
      `/blobs/${hashes[0]}`,
      size,
      variantChunks(size, 0),
    );
    let variant = 0;
    const putCase: BenchCase = {
      name: "HTTP PUT /blobs/{hash} vs bare Deno.serve reading the body",
      size,
      target: 0.8,
      note: putBoundNote,
      async ours() {
        variant++;
        await upload(
          ours.port,
          `/blobs/${hashes[variant]}`,
          size,
          variantChunks(size, variant),
        );
      },
      baseline: () => upload(bare.port, "/", size, variantChunks(size, 0)),
    };
    const putHashCase: BenchCase = {
      name:
        "HTTP PUT /blobs/{hash} vs bare Deno.serve hashing the body (SHA-384)",
      size,
      async ours() {
        variant++;
        await upload(
          ours.port,
          `/blobs/${hashes[variant]}`,
          size,
          variantChunks(size, variant),
        );
      },
      baseline: () =>
        upload(bare.port, "/sha384", size, variantChunks(size, 0)),
    };
    const getCase: BenchCase = {
      name: "HTTP GET /blobs/{hash} vs bare Deno.serve streaming bytes",
      size,
      target: 0.8,
      ours: () => download(ours.port, `/blobs/${hashes[0]}`, size),
      baseline: () => download(bare.port, "/", size),
    };
    // What a download from disk does at least: read a file of the same
    // bytes into fresh buffers and stream them.
    const getFileCase: BenchCase = {
      ...getCase,
      name:
        "HTTP GET /blobs/{hash} vs bare Deno.serve streaming the same bytes from a file",
      target: undefined,
      baseline: () => download(bare.port, "/file", size),
    };
    // What a verified, durable upload does at least: hash the body and
    // write it to a file, fsync included (as the FileBackend behind ours).
    const putFileCase: BenchCase = {
      ...putHashCase,
      name:
        "HTTP PUT /blobs/{hash} vs bare Deno.serve hashing + writing the body to a file (fsync)",
      baseline: () =>
        upload(bare.port, "/sha384-file", size, variantChunks(size, 0)),
    };
    // Server CPU per MiB, in rounds of their own: the bare handlers not in
    // the baseline column are measured before each round, for the note.
    const cpuNote = (others: number[], other: string) => (row: BenchRow) =>
      `${row.case}: the server process's user + system CPU time during the request (process.cpuUsage(), all threads), per MiB of body; ${other}: ${
        figure(median(others))
      } ms/MiB`;
    const bareReadCpu: number[] = [];
    const putCpuCase: BenchCase = {
      name:
        "HTTP PUT /blobs/{hash}: server CPU time per MiB vs bare Deno.serve hashing the body (SHA-384)",
      size,
      cost: "ms/MiB",
      async beforeRound() {
        bareReadCpu.push(
          await cpuPerMiB(
            bare,
            size,
            () => upload(bare.port, "/", size, variantChunks(size, 0)),
          ),
        );
      },
      ours() {
        variant++;
        return cpuPerMiB(
          ours,
          size,
          () =>
            upload(
              ours.port,
              `/blobs/${hashes[variant]}`,
              size,
              variantChunks(size, variant),
            ),
        );
      },
      baseline: () =>
        cpuPerMiB(
          bare,
          size,
          () => upload(bare.port, "/sha384", size, variantChunks(size, 0)),
        ),
      note: cpuNote(bareReadCpu, "bare Deno.serve reading the body only"),
    };
    const bareMemoryCpu: number[] = [];
    const getCpuCase: BenchCase = {
      name:
        "HTTP GET /blobs/{hash}: server CPU time per MiB vs bare Deno.serve streaming the same bytes from a file",
      size,
      cost: "ms/MiB",
      async beforeRound() {
        bareMemoryCpu.push(
          await cpuPerMiB(bare, size, () => download(bare.port, "/", size)),
        );
      },
      ours: () =>
        cpuPerMiB(
          ours,
          size,
          () => download(ours.port, `/blobs/${hashes[0]}`, size),
        ),
      baseline: () =>
        cpuPerMiB(bare, size, () => download(bare.port, "/file", size)),
      note: cpuNote(bareMemoryCpu, "bare Deno.serve streaming from memory"),
    };
    return [
      putCase,
      putHashCase,
      putFileCase,
      getCase,
      getFileCase,
      putCpuCase,
      getCpuCase,
    ];
  },
  async close() {
    await cleanup?.();
    cleanup = undefined;
  },
  note: () =>
    serverPeakRss.blobstore === undefined
      ? undefined
      : `HTTP servers' peak RSS (whole run): blobstore ${
        serverPeakRss.blobstore.toFixed(0)
      } MiB, bare ${serverPeakRss.bare.toFixed(0)} MiB`,
};

/** Writes `size` bytes of the shared chunks to `path` (the bare download's file). */
async function writeFileOf(path: string, size: number): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true });
  for (const chunk of chunksOf(size)) {
    for (let at = 0; at < chunk.length;) {
      at += await file.write(chunk.subarray(at));
    }
  }
}

/**
 * `--serve KIND SIZE DATA`: one of the servers, printing its port, and the
 * port where it answers its `process.cpuUsage()`.
 */
async function serve(kind: string, size: number, data: string): Promise<void> {
  let handler: Deno.ServeHandler;
  if (kind === "bare") {
    let files = 0;
    handler = async (req) => {
      const path = new URL(req.url).pathname;
      if (req.method === "PUT" && path === "/sha384-file") {
        const name = `${data}/bare-upload-${++files}`;
        await Deno.remove(`${data}/bare-upload-${files - 1}`).catch(() => {});
        const hash = createHash("sha384");
        using file = await Deno.open(name, { write: true, createNew: true });
        for await (const chunk of req.body!) {
          hash.update(chunk);
          for (let at = 0; at < chunk.length;) {
            at += await file.write(chunk.subarray(at));
          }
        }
        await file.sync();
        return new Response(hash.digest("hex"), { status: 201 });
      }
      if (req.method === "PUT" && path === "/sha384") {
        const hash = createHash("sha384");
        for await (const chunk of req.body!) hash.update(chunk);
        return new Response(hash.digest("hex"), { status: 201 });
      }
      if (req.method === "PUT") {
        await drain(req.body!);
        return new Response(null, { status: 201 });
      }
      if (path === "/file") {
        const file = await Deno.open(`${data}/bare-download`);
        return new Response(file.readable, {
          headers: { "content-length": String(size) },
        });
      }
      return new Response(ReadableStream.from(chunksOf(size)), {
        headers: { "content-length": String(size) },
      });
    };
    await writeFileOf(`${data}/bare-download`, size);
  } else {
    const seams = await openSeams({ data, env: () => undefined });
    handler = createHandler(seams.store, { authorize: false });
  }
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: ({ port }) => console.log(`port ${port}`),
  }, handler);
  // On a port of its own, so the measured handler stays as it is.
  const cpu = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: ({ port }) => console.log(`cpu ${port}`),
  }, () => Response.json(process.cpuUsage()));
  Deno.addSignalListener("SIGTERM", () => {
    server.shutdown();
    cpu.shutdown();
  });
  await server.finished;
  await cpu.finished;
  Deno.exit(0);
}

if (import.meta.main) {
  if (Deno.args[0] === "--serve") {
    await serve(Deno.args[1], Number(Deno.args[2]), Deno.args[3]);
  } else {
    await standalone(httpSuite);
  }
}
