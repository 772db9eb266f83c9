/**
 * Smoke test of the package on Node and Bun (`deno task smoke:runtimes`
 * runs it on both): the entry files imported by relative path, as a
 * Node or Bun user of the JSR package gets them, and exercised on the
 * paths such a user takes by default.
 *
 * - the core: put, open, a range and a multipart upload on
 *   `MemoryCatalog` + `MemoryBackend`, and `Sha384Stream`;
 * - `./http`: `createHandler(store)` with default options answering a PUT,
 *   a GET and a ranged GET, called directly with `Request`s, and the
 *   `BLOBSTORE_TOKEN` default read from `process.env`;
 * - `./swift`: `SwiftBackend` under a store against the real Swift (v1
 *   auth at `SWIFT_AUTH_URL`, default the local tempauth proxy started by
 *   `bash scripts/swift.sh start`);
 * - `./s3`: `S3Backend` against Swift's S3 API (`S3_ENDPOINT`, default the
 *   local s3api proxy), which streams its puts through `node:http`;
 * - `./mongo`: loads (the `mongodb` npm package resolved from
 *   `node_modules`), nothing more.
 *
 * Prints one line per check and exits 1 when any failed. Run it with
 * `npx tsx scripts/node_smoke.ts` (Node) or `bun scripts/node_smoke.ts`;
 * under Deno it runs too, but proves nothing the tests do not.
 *
 * @module
 */

import process from "node:process";
import {
  MemoryBackend,
  MemoryCatalog,
  sha384,
  Sha384Stream,
  Store,
} from "../mod.ts";
import { hashingStats } from "../src/hashing.ts";
import { createHandler } from "../http.ts";
import { SwiftBackend, type SwiftCredentials } from "../swift.ts";
import { S3Backend, type S3Params, signRequest } from "../s3.ts";

const SWIFT: SwiftCredentials = {
  authURL: process.env.SWIFT_AUTH_URL ?? "http://127.0.0.1:8390/auth/v1.0",
  tenant: "test",
  username: "tester",
  secret: "testing",
};
const S3_ENDPOINT = process.env.S3_ENDPOINT ?? "http://127.0.0.1:8395";

const g = globalThis as {
  Deno?: { version: { deno: string } };
  Bun?: { version: string };
};
const runtime = g.Bun
  ? `bun ${g.Bun.version}`
  : g.Deno
  ? `deno ${g.Deno.version.deno}`
  : `node ${process.versions.node}`;
const run = `${runtime.split(" ")[0]}-${Date.now().toString(36)}-${
  Math.random().toString(36).slice(2, 8)
}`;

let failures = 0;

/** Runs one check and prints one line for it. */
async function check(name: string, fn: () => Promise<string | void>) {
  const t0 = Date.now();
  try {
    const detail = await fn();
    console.log(
      `ok    ${name}${detail ? ` (${detail})` : ""} ${Date.now() - t0} ms`,
    );
  } catch (err) {
    failures++;
    const text = err instanceof Error ? err.stack ?? err.message : String(err);
    console.log(`FAIL  ${name}: ${text}`);
  }
}

function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new Error(message);
}

/** `n` bytes that differ from one run's seed to the next. */
function bytes(n: number, seed: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed * 7 + (i >> 8)) & 255;
  return out;
}

async function readAll(body: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(body).arrayBuffer());
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Put, open and a range of one blob through `store`; returns the blob's hash. */
async function putOpenRange(store: Store, data: Uint8Array): Promise<string> {
  const hash = await sha384(data);
  const first = await store.put(data, hash, data.length);
  assert(first.created, "the first put did not create the blob");
  const again = await store.put(data, hash, data.length);
  assert(!again.created, "a second put created the blob again");
  const whole = await store.open(hash);
  assert(whole.size === data.length, `size ${whole.size}`);
  assert(same(await readAll(whole.body), data), "open: other bytes");
  const [start, end] = [3, data.length - 5];
  const part = await store.open(hash, { start, end });
  assert(part.size === data.length, `ranged size ${part.size}`);
  assert(
    same(await readAll(part.body), data.subarray(start, end)),
    "range: other bytes",
  );
  return hash;
}

console.log(`runtime: ${runtime}`);

if (!g.Deno) {
  await check("no Deno global", () => {
    assert(typeof Deno === "undefined", "a Deno global appeared");
    return Promise.resolve();
  });
}

