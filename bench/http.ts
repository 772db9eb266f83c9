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
 *   other bare handlers' figures go in notes); no target;
 * - redirected GET: the handler with `redirect` over an `S3Backend` (Swift's
 *   s3api at S3_ENDPOINT) answering 307 to a presigned URL, which `fetch`
 *   follows, vs the same handler without `redirect` streaming the same
 *   object through the service: the time to the first body byte, and the
 *   whole download, of a 1 MiB and a 64 MiB blob; no target. Skipped, with
 *   the reason in a note, when the S3 API is not reachable.
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
 * (`--quick`: 64 MiB, 1 round, the redirect at 1 MiB only). `httpSuite`
 * plugs into `bench/main.ts`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import process from "node:process";
import { createHandler } from "../http.ts";
import { S3Backend } from "../src/s3/backend.ts";
import { S3Client } from "../src/s3/client.ts";
import { openSeams } from "../src/server/config.ts";
import { rawRequest } from "../tests/raw_http.ts";
import {
  S3_ACCESS_KEY,
  S3_ENDPOINT,
  S3_REGION,
  S3_SECRET_KEY,
} from "../tests/services.ts";
import type { BenchCase, BenchRow, BenchSuite } from "./harness.ts";
import { putBoundNote } from "./bound.ts";
import { standalone } from "./run.ts";
import { chunksOf, drain, variantChunks, variantHash } from "./data.ts";
import { s3Unreachable } from "./s3.ts";

const MiB = 2 ** 20;

interface ChildServer {
  port: number;
  /** The process's CPU time so far, user + system, in ms. */
  cpuMs(): Promise<number>;
  peakRssMiB(): Promise<number>;
  stop(): Promise<void>;
}

