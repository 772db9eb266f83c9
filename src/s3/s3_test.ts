/**
 * S3Backend against a real S3 API: OpenStack Swift's s3api middleware,
 * started by `scripts/swift.sh` (run by `deno task test`) on
 * 127.0.0.1:8395. The backend and store contracts (streamed and buffered
 * puts, small parts so most blobs are multipart uploads), the wire form of
 * every PUT (Content-Length, never chunked), multipart uploads aborted on a
 * bad blob or a failing source, incomplete uploads listed and swept,
 * `DeleteObjects`, presigned GETs with ranges and expiry, and errors that
 * carry S3's code and never a secret.
 *
 * Every test works in buckets of its own, emptied and deleted at its end.
 *
 * @module
 */

import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert";
import { S3Backend } from "./backend.ts";
import { S3Error } from "./error.ts";
import { MIN_PART_SIZE, type S3Params } from "./params.ts";
import { S3Client } from "./client.ts";
import { elements, text } from "./xml.ts";
import { MemoryCatalog } from "../memory/catalog.ts";
import { HashMismatchError, NotFoundError } from "../errors.ts";
import { newBlobName } from "../names.ts";
import { Store } from "../store.ts";
import { testBackendContract } from "../../tests/backend_contract.ts";
import { testStoreContract } from "../../tests/store_contract.ts";
import {
  bytesOf,
  chunkedStream,
  collect,
  failingStream,
  hashOf,
  readAll,
} from "../../tests/helpers.ts";
import {
  S3_ACCESS_KEY,
  S3_ENDPOINT,
  S3_REGION,
  S3_SECRET_KEY,
  s3Available,
} from "../../tests/services.ts";

const ok3 = await s3Available();
const run = crypto.randomUUID().slice(0, 8);
let buckets = 0;

function params(extra: Partial<S3Params> = {}): S3Params {
  return {
    endpoint: S3_ENDPOINT,
    region: S3_REGION,
    bucket: `blobstore-s3-${run}-${buckets++}`,
    accessKeyId: S3_ACCESS_KEY,
    secretAccessKey: S3_SECRET_KEY,
    partSize: MIN_PART_SIZE,
    retryDelayMs: 10,
    ...extra,
  };
}

/** Empties and deletes the bucket of `p`, incomplete uploads included. */
async function dropBucket(p: S3Params): Promise<void> {
  const backend = new S3Backend(p);
  const names = new Set<string>();
  for await (const object of backend.list()) names.add(object.name);
  for (const name of names) await backend.remove(name);
  const client = new S3Client(p);
  const res = await client.send("DELETE bucket", { method: "DELETE" });
  await res.body?.cancel();
}

function fixture(extra: Partial<S3Params> = {}) {
  return () => {
    const p = params(extra);
    return Promise.resolve({
      backend: new S3Backend(p),
      catalog: new MemoryCatalog(),
      close: () => dropBucket(p),
    });
  };
}

for (const upload of ["stream", "buffer"] as const) {
  Deno.test({
    name: `S3Backend (${upload}): backend contract`,
    ignore: !ok3,
    async fn(t) {
      await testBackendContract(t, fixture({ upload }));
    },
  });
}

Deno.test({
  name: "MemoryCatalog + S3Backend: store contract",
  ignore: !ok3,
  async fn(t) {
    await testStoreContract(t, fixture(), { largeSize: 12 * 1024 * 1024 });
  },
});

/** A loopback relay to the S3 endpoint that records each request's head. */
function relay(): { url: string; heads: string[]; close(): void } {
  const target = new URL(S3_ENDPOINT);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const heads: string[] = [];
  const conns: Deno.Conn[] = [];
  (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      (async () => {
        const upstream = await Deno.connect({
          hostname: target.hostname,
          port: Number(target.port),
        });
        conns.push(upstream);
        const recorder = new RequestHeads(heads);
        const toUpstream = conn.readable.pipeThrough(
          new TransformStream({
            transform(chunk, controller) {
              recorder.feed(chunk);
              controller.enqueue(chunk);
            },
          }),
        ).pipeTo(upstream.writable);
        await Promise.allSettled([
          toUpstream,
          upstream.readable.pipeTo(conn.writable),
        ]);
      })().catch(() => {});
    }
  })().catch(() => {});
  const { port } = listener.addr as Deno.NetAddr;
  return {
    url: `http://127.0.0.1:${port}`,
    heads,
    close() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch { /* closed already */ }
      }
    },
  };
}