await check("core: Sha384Stream", async () => {
  const hasher = new Sha384Stream();
  await readAll(new Blob(["abc"]).stream().pipeThrough(hasher));
  const digest = await hasher.digest;
  assert(digest.startsWith("cb00753f45a35e8b"), `digest ${digest}`);
  assert(hasher.bytes === 3, `bytes ${hasher.bytes}`);
});

await check("core: put, open, range (memory)", async () => {
  const store = new Store({
    catalog: new MemoryCatalog(),
    backend: new MemoryBackend(),
  });
  await putOpenRange(store, bytes(100_000, 1));
  return "100000 bytes";
});

await check("core: multipart upload (memory)", async () => {
  const store = new Store({
    catalog: new MemoryCatalog(),
    backend: new MemoryBackend(),
    minPartSize: 1024,
  });
  const parts = [bytes(4096, 2), bytes(1500, 3)];
  const whole = new Uint8Array(parts[0].length + parts[1].length);
  whole.set(parts[0]);
  whole.set(parts[1], parts[0].length);
  const id = await store.newUpload(new Date(Date.now() + 3600_000));
  const hashes: string[] = [];
  for (const [n, part] of parts.entries()) {
    hashes.push(await sha384(part));
    await store.putPart(id, n, part, part.length, 0, hashes[n]);
  }
  const { hash, index } = await store.finishUpload(
    id,
    hashes.map((hash) => ({ hash })),
  );
  assert(hash === await sha384(whole), "finish: not the whole blob's hash");
  const opened = await store.open(hash, { index });
  assert(same(await readAll(opened.body), whole), "open: other bytes");
  const across = await store.open(hash, { index, start: 4000, end: 4200 });
  assert(
    same(await readAll(across.body), whole.subarray(4000, 4200)),
    "a range across the parts: other bytes",
  );
  return `${parts.length} parts, ${whole.length} bytes`;
});

await check("core: 4 MiB puts and parts hashed on worker threads", async () => {
  const store = new Store({
    catalog: new MemoryCatalog(),
    backend: new MemoryBackend(),
    hashing: "worker",
    minPartSize: 1024,
  });
  const before = hashingStats();
  const data = bytes(4 * 1024 * 1024 + 5, 9);
  await putOpenRange(store, data);
  const id = await store.newUpload(new Date(Date.now() + 3600_000));
  const half = data.length >> 1;
  const parts = [data.subarray(0, half), data.subarray(half)];
  for (const [n, part] of parts.entries()) {
    await store.putPart(
      id,
      n,
      part,
      part.length,
      n && half,
      await sha384(part),
    );
  }
  const { hash } = await store.finishUpload(
    id,
    await Promise.all(
      parts.map(async (part) => ({ hash: await sha384(part) })),
    ),
  );
  assert(hash === await sha384(data), "finish: not the whole blob's hash");
  const after = hashingStats();
  // Where the runtime cannot start the worker, hashing stays inline: the
  // line says so (the digests above were checked either way).
  return after.unavailable === undefined
    ? `${after.worker - before.worker} jobs on workers`
    : `inline (${after.unavailable})`;
});

await check(
  "http: createHandler(store) answers PUT, GET, ranged GET",
  async () => {
    delete process.env.BLOBSTORE_TOKEN;
    const store = new Store({
      catalog: new MemoryCatalog(),
      backend: new MemoryBackend(),
    });
    const handler = createHandler(store);
    const data = bytes(10_000, 4);
    const hash = await sha384(data);
    const url = `http://localhost/blobs/${hash}`;
    const put = await handler(
      new Request(url, {
        method: "PUT",
        body: data,
        headers: { "content-length": String(data.length) },
      }),
    );
    const answer = await put.text();
    assert(put.status === 201, `PUT: ${put.status} ${answer}`);
    const get = await handler(new Request(url));
    assert(get.status === 200, `GET: ${get.status}`);
    assert(same(await readAll(get.body!), data), "GET: other bytes");
    const ranged = await handler(
      new Request(url, { headers: { range: "bytes=10-19" } }),
    );
    assert(ranged.status === 206, `ranged GET: ${ranged.status}`);
    assert(
      same(await readAll(ranged.body!), data.subarray(10, 20)),
      "ranged GET: other bytes",
    );
    return "201, 200, 206";
  },
);

