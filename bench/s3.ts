/**
 * S3Backend against bare SigV4-signed requests to the same server, in the
 * same run (Swift's s3api, `bash scripts/swift.sh start`, at S3_ENDPOINT):
 *
 * - put of a 256 MiB blob through `S3Backend` (defaults: streamed through
 *   `node:http` with its Content-Length, verified, multipart above the
 *   64 MiB part size) vs a bare signed PUT of the same bytes, also written
 *   through `node:http` with its Content-Length from the same kind of
 *   stream, in one request; target ≥ 0.9.
 * - the same put vs the bare PUT hashing its chunks with SHA-384 as they
 *   go: the least work a verified put does.
 * - when the put is a multipart upload (the full size), the same verified
 *   put as one PUT (`partSize` = size) vs the bare PUT: what the parts
 *   cost, in the same run.
 * - open (read back whole) through `S3Backend` vs a bare signed `fetch`
 *   GET of the same object; target ≥ 0.9.
 * - peak RSS growth during a 1 GiB put and open; ≤ 64 MiB.
 * - GC of 10,000 objects: `removeMany` (DeleteObjects, 1,000 keys a
 *   request) vs a bare signed DELETE of each, one after another; both
 *   times reported, no target.
 *
 * Standalone: `deno run -A bench/s3.ts [--quick] [--only TEXT]`
 * (`--quick`: 64 MiB blobs, 128 MiB for RSS, 200 objects for GC, 1 round).
 * Everything goes to a fresh bucket, emptied and deleted at the end.
 * `s3Suite` plugs into `bench/main.ts`.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import * as http from "node:http";
import { S3Backend } from "../src/s3/backend.ts";
import { S3Client } from "../src/s3/client.ts";
import type { S3Params } from "../src/s3/params.ts";
import {
  EMPTY_SHA256,
  signRequest,
  UNSIGNED_PAYLOAD,
} from "../src/s3/sigv4.ts";
import {
  S3_ACCESS_KEY,
  S3_ENDPOINT,
  S3_REGION,
  S3_SECRET_KEY,
} from "../tests/services.ts";
import type { BenchCase, BenchRow, BenchSuite } from "./harness.ts";
import { putBoundNote } from "./bound.ts";
import { rssCases } from "./rss.ts";
import { standalone } from "./run.ts";
import { drain, hashOfSize, streamOf } from "./data.ts";

const MiB = 2 ** 20;

/** How many objects the GC case's setup PUTs at once. */
const CREATE_CONCURRENCY = 32;

const credentials = {
  accessKeyId: S3_ACCESS_KEY,
  secretAccessKey: S3_SECRET_KEY,
};

let cleanup: (() => Promise<void>) | undefined;

/**
 * Why the S3 API at `endpoint` cannot be benchmarked (its health check
 * fails), or `undefined` when it answers.
 */
export async function s3Unreachable(
  endpoint: string,
): Promise<string | undefined> {
  try {
    const res = await fetch(`${endpoint}/healthcheck`, {
      signal: AbortSignal.timeout(5000),
    });
    const body = (await res.text()).trim();
    if (!res.ok || body !== "OK") {
      throw new Error(`GET /healthcheck: HTTP ${res.status}`);
    }
    return undefined;
  } catch (err) {
    return `Swift's S3 API not reachable at ${endpoint} (${
      (err as Error).message
    }); run \`bash scripts/swift.sh start\``;
  }
}