async function startChild(
  kind: "bare" | "blobstore" | "s3",
  size: number,
  data: string,
  env: Record<string, string> = {},
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
    env: { MONGODB_URL: "", SWIFT_AUTH_URL: "", BLOBSTORE_TOKEN: "", ...env },
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

/**
 * A GET of `url` with `fetch`, following a redirect (which it checks was,
 * or was not, taken): the ms to the first body chunk and to the end.
 */
async function timedGet(
  url: string,
  size: number,
  redirected: boolean,
): Promise<{ firstByteMs: number; totalMs: number }> {
  const start = performance.now();
  const res = await fetch(url);
  let firstByteMs: number | undefined;
  let n = 0;
  for await (const chunk of res.body!) {
    firstByteMs ??= performance.now() - start;
    n += chunk.byteLength;
  }
  const totalMs = performance.now() - start;
  if (res.status !== 200 || n !== size || res.redirected !== redirected) {
    throw new Error(
      `GET ${url}: HTTP ${res.status}, ${n} bytes, ${
        res.redirected ? "" : "not "
      }redirected`,
    );
  }
  return { firstByteMs: firstByteMs!, totalMs };
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

/** Why the redirected GET rows were skipped, when they were. */
let redirectSkipped: string | undefined;

/** The HTTP cases: blobstore's handler vs a bare handler, both over loopback. */
export const httpSuite: BenchSuite = {
  name: "http",
  async open({ quick }) {
    const size = quick ? 64 * MiB : 256 * MiB;
    const rounds = quick ? 1 : 5;
    const data = await Deno.makeTempDir({ prefix: "blobstore-bench-http-" });
    const bare = await startChild("bare", size, data);
    const ours = await startChild("blobstore", size, data);
    let redirect: { cases: BenchCase[]; close(): Promise<void> } | undefined;
    cleanup = async () => {
      serverPeakRss.bare = await bare.peakRssMiB();
      serverPeakRss.blobstore = await ours.peakRssMiB();
      await bare.stop();
      await ours.stop();
      await redirect?.close();
      await Deno.remove(data, { recursive: true });
    };
    const opened = await openRedirect(quick, `${data}/s3`).catch((err) =>
      `could not open (${err instanceof Error ? err.message : err})`
    );
    if (typeof opened === "string") {
      redirectSkipped = opened;
      console.error(`suite http: redirected GET rows skipped: ${opened}`);
    } else {
      redirectSkipped = undefined;
      redirect = opened;
    }
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
      ...redirect?.cases ?? [],
    ];
  },
  async close() {
    await cleanup?.();
    cleanup = undefined;
  },
  note: () =>
    [
      serverPeakRss.blobstore === undefined
        ? undefined
        : `HTTP servers' peak RSS (whole run): blobstore ${
          serverPeakRss.blobstore.toFixed(0)
        } MiB, bare ${serverPeakRss.bare.toFixed(0)} MiB`,
      redirectSkipped && `HTTP redirected GET rows skipped: ${redirectSkipped}`,
    ].filter(Boolean).join("\n- ") || undefined,
};

/**
 * The redirected GET cases: a server (this script, `--serve s3`) with the
 * handler over an `S3Backend` in a fresh bucket twice, under `/redirect`
 * with `redirect: true` and under `/stream` without, and a blob of each
 * size stored through it. Or why not, when the S3 API is not reachable.
 */
async function openRedirect(
  quick: boolean,
  data: string,
): Promise<{ cases: BenchCase[]; close(): Promise<void> } | string> {
  const endpoint = S3_ENDPOINT.replace(/\/+$/, "");
  const unreachable = await s3Unreachable(endpoint);
  if (unreachable) return unreachable;
  const bucket = `blobstore-bench-http-${crypto.randomUUID().slice(0, 8)}`;
  const params = {
    endpoint,
    region: S3_REGION,
    bucket,
    accessKeyId: S3_ACCESS_KEY,
    secretAccessKey: S3_SECRET_KEY,
  };
  const server = await startChild("s3", 0, data, {
    S3_BUCKET: bucket,
    S3_PATH_STYLE: "",
    AWS_ACCESS_KEY_ID: S3_ACCESS_KEY,
    AWS_SECRET_ACCESS_KEY: S3_SECRET_KEY,
    AWS_SESSION_TOKEN: "",
    AWS_REGION: S3_REGION,
    AWS_ENDPOINT_URL_S3: endpoint,
  });
  // A failure here is reported, not thrown: it would hide a failed case's
  // own error (close runs in the harness's finally).
  const close = async () => {
    await server.stop();
    const backend = new S3Backend(params);
    try {
      const names: string[] = [];
      for await (const object of backend.list()) names.push(object.name);
      await backend.removeMany(names);
      const res = await new S3Client(params).send("DELETE bucket", {
        method: "DELETE",
      });
      await res.body?.cancel();
      if (!res.ok) throw new Error(`DELETE bucket: HTTP ${res.status}`);
    } catch (err) {
      console.error(
        `warning: bench bucket ${bucket} left behind: ${
          (err as Error).message
        }`,
      );
    }
  };
  try {
    const cases: BenchCase[] = [];
    for (const size of quick ? [MiB] : [MiB, 64 * MiB]) {
      const variant = 1000 + size / MiB;
      const hash = variantHash(size, variant);
      await upload(
        server.port,
        `/stream/blobs/${hash}`,
        size,
        variantChunks(size, variant),
      );
      const url = (mount: string) =>
        `http://127.0.0.1:${server.port}/${mount}/blobs/${hash}`;
      const redirected = () => timedGet(url("redirect"), size, true);
      const streamed = () => timedGet(url("stream"), size, false);
      // Untimed: both paths' connections open, the object read once.
      const setup = async () => {
        await redirected();
        await streamed();
      };
      const what =
        "HTTP GET /blobs/{hash} redirected (307 to a presigned S3 URL, followed)";
      const vs = "vs streamed through the handler from S3";
      cases.push({
        name: `${what}: time to first byte ${vs}`,
        size,
        cost: "ms",
        setup,
        ours: async () => (await redirected()).firstByteMs,
        baseline: async () => (await streamed()).firstByteMs,
        note: (row) =>
          `${row.case}: from the request to the first body chunk (fetch), loopback, Swift's s3api behind both`,
      }, {
        name: `${what}: whole download time ${vs}`,
        size,
        cost: "ms",
        setup,
        ours: async () => (await redirected()).totalMs,
        baseline: async () => (await streamed()).totalMs,
      });
    }
    return { cases, close };
  } catch (err) {
    await close();
    throw err;
  }
}

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
  } else if (kind === "s3") {
    // The S3 backend from the S3_ and AWS_ variables the parent set, as
    // `serve` reads them; the catalog in DATA.
    const seams = await openSeams({
      data,
      env: (name) => /^(S3|AWS)_/.test(name) ? Deno.env.get(name) : undefined,
    });
    const common = { authorize: false, cors: false } as const;
    const redirected = createHandler(seams.store, {
      ...common,
      prefix: "/redirect",
      redirect: true,
    });
    const streamed = createHandler(seams.store, {
      ...common,
      prefix: "/stream",
    });
    handler = (req, info) =>
      new URL(req.url).pathname.startsWith("/redirect/")
        ? redirected(req, info)
        : streamed(req, info);
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