await check("http: BLOBSTORE_TOKEN read from process.env", async () => {
  process.env.BLOBSTORE_TOKEN = "smoke-token";
  try {
    const store = new Store({
      catalog: new MemoryCatalog(),
      backend: new MemoryBackend(),
    });
    const handler = createHandler(store);
    const data = bytes(100, 5);
    const url = `http://localhost/blobs/${await sha384(data)}`;
    const put = (headers: Record<string, string>) =>
      handler(new Request(url, { method: "PUT", body: data, headers }));
    const refused = await put({ "content-length": "100" });
    assert(refused.status === 401, `PUT without the token: ${refused.status}`);
    await refused.body?.cancel();
    const allowed = await put({
      "content-length": "100",
      authorization: "Bearer smoke-token",
    });
    assert(allowed.status === 201, `PUT with the token: ${allowed.status}`);
    await allowed.body?.cancel();
    return "401 without it, 201 with it";
  } finally {
    delete process.env.BLOBSTORE_TOKEN;
  }
});

await check("swift: SwiftBackend put, open, range (real Swift)", async () => {
  const bucket = `blobstore-smoke-${run}`;
  const backend = new SwiftBackend({ ...SWIFT, bucket });
  const catalog = new MemoryCatalog();
  const store = new Store({ catalog, backend });
  try {
    const hash = await putOpenRange(store, bytes(200_000, 6));
    const ref = await catalog.getRef(hash);
    assert(ref, "no reference after the put");
    await backend.remove(ref.name);
  } finally {
    await dropSwiftContainers([bucket, `${bucket}_segments`]);
  }
  return SWIFT.authURL;
});

await check("s3: S3Backend put, open, range (Swift's S3 API)", async () => {
  const params: S3Params = {
    endpoint: S3_ENDPOINT,
    region: "us-east-1",
    bucket: `blobstore-smoke-${run}`,
    accessKeyId: "test:tester",
    secretAccessKey: "testing",
  };
  const backend = new S3Backend(params);
  const catalog = new MemoryCatalog();
  const store = new Store({ catalog, backend });
  try {
    const hash = await putOpenRange(store, bytes(150_000, 7));
    const ref = await catalog.getRef(hash);
    assert(ref, "no reference after the put");
    await backend.remove(ref.name);
  } finally {
    await dropS3Bucket(params);
  }
  return S3_ENDPOINT;
});

await check("mongo: ./mongo.ts loads", async () => {
  const mongo = await import("../mongo.ts");
  assert(typeof mongo.MongoCatalog === "function", "no MongoCatalog");
  assert(typeof mongo.MongoBackend === "function", "no MongoBackend");
  return "MongoCatalog, MongoBackend";
});

/** Deletes the (emptied) containers, with a v1 token of their own. */
async function dropSwiftContainers(names: string[]): Promise<void> {
  const auth = await fetch(SWIFT.authURL, {
    headers: {
      "X-Auth-User": `${SWIFT.tenant}:${SWIFT.username}`,
      "X-Auth-Key": SWIFT.secret,
    },
  });
  await auth.body?.cancel();
  const token = auth.headers.get("x-auth-token");
  const storage = auth.headers.get("x-storage-url");
  assert(auth.ok && token && storage, `Swift auth: ${auth.status}`);
  for (const name of names) {
    const res = await fetch(`${storage}/${encodeURIComponent(name)}`, {
      method: "DELETE",
      headers: { "X-Auth-Token": token },
    });
    await res.body?.cancel();
    assert(res.ok || res.status === 404, `DELETE ${name}: ${res.status}`);
  }
}

/** Deletes the (emptied) bucket. */
async function dropS3Bucket(p: S3Params): Promise<void> {
  const url = new URL(`${p.endpoint}/${p.bucket}`);
  const headers = await signRequest({
    method: "DELETE",
    url,
    region: p.region,
    credentials: {
      accessKeyId: p.accessKeyId,
      secretAccessKey: p.secretAccessKey,
    },
  });
  const res = await fetch(url, { method: "DELETE", headers });
  await res.body?.cancel();
  assert(res.ok || res.status === 404, `DELETE bucket: ${res.status}`);
}

console.log(
  failures
    ? `${runtime}: ${failures} check(s) failed`
    : `${runtime}: all checks passed`,
);
process.exit(failures ? 1 : 0);