/** Splits a client's byte stream into request heads, skipping bodies. */
class RequestHeads {
  #buffer = "";
  #skip = 0;
  #chunked = false;
  constructor(readonly heads: string[]) {}
  feed(chunk: Uint8Array): void {
    let bytes = chunk;
    if (this.#skip > 0) {
      const n = Math.min(this.#skip, bytes.length);
      this.#skip -= n;
      bytes = bytes.subarray(n);
    }
    if (this.#chunked || bytes.length === 0) return;
    this.#buffer += new TextDecoder("latin1").decode(bytes);
    for (;;) {
      const end = this.#buffer.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = this.#buffer.slice(0, end);
      this.heads.push(head);
      const rest = this.#buffer.slice(end + 4);
      this.#buffer = "";
      const length = Number(
        /\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0,
      );
      if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
        this.#chunked = true; // recorded; a failure for the test to see
        return;
      }
      if (rest.length >= length) {
        this.#buffer = rest.slice(length);
      } else {
        this.#skip = length - rest.length;
        return;
      }
    }
  }
}

Deno.test({
  name:
    "S3Backend: every PUT carries Content-Length, never chunked, single and multipart",
  ignore: !ok3,
  async fn() {
    const wire = relay();
    const p = params({ endpoint: wire.url });
    const backend = new S3Backend(p);
    try {
      for (const size of [0, 1000, 2 * MIN_PART_SIZE + 123]) {
        const bytes = bytesOf(size, size);
        const name = newBlobName(hashOf(bytes));
        await backend.put(
          name,
          chunkedStream(bytes, 65536),
          size,
          hashOf(bytes),
        );
        deepStrictEqual(await readAll((await backend.get(name)).body), bytes);
      }
      const puts = wire.heads.filter((h) => /^PUT /.test(h));
      ok(puts.length >= 5, `expected the puts on the wire, got ${puts.length}`);
      for (const head of puts) {
        ok(
          /\r\ncontent-length: \d+/i.test(head),
          `no Content-Length:\n${head}`,
        );
        ok(!/transfer-encoding/i.test(head), `chunked:\n${head}`);
      }
      ok(puts.some((h) => /partNumber=3/.test(h)), "a three-part upload");
    } finally {
      wire.close();
      await dropBucket({ ...p, endpoint: S3_ENDPOINT });
    }
  },
});

Deno.test({
  name:
    "S3Backend: a multipart put that fails verification or whose source fails is aborted, nothing left",
  ignore: !ok3,
  async fn() {
    const p = params();
    const backend = new S3Backend(p);
    try {
      const bytes = bytesOf(2 * MIN_PART_SIZE + 7, 31);
      const name = newBlobName(hashOf(bytes));
      await rejects(
        backend.put(
          name,
          chunkedStream(bytes, 65536),
          bytes.length,
          hashOf("other"),
        ),
        HashMismatchError,
      );
      const failure = new Error("client went away");
      await rejects(
        backend.put(
          name,
          failingStream(bytes, MIN_PART_SIZE + 10, failure),
          bytes.length,
          hashOf(bytes),
        ),
        (err) => err === failure,
      );
      deepStrictEqual(
        await collect(backend.list()),
        [],
        "no object, no upload",
      );
      await rejects(backend.get(name), NotFoundError);
    } finally {
      await dropBucket(p);
    }
  },
});

Deno.test({
  name:
    "S3Backend: an upload left incomplete by a killed put is listed, and swept past the grace period only",
  ignore: !ok3,
  async fn() {
    const p = params();
    const backend = new S3Backend(p);
    const client = new S3Client(p);
    try {
      const kept = bytesOf(100, 1);
      const store = new Store({ catalog: new MemoryCatalog(), backend });
      await store.put(kept, hashOf(kept), kept.length);
      // A put killed after its first part: the upload was never completed.
      const name = newBlobName(hashOf("killed"));
      const created = await client.send("create", {
        method: "POST",
        key: name,
        query: { uploads: "" },
      });
      const uploadId = text(await created.text(), "UploadId")!;
      const part = await client.send("part", {
        method: "PUT",
        key: name,
        query: { partNumber: "1", uploadId },
        body: bytesOf(MIN_PART_SIZE, 2),
      });
      ok(part.ok, `part: HTTP ${part.status}`);
      await part.body?.cancel();
      const listed = await collect(backend.list());
      ok(listed.some((o) => o.name === name && o.size === 0), "listed");
      strictEqual(
        (await store.sweepOrphans({ olderThan: 3600_000 })).removed,
        0,
      );
      // s3api rounds an upload's Initiated time up to the next second.
      await new Promise((r) => setTimeout(r, 1100));
      strictEqual((await store.sweepOrphans({ olderThan: 0 })).removed, 1);
      const uploads = await client.send("list uploads", {
        method: "GET",
        query: { uploads: "" },
      });
      deepStrictEqual(elements(await uploads.text(), "Upload"), []);
      deepStrictEqual(
        await readAll((await store.open(hashOf(kept))).body),
        kept,
        "the referenced blob stays",
      );
    } finally {
      await dropBucket(p);
    }
  },
});

Deno.test({
  name:
    "S3Backend: removeMany deletes in batches of 1,000 with DeleteObjects; absent names are no error",
  ignore: !ok3,
  async fn() {
    const p = params();
    const backend = new S3Backend(p);
    const client = new S3Client(p);
    try {
      const names = Array.from({ length: 1005 }, (_, i) => `obj-${i}`);
      deepStrictEqual(await collect(backend.list()), [], "creates the bucket");
      // Empty objects, put straight through the client to be quick.
      for (let i = 0; i < names.length; i += 50) {
        await Promise.all(
          names.slice(i, i + 50).map(async (name) => {
            const res = await client.send("put", {
              method: "PUT",
              key: name,
              body: new Uint8Array(),
            });
            await res.body?.cancel();
            ok(res.ok);
          }),
        );
      }
      strictEqual((await collect(backend.list())).length, names.length);
      await backend.removeMany([...names, "never-there"]);
      deepStrictEqual(await collect(backend.list()), []);
    } finally {
      await dropBucket(p);
    }
  },
});

Deno.test({
  name:
    "S3Backend: presigned GET URLs serve the bytes and ranges without credentials, until they expire",
  ignore: !ok3,
  async fn() {
    const p = params();
    const backend = new S3Backend(p);
    try {
      const bytes = bytesOf(10_000, 5);
      const name = newBlobName(hashOf(bytes));
      await backend.put(
        name,
        chunkedStream(bytes, 4096),
        bytes.length,
        hashOf(bytes),
      );
      const url = await backend.presignGet(name, { expiresIn: 300 });
      ok(!url.includes(S3_SECRET_KEY), "no secret in the URL");
      const whole = await fetch(url);
      strictEqual(whole.status, 200);
      deepStrictEqual(new Uint8Array(await whole.arrayBuffer()), bytes);
      const part = await fetch(url, { headers: { range: "bytes=100-199" } });
      strictEqual(part.status, 206);
      deepStrictEqual(
        new Uint8Array(await part.arrayBuffer()),
        bytes.slice(100, 200),
      );
      // Signed for one range: that range works, another is refused.
      const ranged = await backend.presignGet(name, {
        expiresIn: 300,
        range: "bytes=0-9",
      });
      const good = await fetch(ranged, { headers: { range: "bytes=0-9" } });
      strictEqual(good.status, 206);
      deepStrictEqual(
        new Uint8Array(await good.arrayBuffer()),
        bytes.slice(0, 10),
      );
      const bad = await fetch(ranged, { headers: { range: "bytes=0-99" } });
      strictEqual(bad.status, 403);
      await bad.body?.cancel();
      const brief = await backend.presignGet(name, { expiresIn: 1 });
      await new Promise((r) => setTimeout(r, 2100));
      const expired = await fetch(brief);
      strictEqual(expired.status, 403, "an expired URL is refused");
      ok((await expired.text()).includes("expired"));
    } finally {
      await dropBucket(p);
    }
  },
});

Deno.test({
  name:
    "S3Backend: failures are S3Errors with S3's code and request id, never a secret",
  ignore: !ok3,
  async fn() {
    const p = params();
    const backend = new S3Backend(p);
    try {
      await rejects(backend.get("absent"), NotFoundError);
      const wrong = new S3Backend({
        ...p,
        secretAccessKey: "not-the-secret-9",
      });
      const err = await backend.list()[Symbol.asyncIterator]().next().then(
        () => wrong.get("absent"),
      ).catch((e) => e);
      ok(err instanceof S3Error, `expected an S3Error, got ${err}`);
      strictEqual(err.status, 403);
      strictEqual(err.code, "SignatureDoesNotMatch");
      ok(!err.message.includes("not-the-secret-9"), err.message);
      const refused = await fetch(S3_ENDPOINT, { method: "HEAD" }).catch(() =>
        undefined
      );
      await refused?.body?.cancel();
      const down = new S3Backend({
        ...p,
        endpoint: "http://127.0.0.1:1",
        retries: 0,
      });
      const offline = await down.get("x").catch((e) => e);
      ok(offline instanceof S3Error && offline.status === 0, String(offline));
      const huge = await backend.put(
        "huge",
        new ReadableStream(),
        MIN_PART_SIZE * 10_001,
        hashOf("huge"),
      ).catch((e) => e);
      ok(
        huge instanceof S3Error &&
          /10000 parts|S3 allows 10000/.test(huge.message),
        String(huge),
      );
    } finally {
      await dropBucket(p);
    }
  },
});