/** The S3Backend cases. */
export const s3Suite: BenchSuite = {
  name: "s3",
  async open({ quick }) {
    const size = quick ? 64 * MiB : 256 * MiB;
    const gcCount = quick ? 200 : 10_000;
    const endpoint = S3_ENDPOINT.replace(/\/+$/, "");
    const unreachable = await s3Unreachable(endpoint);
    if (unreachable) return unreachable;
    const hash = hashOfSize(size);
    const bucket = `blobstore-bench-s3-${crypto.randomUUID().slice(0, 8)}`;
    const params: S3Params = {
      endpoint,
      region: S3_REGION,
      bucket,
      ...credentials,
    };
    const backend = new S3Backend(params);
    const client = new S3Client(params);
    const bucketURL = new URL(`${endpoint}/${bucket}`);
    const objectURL = (key: string) =>
      new URL(`${endpoint}/${bucket}/${encodeURIComponent(key)}`);

    // The bucket, by a bare signed PUT: the baselines may run first.
    await check(await signedFetch("PUT", bucketURL), "PUT bucket");
    // A failure here is reported, not thrown: it would hide a failed
    // case's own error (close runs in the harness's finally).
    cleanup = async () => {
      try {
        const names = new Set<string>();
        for await (const object of backend.list()) names.add(object.name);
        await backend.removeMany([...names]);
        // what DeleteObjects leaves: incomplete multipart uploads
        for await (const object of backend.list()) {
          await backend.remove(object.name);
        }
        await check(await signedFetch("DELETE", bucketURL), "DELETE bucket");
      } catch (err) {
        console.error(
          `warning: bench bucket ${bucket} left behind: ${
            (err as Error).message
          }`,
        );
      }
    };

    const bareDelete = async (key: string) => {
      const res = await signedFetch("DELETE", objectURL(key));
      if (!res.ok && res.status !== 404) {
        throw new Error(`bare DELETE: HTTP ${res.status} ${await res.text()}`);
      }
      await res.body?.cancel();
    };

    // Every put round writes fresh names; the previous round's copies go
    // before the next round, untimed.
    let bareCount = 0;
    let bareLast: string | undefined;
    const barePut = async (hashing = false) => {
      const key = `bare-${++bareCount}`;
      const digest = hashing ? createHash("sha384") : undefined;
      await putStreamed(objectURL(key), streamOf(size), size, digest);
      if (digest && digest.digest("hex") !== hash) {
        throw new Error("bare PUT: wrong hash");
      }
      bareLast = key;
    };

    let last: string | undefined;
    const putOurs = async () => {
      const name = `${hash}-${
        crypto.randomUUID().replaceAll("-", "").slice(0, 16)
      }`;
      await backend.put(name, streamOf(size), size, hash);
      last = name;
    };
    const multipart = size > backend.partSize;
    const shape = multipart
      ? `ours a multipart upload of ${size / backend.partSize} parts of ${
        backend.partSize / MiB
      } MiB sent one after another (create, parts, complete), the bare one a single PUT`
      : "both a single PUT";
    const putCase: BenchCase = {
      name: "put S3Backend vs bare signed PUT",
      size,
      target: 0.9,
      async beforeRound() {
        if (last) await backend.remove(last);
        last = undefined;
        if (bareLast) await bareDelete(bareLast);
        bareLast = undefined;
      },
      ours: putOurs,
      baseline: () => barePut(),
      note: (row) =>
        `${
          putBoundNote(row) ?? row.case
        }. Fair: both stream the same 64 KiB chunks through node:http with their Content-Length (never chunked), signed UNSIGNED-PAYLOAD, to the same server; ${shape}`,
    };
    // What any verified put must do at least: the same bare PUT, hashing
    // the chunks as they go (as the Swift and embedded baselines do).
    const putHashedCase: BenchCase = {
      ...putCase,
      name: "put S3Backend vs bare signed PUT + SHA-384",
      target: undefined, // the floor of a verified put, not a goal
      baseline: () => barePut(true),
      note: undefined,
    };
    // Where the first row's gap comes from when ours is a multipart
    // upload: the same verified put as a single PUT (partSize = size).
    const single = new S3Backend({ ...params, partSize: size });
    let singleLast: string | undefined;
    const putSingleCase: BenchCase = {
      ...putCase,
      name: "put S3Backend as one PUT (partSize = size) vs bare signed PUT",
      target: undefined, // a diagnosis of the first row, not a goal
      async beforeRound() {
        await putCase.beforeRound!();
        if (singleLast) await single.remove(singleLast);
        singleLast = undefined;
      },
      async ours() {
        const name = `${hash}-${
          crypto.randomUUID().replaceAll("-", "").slice(0, 16)
        }`;
        await single.put(name, streamOf(size), size, hash);
        singleLast = name;
      },
      note: undefined,
    };
    const openCase: BenchCase = {
      name: "open S3Backend vs bare signed fetch GET",
      size,
      target: 0.9,
      async setup() {
        if (!last) await putOurs();
      },
      async ours() {
        const { body } = await backend.get(last!);
        if (await drain(body) !== size) throw new Error("short read");
      },
      async baseline() {
        const res = await signedFetch("GET", objectURL(last!));
        if (!res.ok || await drain(res.body!) !== size) {
          throw new Error(`bare GET: HTTP ${res.status} or short read`);
        }
      },
      note: (row) =>
        `${row.case}: both read the same object (stored by S3Backend${
          multipart ? ", so a multipart one" : ""
        }) with fetch, to the end`,
    };

    // GC: two sets of small objects, created untimed, concurrently.
    const body = new Uint8Array(1024).fill(7);
    const gcNames = (set: string) =>
      Array.from(
        { length: gcCount },
        (_, i) => `gc-${set}-${String(i).padStart(5, "0")}`,
      );
    const removeManyNames = gcNames("many");
    const oneByOneNames = gcNames("each");
    let createdMs = 0;
    const gcCase: BenchCase = {
      name: `GC S3Backend: removeMany vs one signed DELETE each`,
      size: gcCount,
      unit: "ops",
      rounds: 1,
      targetText: "report both times",
      async setup() {
        const started = performance.now();
        const names = [...removeManyNames, ...oneByOneNames];
        for (let i = 0; i < names.length; i += CREATE_CONCURRENCY) {
          await Promise.all(
            names.slice(i, i + CREATE_CONCURRENCY).map(async (key) => {
              const res = await client.send(`PUT ${key}`, {
                method: "PUT",
                key,
                body,
              });
              await check(res, `PUT ${key}`);
            }),
          );
        }
        createdMs = performance.now() - started;
      },
      ours: () => backend.removeMany(removeManyNames),
      async baseline() {
        for (const key of oneByOneNames) await bareDelete(key);
      },
      async teardown() {
        for await (const object of backend.list()) {
          if (object.name.startsWith("gc-")) {
            throw new Error(`GC left ${object.name} behind`);
          }
        }
      },
      note: (row: BenchRow) =>
        `${row.case}: ${
          gcCount.toLocaleString("en")
        } objects of 1 KiB; removeMany (${
          Math.ceil(gcCount / 1000)
        } DeleteObjects requests of ≤ 1,000 keys) ${
          seconds(gcCount / row.ours)
        } vs ${gcCount.toLocaleString("en")} DELETEs one after another ${
          seconds(gcCount / row.baseline!)
        }: ${row.ratio}× (the ${
          (2 * gcCount).toLocaleString("en")
        } objects were created, untimed, in ${
          seconds(createdMs / 1000)
        } by ${CREATE_CONCURRENCY} concurrent PUTs)`,
    };

    return [
      putCase,
      putHashedCase,
      ...(multipart ? [putSingleCase] : []),
      openCase,
      ...rssCases("S3Backend", backend, quick ? 128 * MiB : 1024 * MiB),
      gcCase,
    ];
  },
  async close() {
    await cleanup?.();
    cleanup = undefined;
  },
};

/** `method url` without a body, signed, through fetch. */
async function signedFetch(method: string, url: URL): Promise<Response> {
  const headers = await signRequest({
    method,
    url,
    credentials,
    region: S3_REGION,
    payloadHash: EMPTY_SHA256,
  });
  return await fetch(url, { method, headers });
}

/**
 * The bare streamed PUT: `size` bytes of `body`, signed UNSIGNED-PAYLOAD,
 * written through `node:http` with their Content-Length as they come
 * (waiting for `drain`), each chunk hashed into `digest` when given.
 */
async function putStreamed(
  url: URL,
  body: ReadableStream<Uint8Array>,
  size: number,
  digest?: Hash,
): Promise<void> {
  const headers = await signRequest({
    method: "PUT",
    url,
    headers: {
      "content-length": String(size),
      "content-type": "application/octet-stream",
    },
    credentials,
    region: S3_REGION,
    payloadHash: UNSIGNED_PAYLOAD,
  });
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  const req = http.request(url, {
    method: "PUT",
    headers: Object.fromEntries(headers),
  }, (res) => {
    let text = "";
    res.on("data", (chunk: Uint8Array) => {
      if (text.length < 4096) text += new TextDecoder().decode(chunk);
    });
    res.on("end", () => {
      const status = res.statusCode ?? 0;
      if (status >= 200 && status < 300) resolve();
      else reject(new Error(`bare PUT: HTTP ${status} ${text}`));
    });
    res.on("error", reject);
  });
  req.on("error", reject);
  (async () => {
    for await (const chunk of body) {
      digest?.update(chunk);
      if (!req.write(chunk)) {
        await new Promise<void>((done) => req.once("drain", done));
      }
    }
    req.end();
  })().catch((err) => {
    req.destroy(err);
    reject(err);
  });
  await promise;
}

async function check(res: Response, what: string) {
  if (!res.ok) {
    throw new Error(`${what}: HTTP ${res.status} ${await res.text()}`);
  }
  await res.body?.cancel();
}

function seconds(s: number): string {
  return `${s.toFixed(s < 10 ? 2 : 1)} s`;
}

if (import.meta.main) await standalone(s3Suite);
