/**
 * The HTTP service end to end: a real `Deno.serve` on a loopback port,
 * driven by `fetch` and by a raw HTTP/1.1 client for streamed bodies with
 * a `Content-Length` and for clients that hang up halfway.
 */

import assert from "node:assert";
import { createHash } from "node:crypto";
import { join } from "node:path";
import {
  type Backend,
  type Catalog,
  CorruptBlobError,
  MemoryBackend,
  MemoryCatalog,
  Refs,
  RetryableError,
  sha384,
  Store,
} from "../mod.ts";
import { FileBackend } from "../fs.ts";
import { bearerToken, createHandler, type HandlerOptions } from "../http.ts";
import { KvCatalog } from "../kv.ts";
import { errorResponse } from "../src/http/errors.ts";
import { openSeams } from "../src/server/config.ts";
import { type RawRequest, rawRequest } from "./raw_http.ts";

const MiB = 1024 * 1024;
const encoder = new TextEncoder();

interface Server {
  port: number;
  base: string;
  store: Store;
  backend: TrackingBackend;
  errors: unknown[];
  close(): Promise<void>;
}

/** A backend that remembers every put, so tests can wait for them to settle. */
class TrackingBackend implements Backend {
  puts: Promise<unknown>[] = [];
  constructor(readonly inner: Backend) {}
  get: Backend["get"] = (name, range) => this.inner.get(name, range);
  put: Backend["put"] = (name, body, size, hash) => {
    const put = this.inner.put(name, body, size, hash);
    this.puts.push(put.catch(() => {}));
    return put;
  };
  remove: Backend["remove"] = (name) => this.inner.remove(name);
  async names(): Promise<string[]> {
    const names = [];
    for await (const { name } of this.inner.list!()) names.push(name);
    return names;
  }
  async settled(): Promise<void> {
    for (let seen = -1; seen !== this.puts.length;) {
      seen = this.puts.length;
      await Promise.all(this.puts);
    }
  }
}

function startServer(
  options: HandlerOptions = {},
  storeOptions: {
    minPartSize?: number;
    backend?: Backend;
    catalog?: Catalog;
  } = {},
): Server {
  const backend = new TrackingBackend(
    storeOptions.backend ?? new MemoryBackend(),
  );
  const store = new Store({
    catalog: storeOptions.catalog ?? new MemoryCatalog(),
    backend,
    minPartSize: storeOptions.minPartSize ?? 1024,
  });
  const errors: unknown[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    createHandler(store, {
      authorize: false,
      onError: (err) => errors.push(err),
      ...options,
    }),
  );
  const port = server.addr.port;
  return {
    port,
    base: `http://127.0.0.1:${port}`,
    store,
    backend,
    errors,
    close: () => server.shutdown(),
  };
}

function bytesOf(size: number, seed = 1): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + seed * 7) & 0xff;
  return bytes;
}

/** PUT with a Content-Length, the way curl -T does it. */
function put(
  server: Server,
  path: string,
  body: Uint8Array,
  extra: Partial<RawRequest> = {},
) {
  return rawRequest(server.port, {
    method: "PUT",
    path,
    body: [body],
    ...extra,
    headers: { "content-length": String(body.length), ...extra.headers },
  }).then((res) => res!);
}

async function expectError(res: Response, status: number, code: string) {
  assert.strictEqual(res.status, status, `expected ${status}`);
  assert.match(res.headers.get("content-type") ?? "", /application\/json/);
  const body = await res.json();
  assert.strictEqual(body.error, code);
  assert.strictEqual(typeof body.message, "string");
  assert.doesNotMatch(body.message, /\n\s+at /, "no stack trace");
  return body;
}

function reprDigest(hash: string): string {
  return `sha-384=:${Buffer.from(hash, "hex").toString("base64")}:`;
}

Deno.test("http: single blobs", async (t) => {
  const server = startServer();
  const content = bytesOf(10_000);
  const hash = await sha384(content);
  const url = `${server.base}/blobs/${hash}`;
  try {
    await t.step("GET / says what it is", async () => {
      const res = await fetch(`${server.base}/`);
      assert.deepStrictEqual(await res.json(), { service: "blobstore" });
    });

    await t.step("PUT a new blob: 201 with Location and ETag", async () => {
      const res = await put(server, `/blobs/${hash}`, content);
      assert.strictEqual(res.status, 201);
      assert.strictEqual(res.headers.get("location"), `/blobs/${hash}`);
      assert.strictEqual(res.headers.get("etag"), `"${hash}"`);
      assert.deepStrictEqual(res.json(), { hash, size: content.length });
    });

    await t.step("PUT it again: 200", async () => {
      const res = await put(server, `/blobs/${hash}`, content);
      assert.strictEqual(res.status, 200);
      assert.strictEqual((await server.backend.names()).length, 1);
    });

    await t.step("PUT with an implausible hash: 400", async () => {
      for (const bad of ["abc", hash.toUpperCase(), `${hash}00`]) {
        const res = await put(server, `/blobs/${bad}`, content);
        assert.strictEqual(res.status, 400);
        assert.strictEqual(
          (res.json() as { error: string }).error,
          "bad_params",
        );
      }
    });

    await t.step("PUT without Content-Length (chunked): 411", async () => {
      const res = await fetch(url, {
        method: "PUT",
        body: ReadableStream.from([content]),
      });
      await expectError(res, 411, "length_required");
    });

    await t.step(
      "PUT above the maximum: 413, before any byte is read",
      async () => {
        const small = startServer({ maxBodySize: 1000 });
        try {
          const res = await put(small, `/blobs/${hash}`, content);
          assert.strictEqual(res.status, 413);
          assert.strictEqual(
            (res.json() as { error: string }).error,
            "too_large",
          );
          assert.strictEqual(small.backend.puts.length, 0);
        } finally {
          await small.close();
        }
      },
    );

    await t.step(
      "PUT content that does not match its hash: 422, nothing stored",
      async () => {
        const other = bytesOf(10_000, 2);
        const otherHash = await sha384(other);
        const res = await put(server, `/blobs/${otherHash}`, content);
        assert.strictEqual(res.status, 422);
        assert.strictEqual(
          (res.json() as { error: string }).error,
          "hash_mismatch",
        );
        await server.backend.settled();
        assert.strictEqual((await server.backend.names()).length, 1);
        assert.strictEqual(
          (await fetch(`${server.base}/blobs/${otherHash}`)).status,
          404,
        );
      },
    );

    await t.step("PUT an existing hash with other content: 422", async () => {
      const res = await put(server, `/blobs/${hash}`, bytesOf(10_000, 3));
      assert.strictEqual(res.status, 422);
    });

    await t.step("GET streams it with every header", async () => {
      const res = await fetch(url);
      assert.strictEqual(res.status, 200);
      assert.strictEqual(res.headers.get("content-length"), "10000");
      assert.strictEqual(
        res.headers.get("content-type"),
        "application/octet-stream",
      );
      assert.strictEqual(res.headers.get("etag"), `"${hash}"`);
      assert.strictEqual(res.headers.get("accept-ranges"), "bytes");
      assert.strictEqual(
        res.headers.get("cache-control"),
        "public, max-age=31536000, immutable",
      );
      assert.strictEqual(res.headers.get("repr-digest"), reprDigest(hash));
      assert.deepStrictEqual(new Uint8Array(await res.arrayBuffer()), content);
    });

    await t.step("HEAD: the same headers, no body", async () => {
      const res = await rawRequest(server.port, {
        method: "HEAD",
        path: `/blobs/${hash}`,
      });
      assert.strictEqual(res!.status, 200);
      assert.strictEqual(res!.headers.get("content-length"), "10000");
      assert.strictEqual(res!.headers.get("etag"), `"${hash}"`);
      assert.strictEqual(res!.headers.get("repr-digest"), reprDigest(hash));
      assert.strictEqual(res!.body.length, 0);
    });

    await t.step("GET and HEAD of an absent blob: 404", async () => {
      const absent = `${server.base}/blobs/${"0".repeat(96)}`;
      await expectError(await fetch(absent), 404, "not_found");
      assert.strictEqual((await fetch(absent, { method: "HEAD" })).status, 404);
      await expectError(
        await fetch(`${server.base}/blobs/xyz`),
        400,
        "bad_params",
      );
    });

    await t.step(
      "If-None-Match: 304 with the validators, no body",
      async () => {
        for (const tag of [`"${hash}"`, `W/"${hash}"`, `"x", "${hash}"`, "*"]) {
          const res = await fetch(url, { headers: { "if-none-match": tag } });
          assert.strictEqual(res.status, 304, tag);
          assert.strictEqual(res.headers.get("etag"), `"${hash}"`);
          assert.strictEqual(await res.text(), "");
        }
        const miss = await fetch(url, {
          headers: { "if-none-match": '"other"' },
        });
        assert.strictEqual(miss.status, 200);
        await miss.body?.cancel();
        const absent = await fetch(`${server.base}/blobs/${"1".repeat(96)}`, {
          headers: { "if-none-match": "*" },
        });
        await expectError(absent, 404, "not_found");
      },
    );

    await t.step("Range: 206 with Content-Range", async () => {
      const cases: [string, number, number][] = [
        ["bytes=0-0", 0, 1],
        ["bytes=100-199", 100, 200],
        ["bytes=9000-", 9000, 10_000],
        ["bytes=-10", 9990, 10_000],
        ["bytes=9990-20000", 9990, 10_000],
        ["bytes=-20000", 0, 10_000],
      ];
      for (const [range, start, end] of cases) {
        const res = await fetch(url, { headers: { range } });
        assert.strictEqual(res.status, 206, range);
        assert.strictEqual(
          res.headers.get("content-range"),
          `bytes ${start}-${end - 1}/10000`,
        );
        assert.strictEqual(
          res.headers.get("content-length"),
          String(end - start),
        );
        assert.strictEqual(res.headers.get("etag"), `"${hash}"`);
        assert.deepStrictEqual(
          new Uint8Array(await res.arrayBuffer()),
          content.subarray(start, end),
          range,
        );
      }
    });

    await t.step("Range: 416 when unsatisfiable", async () => {
      for (const range of ["bytes=10000-", "bytes=20000-30000", "bytes=-0"]) {
        const res = await fetch(url, { headers: { range } });
        await expectError(res, 416, "range_not_satisfiable");
        assert.strictEqual(res.headers.get("content-range"), "bytes */10000");
      }
    });

    await t.step(
      "Range: ignored when several, malformed, or If-Range fails",
      async () => {
        const ignored: Record<string, string>[] = [
          { range: "bytes=0-1,5-6" },
          { range: "bytes=5-1" },
          { range: "items=0-1" },
          { range: "bytes=0-1", "if-range": '"other"' },
          { range: "bytes=0-1", "if-range": "Wed, 21 Oct 2015 07:28:00 GMT" },
        ];
        for (const headers of ignored) {
          const res = await fetch(url, { headers });
          assert.strictEqual(res.status, 200, JSON.stringify(headers));
          assert.strictEqual((await res.arrayBuffer()).byteLength, 10_000);
        }
        const honoured = await fetch(url, {
          headers: { range: "bytes=0-1", "if-range": `"${hash}"` },
        });
        assert.strictEqual(honoured.status, 206);
        await honoured.body?.cancel();
      },
    );

    await t.step("the empty blob", async () => {
      const empty = await sha384(new Uint8Array(0));
      assert.strictEqual(
        (await put(server, `/blobs/${empty}`, new Uint8Array(0))).status,
        201,
      );
      const res = await fetch(`${server.base}/blobs/${empty}`);
      assert.strictEqual(res.status, 200);
      assert.strictEqual(res.headers.get("content-length"), "0");
      assert.strictEqual(await res.text(), "");
      const range = await fetch(`${server.base}/blobs/${empty}`, {
        headers: { range: "bytes=0-" },
      });
      await expectError(range, 416, "range_not_satisfiable");
    });

    await t.step(
      "unknown routes: 404; wrong methods: 405 with Allow",
      async () => {
        await expectError(
          await fetch(`${server.base}/nothing/here`),
          404,
          "not_found",
        );
        const res = await fetch(url, { method: "DELETE" });
        await expectError(res, 405, "method_not_allowed");
        assert.strictEqual(res.headers.get("allow"), "GET, HEAD, PUT");
        const uploads = await fetch(`${server.base}/uploads`);
        await expectError(uploads, 405, "method_not_allowed");
        assert.strictEqual(uploads.headers.get("allow"), "POST");
      },
    );
    assert.deepStrictEqual(server.errors, []);
  } finally {
    await server.close();
  }
});

Deno.test("http: multipart uploads", async (t) => {
  const server = startServer({}, { minPartSize: 4096 });
  const sizes = [4096, 5000, 1234];
  const parts = sizes.map((size, i) => bytesOf(size, i + 10));
  const whole = new Uint8Array(sizes.reduce((a, b) => a + b));
  parts.reduce(
    (offset, part) => (whole.set(part, offset), offset + part.length),
    0,
  );
  const wholeHash = await sha384(whole);
  const partHashes = await Promise.all(parts.map((p) => sha384(p)));
  let id = "";
  const offsets = [0, 4096, 9096];
  try {
    await t.step("POST /uploads: 201 with the id and expiry", async () => {
      const res = await fetch(`${server.base}/uploads`, { method: "POST" });
      assert.strictEqual(res.status, 201);
      const body = await res.json();
      id = body.id;
      assert.strictEqual(res.headers.get("location"), `/uploads/${id}`);
      const expires = new Date(body.expires).getTime() - Date.now();
      assert(expires > 23 * 3600_000 && expires <= 24 * 3600_000);
    });

    await t.step("POST /uploads with an expiry", async () => {
      const expires = new Date(Date.now() + 3600_000).toISOString();
      const res = await fetch(`${server.base}/uploads`, {
        method: "POST",
        body: JSON.stringify({ expires }),
      });
      assert.strictEqual(res.status, 201);
      assert.strictEqual((await res.json()).expires, expires);
      for (
        const bad of [
          { expires: "soon" },
          { expires: "2000-01-01T00:00:00Z" },
          [1],
          "x",
        ]
      ) {
        const res = await fetch(`${server.base}/uploads`, {
          method: "POST",
          body: JSON.stringify(bad),
        });
        await expectError(res, 400, "bad_params");
      }
      const notJson = await fetch(`${server.base}/uploads`, {
        method: "POST",
        body: "{",
      });
      await expectError(notJson, 400, "bad_json");
    });

    await t.step(
      "PUT parts out of order: 200 with the part's record",
      async () => {
        for (const i of [2, 0, 1]) {
          const res = await put(
            server,
            `/uploads/${id}/parts/${i}?hash=${partHashes[i]}&offset=${
              offsets[i]
            }`,
            parts[i],
          );
          assert.strictEqual(res.status, 200, `part ${i}`);
          assert.deepStrictEqual(res.json(), {
            part: i,
            hash: partHashes[i],
            size: sizes[i],
            offset: offsets[i],
            complete: true,
          });
        }
      },
    );

    await t.step("PUT the same part again: 200, a no-op", async () => {
      const res = await put(
        server,
        `/uploads/${id}/parts/0?hash=${partHashes[0]}`,
        parts[0],
      );
      assert.strictEqual(res.status, 200);
    });

    await t.step("part errors: 400, 404, 409, 411", async () => {
      const status = async (path: string, body: Uint8Array) => {
        const res = await put(server, path, body);
        return [res.status, (res.json() as { error: string }).error];
      };
      const otherPart0 = bytesOf(4096, 99);
      assert.deepStrictEqual(
        await status(
          `/uploads/${id}/parts/0?hash=${await sha384(otherPart0)}`,
          otherPart0,
        ),
        [409, "conflict"],
      );
      assert.deepStrictEqual(
        await status(`/uploads/${id}/parts/0`, parts[0]),
        [400, "bad_params"],
      );
      assert.deepStrictEqual(
        await status(`/uploads/${id}/parts/x?hash=${partHashes[0]}`, parts[0]),
        [400, "bad_params"],
      );
      assert.deepStrictEqual(
        await status(
          `/uploads/${id}/parts/0?hash=${partHashes[0]}&offset=-1`,
          parts[0],
        ),
        [400, "bad_params"],
      );
      // Part 2 is short, so no part may follow it.
      assert.deepStrictEqual(
        await status(
          `/uploads/${id}/parts/3?hash=${partHashes[0]}&offset=10330`,
          parts[0],
        ),
        [400, "bad_params"],
      );
      assert.deepStrictEqual(
        await status(`/uploads/nope/parts/0?hash=${partHashes[0]}`, parts[0]),
        [404, "not_found"],
      );
      const chunked = await fetch(
        `${server.base}/uploads/${id}/parts/3?hash=${partHashes[0]}`,
        { method: "PUT", body: ReadableStream.from([parts[0]]) },
      );
      await expectError(chunked, 411, "length_required");
    });

    await t.step("GET /uploads/{id}: the upload as JSON", async () => {
      const res = await fetch(`${server.base}/uploads/${id}`);
      assert.strictEqual(res.status, 200);
      const body = await res.json();
      assert.strictEqual(body.id, id);
      assert.strictEqual(typeof body.expires, "string");
      assert.deepStrictEqual(
        body.parts,
        sizes.map((size, i) => ({
          hash: partHashes[i],
          size,
          offset: offsets[i],
          complete: true,
        })),
      );
      await expectError(
        await fetch(`${server.base}/uploads/nope`),
        404,
        "not_found",
      );
    });

    await t.step(
      "a part that does not match its hash: 422, left incomplete",
      async () => {
        const other =
          (await (await fetch(`${server.base}/uploads`, { method: "POST" }))
            .json()).id;
        const res = await put(
          server,
          `/uploads/${other}/parts/0?hash=${partHashes[1]}`,
          parts[0],
        );
        assert.strictEqual(res.status, 422);
        assert.strictEqual(
          (res.json() as { error: string }).error,
          "hash_mismatch",
        );
        const info = await (await fetch(`${server.base}/uploads/${other}`))
          .json();
        assert.strictEqual(info.parts[0].complete, false);

        const finish = (body: string) =>
          fetch(`${server.base}/uploads/${other}/finish`, {
            method: "POST",
            body,
          });
        await expectError(await finish("{}"), 400, "bad_params");
        await expectError(await finish("nope"), 400, "bad_json");
        const two = JSON.stringify({
          parts: partHashes.slice(0, 2).map((hash) => ({ hash })),
        });
        await expectError(await finish(two), 400, "bad_params"); // one part declared
        const one = JSON.stringify({ parts: [{ hash: partHashes[1] }] });
        await expectError(await finish(one), 409, "conflict"); // part 0 incomplete
        await expectError(
          await fetch(`${server.base}/uploads/nope/finish`, {
            method: "POST",
            body: one,
          }),
          404,
          "not_found",
        );

        const deleted = await fetch(`${server.base}/uploads/${other}`, {
          method: "DELETE",
        });
        assert.strictEqual(deleted.status, 204);
        await expectError(
          await fetch(`${server.base}/uploads/${other}`),
          404,
          "not_found",
        );
        const again = await fetch(`${server.base}/uploads/${other}`, {
          method: "DELETE",
        });
        assert.strictEqual(again.status, 204);
      },
    );

    await t.step("POST finish: the whole hash, size and index", async () => {
      const body = JSON.stringify({
        parts: partHashes.map((hash) => ({ hash })),
      });
      const res = await fetch(`${server.base}/uploads/${id}/finish`, {
        method: "POST",
        body,
      });
      assert.strictEqual(res.status, 200);
      assert.strictEqual(res.headers.get("location"), `/blobs/${wholeHash}`);
      const expected = {
        hash: wholeHash,
        size: whole.length,
        index: { sizes, hashes: partHashes },
      };
      assert.deepStrictEqual(await res.json(), expected);
      const again = await fetch(`${server.base}/uploads/${id}/finish`, {
        method: "POST",
        body,
      });
      assert.deepStrictEqual(await again.json(), expected);
      const info = await (await fetch(`${server.base}/uploads/${id}`)).json();
      assert.strictEqual(info.hash, wholeHash);
      assert.strictEqual(info.owner, "blobstore-http");
    });

    await t.step("GET the multipart blob by its hash", async () => {
      const res = await fetch(`${server.base}/blobs/${wholeHash}`);
      assert.strictEqual(res.status, 200);
      assert.strictEqual(
        res.headers.get("content-length"),
        String(whole.length),
      );
      assert.strictEqual(res.headers.get("repr-digest"), reprDigest(wholeHash));
      assert.deepStrictEqual(new Uint8Array(await res.arrayBuffer()), whole);
      const head = await fetch(`${server.base}/blobs/${wholeHash}`, {
        method: "HEAD",
      });
      assert.strictEqual(
        head.headers.get("content-length"),
        String(whole.length),
      );
    });

    await t.step("ranges across part boundaries", async () => {
      const total = whole.length;
      const cases: [string, number, number][] = [
        ["bytes=4000-4200", 4000, 4201], // parts 0 and 1
        ["bytes=4000-9500", 4000, 9501], // all three
        ["bytes=4096-9095", 4096, 9096], // exactly part 1
        ["bytes=9095-9096", 9095, 9097], // the last byte of 1, the first of 2
        ["bytes=-1500", total - 1500, total], // suffix over 1 and 2
        ["bytes=5000-", 5000, total],
      ];
      for (const [range, start, end] of cases) {
        const res = await fetch(`${server.base}/blobs/${wholeHash}`, {
          headers: { range },
        });
        assert.strictEqual(res.status, 206, range);
        assert.strictEqual(
          res.headers.get("content-range"),
          `bytes ${start}-${end - 1}/${total}`,
        );
        assert.deepStrictEqual(
          new Uint8Array(await res.arrayBuffer()),
          whole.subarray(start, end),
          range,
        );
      }
      const res = await fetch(`${server.base}/blobs/${wholeHash}`, {
        headers: { range: `bytes=${total}-` },
      });
      await expectError(res, 416, "range_not_satisfiable");
      const cached = await fetch(`${server.base}/blobs/${wholeHash}`, {
        headers: { "if-none-match": `"${wholeHash}"` },
      });
      assert.strictEqual(cached.status, 304);
    });

    await t.step("DELETE a finished upload: 409, the blob stays", async () => {
      const res = await fetch(`${server.base}/uploads/${id}`, {
        method: "DELETE",
      });
      await expectError(res, 409, "conflict");
    });

    await t.step(
      "GC and upload expiry keep the parts of a served blob",
      async () => {
        await server.store.removeExpiredUploads(
          new Date(Date.now() + 365 * 86_400_000),
        );
        await server.store.gc(new Refs(), new Date(Date.now() + 1000));
        const res = await fetch(`${server.base}/blobs/${wholeHash}`);
        assert.deepStrictEqual(new Uint8Array(await res.arrayBuffer()), whole);
      },
    );
    assert.deepStrictEqual(server.errors, []);
  } finally {
    await server.close();
  }
});

Deno.test("http: a one-part upload and an empty upload are served too", async () => {
  const server = startServer();
  try {
    for (const parts of [[bytesOf(3000)], []]) {
      const id =
        (await (await fetch(`${server.base}/uploads`, { method: "POST" }))
          .json()).id;
      const hashes = await Promise.all(parts.map((p) => sha384(p)));
      for (let i = 0; i < parts.length; i++) {
        assert.strictEqual(
          (await put(
            server,
            `/uploads/${id}/parts/${i}?hash=${hashes[i]}`,
            parts[i],
          )).status,
          200,
        );
      }
      const res = await fetch(`${server.base}/uploads/${id}/finish`, {
        method: "POST",
        body: JSON.stringify({ parts: hashes.map((hash) => ({ hash })) }),
      });
      const { hash, size } = await res.json();
      assert.strictEqual(size, parts[0]?.length ?? 0);
      const blob = await fetch(`${server.base}/blobs/${hash}`);
      assert.strictEqual(blob.status, 200);
      assert.strictEqual((await blob.arrayBuffer()).byteLength, size);
    }
  } finally {
    await server.close();
  }
});

Deno.test("http: authorization", async (t) => {
  const content = encoder.encode("secret stuff");
  const hash = await sha384(content);
  await t.step("writes need the token; reads do not by default", async () => {
    const server = startServer({ authorize: bearerToken("s3cret") });
    try {
      const denied = await put(server, `/blobs/${hash}`, content);
      assert.strictEqual(denied.status, 401);
      assert.strictEqual(
        denied.headers.get("www-authenticate"),
        'Bearer realm="blobstore"',
      );
      assert.strictEqual(
        (denied.json() as { error: string }).error,
        "unauthorized",
      );
      const wrong = await put(server, `/blobs/${hash}`, content, {
        headers: { authorization: "Bearer nope" },
      });
      assert.strictEqual(wrong.status, 401);
      const ok = await put(server, `/blobs/${hash}`, content, {
        headers: { authorization: "Bearer s3cret" },
      });
      assert.strictEqual(ok.status, 201);
      assert.strictEqual(
        (await fetch(`${server.base}/blobs/${hash}`)).status,
        200,
      );
      const upload = await fetch(`${server.base}/uploads`, { method: "POST" });
      await expectError(upload, 401, "unauthorized");
    } finally {
      await server.close();
    }
  });

  await t.step(
    "authorizeReads guards reads too, and caching turns private",
    async () => {
      const server = startServer({
        authorize: bearerToken("s3cret"),
        authorizeReads: true,
      });
      try {
        await put(server, `/blobs/${hash}`, content, {
          headers: { authorization: "Bearer s3cret" },
        });
        await expectError(
          await fetch(`${server.base}/blobs/${hash}`),
          401,
          "unauthorized",
        );
        const res = await fetch(`${server.base}/blobs/${hash}`, {
          headers: { authorization: "Bearer s3cret" },
        });
        assert.strictEqual(res.status, 200);
        assert.match(res.headers.get("cache-control")!, /^private/);
        await res.body?.cancel();
      } finally {
        await server.close();
      }
    },
  );

  await t.step("BLOBSTORE_TOKEN is the default", async () => {
    Deno.env.set("BLOBSTORE_TOKEN", "from-env");
    const server = startServer({ authorize: undefined });
    try {
      assert.strictEqual(
        (await put(server, `/blobs/${hash}`, content)).status,
        401,
      );
      const ok = await put(server, `/blobs/${hash}`, content, {
        headers: { authorization: "Bearer from-env" },
      });
      assert.strictEqual(ok.status, 201);
    } finally {
      Deno.env.delete("BLOBSTORE_TOKEN");
      await server.close();
    }
  });
});

/**
 * Runs `tests/fixtures/serve_default_auth.ts` with `flags` and
 * `BLOBSTORE_TOKEN=from-env` in its environment, and returns its port.
 */
async function serveInChild(
  flags: string[],
): Promise<{ port: number; close(): Promise<void> }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      ...flags,
      new URL("./fixtures/serve_default_auth.ts", import.meta.url).pathname,
    ],
    env: { BLOBSTORE_TOKEN: "from-env" },
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { done, value } = await lines.read();
    if (done) throw new Error(`the server exited before listening: ${text}`);
    text += value;
  }
  return {
    port: Number(text.trim()),
    async close() {
      child.kill("SIGTERM");
      await lines.cancel();
      await child.status;
    },
  };
}

Deno.test("http: BLOBSTORE_TOKEN fails closed when it cannot be read", async (t) => {
  const content = encoder.encode("guarded");
  const hash = await sha384(content);
  const putAs = (port: number, token?: string) =>
    rawRequest(port, {
      method: "PUT",
      path: `/blobs/${hash}`,
      headers: {
        "content-length": String(content.length),
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      },
      body: [content],
    }).then((res) => res!);

  await t.step(
    "no permission to read the environment: writes refused",
    async () => {
      const child = await serveInChild(["--allow-net=127.0.0.1"]);
      try {
        for (const token of [undefined, "from-env", "guess"]) {
          const res = await putAs(child.port, token);
          assert.strictEqual(res.status, 503, `token ${token}`);
          const body = res.json() as { error: string; message: string };
          assert.strictEqual(body.error, "auth_unavailable");
          assert.match(body.message, /BLOBSTORE_TOKEN/);
        }
        const post = await rawRequest(child.port, {
          method: "POST",
          path: "/uploads",
        });
        assert.strictEqual(post!.status, 503);
        // Reads stay open, as with a token.
        const read = await rawRequest(child.port, {
          method: "GET",
          path: `/blobs/${hash}`,
        });
        assert.strictEqual(read!.status, 404);
      } finally {
        await child.close();
      }
    },
  );

  await t.step("with the permission: the token is required", async () => {
    const child = await serveInChild([
      "--allow-net=127.0.0.1",
      "--allow-env=BLOBSTORE_TOKEN",
    ]);
    try {
      assert.strictEqual((await putAs(child.port)).status, 401);
      assert.strictEqual((await putAs(child.port, "guess")).status, 401);
      assert.strictEqual((await putAs(child.port, "from-env")).status, 201);
    } finally {
      await child.close();
    }
  });
});

Deno.test("http: mounted under a prefix", async () => {
  const server = startServer({ prefix: "/store/" });
  const content = encoder.encode("prefixed");
  const hash = await sha384(content);
  try {
    const res = await put(server, `/store/blobs/${hash}`, content);
    assert.strictEqual(res.status, 201);
    assert.strictEqual(res.headers.get("location"), `/store/blobs/${hash}`);
    assert.strictEqual(
      await (await fetch(`${server.base}/store/blobs/${hash}`)).text(),
      "prefixed",
    );
    await expectError(
      await fetch(`${server.base}/blobs/${hash}`),
      404,
      "not_found",
    );
    await expectError(
      await fetch(`${server.base}/storeblobs/${hash}`),
      404,
      "not_found",
    );
    const upload = await fetch(`${server.base}/store/uploads`, {
      method: "POST",
    });
    assert.match(upload.headers.get("location")!, /^\/store\/uploads\//);
  } finally {
    await server.close();
  }
});

Deno.test("http: an unexpected failure is a bare 500, reported to onError", async () => {
  const broken: Backend = {
    get: () => Promise.reject(new Error("disk on fire at /secret/path")),
    put: () => Promise.reject(new Error("disk on fire at /secret/path")),
    remove: () => Promise.resolve(),
  };
  const server = startServer({}, { backend: broken });
  const content = encoder.encode("x");
  const hash = await sha384(content);
  try {
    const res = await put(server, `/blobs/${hash}`, content);
    assert.strictEqual(res.status, 500);
    assert.deepStrictEqual(res.json(), {
      error: "internal",
      message: "internal server error",
    });
    assert.strictEqual(server.errors.length, 1);
    assert.match(String(server.errors[0]), /disk on fire/);
  } finally {
    await server.close();
  }
});

Deno.test("http: a client that hangs up mid-upload leaves nothing stored", async () => {
  const server = startServer({}, { minPartSize: 1024 });
  const content = bytesOf(4 * MiB);
  const hash = await sha384(content);
  const chunks = (bytes: Uint8Array) =>
    Array.from(
      { length: bytes.length / (64 * 1024) },
      (_, i) => bytes.subarray(i * 65536, (i + 1) * 65536),
    );
  try {
    await rawRequest(server.port, {
      method: "PUT",
      path: `/blobs/${hash}`,
      headers: { "content-length": String(content.length) },
      body: chunks(content),
      abortAfter: MiB,
    });
    await waitFor(() => server.backend.puts.length === 1);
    await server.backend.settled();
    assert.deepStrictEqual(await server.backend.names(), []);
    assert.strictEqual(
      (await fetch(`${server.base}/blobs/${hash}`)).status,
      404,
    );

    // The same for a part: its record stays incomplete; sending it again completes it.
    const id =
      (await (await fetch(`${server.base}/uploads`, { method: "POST" })).json())
        .id;
    await rawRequest(server.port, {
      method: "PUT",
      path: `/uploads/${id}/parts/0?hash=${hash}`,
      headers: { "content-length": String(content.length) },
      body: chunks(content),
      abortAfter: 2 * MiB,
    });
    await waitFor(() => server.backend.puts.length === 2);
    await server.backend.settled();
    assert.deepStrictEqual(await server.backend.names(), []);
    const info = await (await fetch(`${server.base}/uploads/${id}`)).json();
    assert.strictEqual(info.parts[0].complete, false);
    const retry = await put(
      server,
      `/uploads/${id}/parts/0?hash=${hash}`,
      content,
    );
    assert.strictEqual(retry.status, 200);
    assert.strictEqual((await server.backend.names()).length, 1);
  } finally {
    await server.close();
  }
});

Deno.test("http: of concurrent PUTs of one new blob, exactly one gets 201", async () => {
  const server = startServer();
  const content = bytesOf(2 * MiB, 5);
  const hash = await sha384(content);
  try {
    // A Uint8Array body, so fetch sends a Content-Length.
    const statuses = await Promise.all(
      Array.from({ length: 16 }, async () => {
        const res = await fetch(`${server.base}/blobs/${hash}`, {
          method: "PUT",
          body: content,
        });
        await res.body?.cancel();
        return res.status;
      }),
    );
    assert.strictEqual(
      statuses.filter((s) => s === 201).length,
      1,
      `${statuses}`,
    );
    assert.strictEqual(
      statuses.filter((s) => s === 200).length,
      15,
      `${statuses}`,
    );
    await server.backend.settled();
    assert.strictEqual((await server.backend.names()).length, 1);
    const res = await fetch(`${server.base}/blobs/${hash}`);
    assert.deepStrictEqual(new Uint8Array(await res.arrayBuffer()), content);
    assert.deepStrictEqual(server.errors, []);
  } finally {
    await server.close();
  }
});

/** A memory catalog that says when a put has refreshed a blob's reference. */
class WatchedCatalog extends MemoryCatalog {
  touched = Promise.withResolvers<void>();
  override async touchRef(hash: string, putTime: Date) {
    const ref = await super.touchRef(hash, putTime);
    this.touched.resolve();
    return ref;
  }
}

Deno.test("http: a re-put that loses a race with gc is a 503 to retry, never a 200", async () => {
  const catalog = new WatchedCatalog();
  const server = startServer({}, { catalog });
  const content = bytesOf(64 * 1024, 4);
  const hash = await sha384(content);
  try {
    assert.strictEqual(
      (await put(server, `/blobs/${hash}`, content)).status,
      201,
    );
    catalog.touched = Promise.withResolvers();
    const half = content.length / 2;
    const res = await rawRequest(server.port, {
      method: "PUT",
      path: `/blobs/${hash}`,
      headers: { "content-length": String(content.length) },
      body: (async function* () {
        yield content.subarray(0, half);
        // The put has refreshed the blob and is verifying the body: a gc
        // whose cut-off is later than the put's start deletes the blob.
        await catalog.touched.promise;
        await server.store.gc(new Refs(), new Date(Date.now() + 60_000));
        assert.strictEqual(await catalog.getRef(hash), undefined);
        yield content.subarray(half);
      })(),
    });
    assert.strictEqual(res!.status, 503);
    assert.strictEqual(res!.headers.get("retry-after"), "1");
    assert.strictEqual((res!.json() as { error: string }).error, "try_again");
    // Nothing claims the blob: it is gone until put again.
    await expectError(
      await fetch(`${server.base}/blobs/${hash}`),
      404,
      "not_found",
    );
    assert.strictEqual(
      (await put(server, `/blobs/${hash}`, content)).status,
      201,
    );
    assert.deepStrictEqual(server.errors, []);
  } finally {
    await server.close();
  }
});

Deno.test("http: errorResponse maps RetryableError to 503 with Retry-After, leaves CorruptBlobError a 500", async () => {
  const retry = errorResponse(new RetryableError("put it again"));
  assert.strictEqual(retry?.status, 503);
  assert.strictEqual(retry.headers.get("retry-after"), "1");
  assert.deepStrictEqual(await retry.json(), {
    error: "try_again",
    message: "put it again",
  });
  assert.strictEqual(
    errorResponse(new CorruptBlobError("object x is short")),
    undefined,
  );
});

/** Where a FileBackend under `root` keeps the object of blob `hash`. */
async function objectPath(
  server: Server,
  root: string,
  hash: string,
): Promise<string> {
  const ref = await server.store.catalog.getRef(hash);
  assert(ref, `blob ${hash} is stored`);
  return join(root, ref.name.slice(0, 2), ref.name.slice(2, 4), ref.name);
}

Deno.test("http: storage found corrupt is a 500 or a cut body, reported to onError", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "blobstore-http-corrupt-" });
  const server = startServer({}, {
    backend: new FileBackend(root),
    minPartSize: 1024,
  });
  try {
    await t.step(
      "a file truncated while it is read: the GET body fails",
      async () => {
        // Big enough that the server cannot have sent it all into the
        // socket buffers before the file is cut.
        const content = bytesOf(32 * MiB, 6);
        const hash = await sha384(content);
        assert.strictEqual(
          (await put(server, `/blobs/${hash}`, content)).status,
          201,
        );
        const res = await fetch(`${server.base}/blobs/${hash}`);
        assert.strictEqual(res.status, 200);
        await Deno.truncate(await objectPath(server, root, hash), MiB);
        await assert.rejects(res.arrayBuffer());
        await waitFor(() => server.errors.length === 1);
        assert(
          server.errors[0] instanceof CorruptBlobError,
          String(server.errors[0]),
        );
        server.errors.length = 0;
      },
    );

    const parts = [bytesOf(4096, 21), bytesOf(3000, 22)];
    const hashes = await Promise.all(parts.map((p) => sha384(p)));
    // Part 1 goes first, and `damage` runs before part 0 closes the gap:
    // part 1 then cannot be folded into the running hash (the fold finds
    // it damaged and leaves it), so the finish reads it back. A part sent
    // in order is never read again by the finish: damage done to it later
    // shows when the blob is read (the last step).
    const uploadParts = async (damage?: () => Promise<void>) => {
      const id =
        (await (await fetch(`${server.base}/uploads`, { method: "POST" }))
          .json()).id;
      const offsets = [0, parts[0].length];
      for (const i of [1, 0]) {
        const res = await put(
          server,
          `/uploads/${id}/parts/${i}?hash=${hashes[i]}&offset=${offsets[i]}`,
          parts[i],
        );
        assert.strictEqual(res.status, 200);
        if (i === 1) await damage?.();
      }
      return id as string;
    };
    const finish = (id: string) =>
      fetch(`${server.base}/uploads/${id}/finish`, {
        method: "POST",
        body: JSON.stringify({ parts: hashes.map((hash) => ({ hash })) }),
      });

    await t.step("a part changed before finish: 500, not 422", async () => {
      let path = "";
      const id = await uploadParts(async () => {
        path = await objectPath(server, root, hashes[1]);
        const bytes = await Deno.readFile(path);
        bytes[100] ^= 0xff;
        await Deno.writeFile(path, bytes);
      });
      const res = await finish(id);
      await expectError(res, 500, "internal");
      assert.strictEqual(server.errors.length, 1);
      assert(
        server.errors[0] instanceof CorruptBlobError,
        String(server.errors[0]),
      );
      server.errors.length = 0;
      await Deno.writeFile(path, parts[1]); // repaired for the next step
    });

    await t.step("a part truncated before finish: 500, not 422", async () => {
      let path = "";
      const id = await uploadParts(async () => {
        path = await objectPath(server, root, hashes[1]);
        await Deno.truncate(path, 2000);
      });
      await expectError(await finish(id), 500, "internal");
      assert.strictEqual(server.errors.length, 1);
      assert(
        server.errors[0] instanceof CorruptBlobError,
        String(server.errors[0]),
      );
      server.errors.length = 0;
      await Deno.writeFile(path, parts[1]);
    });

    await t.step(
      "a part of a served blob truncated: the GET body fails",
      async () => {
        const res = await finish(await uploadParts());
        assert.strictEqual(res.status, 200);
        const { hash } = await res.json();
        await Deno.truncate(await objectPath(server, root, hashes[1]), 2000);
        const get = await fetch(`${server.base}/blobs/${hash}`);
        assert.strictEqual(get.status, 200);
        assert.strictEqual(get.headers.get("content-length"), "7096");
        await assert.rejects(get.arrayBuffer());
        await waitFor(() => server.errors.length === 1);
        assert(
          server.errors[0] instanceof CorruptBlobError,
          String(server.errors[0]),
        );
        server.errors.length = 0;
      },
    );
  } finally {
    await server.close();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("http: DELETE /uploads refuses only the uploads the service owns", async () => {
  const server = startServer({}, { minPartSize: 1024 });
  const parts = [bytesOf(2048, 31), bytesOf(100, 32)];
  const hashes = await Promise.all(parts.map((p) => sha384(p)));
  const finished = async () => {
    const id =
      (await (await fetch(`${server.base}/uploads`, { method: "POST" }))
        .json()).id as string;
    for (const i of [0, 1]) {
      const res = await put(
        server,
        `/uploads/${id}/parts/${i}?hash=${hashes[i]}`,
        parts[i],
      );
      assert.strictEqual(res.status, 200);
    }
    const res = await fetch(`${server.base}/uploads/${id}/finish`, {
      method: "POST",
      body: JSON.stringify({ parts: hashes.map((hash) => ({ hash })) }),
    });
    assert.strictEqual(res.status, 200);
    return { id, hash: (await res.json()).hash as string };
  };
  const remove = (id: string) =>
    fetch(`${server.base}/uploads/${id}`, { method: "DELETE" });
  try {
    const first = await finished(); // serves the blob: owned by the service
    const duplicate = await finished(); // the same content: left unowned
    const other = await finished();
    await server.store.setOwner(other.id, "another-app", new Date(9e12));
    assert.strictEqual(
      (await server.store.uploadInfo(first.id)).owner,
      "blobstore-http",
    );
    assert.strictEqual(
      (await server.store.uploadInfo(duplicate.id)).owner,
      undefined,
    );

    assert.strictEqual((await remove(duplicate.id)).status, 204);
    assert.strictEqual((await remove(other.id)).status, 204);
    for (const { id } of [duplicate, other]) {
      await expectError(
        await fetch(`${server.base}/uploads/${id}`),
        404,
        "not_found",
      );
    }
    await expectError(await remove(first.id), 409, "conflict");
    const blob = await fetch(`${server.base}/blobs/${first.hash}`);
    assert.strictEqual(blob.status, 200);
    assert.strictEqual((await blob.arrayBuffer()).byteLength, 2148);
    assert.deepStrictEqual(server.errors, []);
  } finally {
    await server.close();
  }
});

Deno.test("http: preconditions (RFC 9110 §13)", async (t) => {
  const server = startServer({ bodyIdleTimeout: 5000 });
  const content = bytesOf(1000, 41);
  const hash = await sha384(content);
  const url = `${server.base}/blobs/${hash}`;
  const absent = `${server.base}/blobs/${"2".repeat(96)}`;
  const status = async (
    target: string,
    headers: Record<string, string>,
    method = "GET",
  ) => {
    const res = await fetch(target, { method, headers });
    await res.body?.cancel();
    return res.status;
  };
  try {
    await t.step("PUT If-None-Match: * creates a new blob: 201", async () => {
      const res = await put(server, `/blobs/${hash}`, content, {
        headers: { "if-none-match": "*" },
      });
      assert.strictEqual(res.status, 201);
    });

    await t.step(
      "PUT If-None-Match: * of an existing blob: 412, the body unread",
      async () => {
        // No body byte is ever sent: reading it would stall into a 408.
        const res = await rawRequest(server.port, {
          method: "PUT",
          path: `/blobs/${hash}`,
          headers: {
            "content-length": String(content.length),
            "if-none-match": "*",
          },
        });
        assert.strictEqual(res!.status, 412);
        assert.strictEqual(
          (res!.json() as { error: string }).error,
          "precondition_failed",
        );
        const tagged = await put(server, `/blobs/${hash}`, content, {
          headers: { "if-none-match": `"${hash}"` },
        });
        assert.strictEqual(tagged.status, 412);
        const other = await put(server, `/blobs/${hash}`, content, {
          headers: { "if-none-match": '"other"' },
        });
        assert.strictEqual(other.status, 200);
      },
    );

    await t.step("If-Match names the strong ETag or *: 200", async () => {
      for (
        const tag of [`"${hash}"`, "*", `"x", "${hash}"`, `W/"x", "${hash}"`]
      ) {
        assert.strictEqual(await status(url, { "if-match": tag }), 200, tag);
        assert.strictEqual(
          await status(url, { "if-match": tag }, "HEAD"),
          200,
          tag,
        );
      }
    });

    await t.step("If-Match that does not match: 412", async () => {
      for (const tag of ['"other"', `W/"${hash}"`, hash, `"${hash}x"`, ""]) {
        const res = await fetch(url, { headers: { "if-match": tag } });
        await expectError(res, 412, "precondition_failed");
        assert.strictEqual(
          await status(url, { "if-match": tag }, "HEAD"),
          412,
          tag,
        );
      }
    });

    await t.step("an absent blob is a 404 whatever If-Match says", async () => {
      for (const tag of ["*", '"other"', `"${"2".repeat(96)}"`]) {
        assert.strictEqual(await status(absent, { "if-match": tag }), 404, tag);
      }
    });

    await t.step(
      "If-Match is evaluated before If-None-Match and Range",
      async () => {
        const failing = { "if-match": '"other"' };
        assert.strictEqual(
          await status(url, { ...failing, "if-none-match": "*" }),
          412,
        );
        assert.strictEqual(
          await status(url, { ...failing, range: "bytes=0-9" }),
          412,
        );
        const passing = { "if-match": `"${hash}"` };
        assert.strictEqual(
          await status(url, { ...passing, "if-none-match": `"${hash}"` }),
          304,
        );
        const ranged = await fetch(url, {
          headers: { ...passing, range: "bytes=0-9" },
        });
        assert.strictEqual(ranged.status, 206);
        assert.deepStrictEqual(
          new Uint8Array(await ranged.arrayBuffer()),
          content.subarray(0, 10),
        );
      },
    );
    assert.deepStrictEqual(server.errors, []);
  } finally {
    await server.close();
  }
});

Deno.test("http: HEAD wherever GET works", async (t) => {
  const server = startServer();
  const head = (path: string) =>
    rawRequest(server.port, { method: "HEAD", path });
  const get = (path: string) =>
    rawRequest(server.port, { method: "GET", path });
  const sameAsGet = async (path: string) => {
    const [h, g] = [(await head(path))!, (await get(path))!];
    assert.strictEqual(h.status, g.status, path);
    assert.strictEqual(h.body.length, 0, path);
    for (const name of ["content-type", "content-length", "cache-control"]) {
      assert.strictEqual(
        h.headers.get(name),
        g.headers.get(name),
        `${path} ${name}`,
      );
    }
    return h;
  };
  try {
    await t.step("HEAD /", async () => {
      const res = await sameAsGet("/");
      assert.strictEqual(res.status, 200);
      assert.notStrictEqual(res.headers.get("content-length"), "0");
    });

    await t.step("HEAD /uploads/{id}", async () => {
      const id =
        (await (await fetch(`${server.base}/uploads`, { method: "POST" }))
          .json()).id;
      const res = await sameAsGet(`/uploads/${id}`);
      assert.strictEqual(res.status, 200);
      assert.match(res.headers.get("content-type")!, /application\/json/);
      assert.strictEqual((await sameAsGet("/uploads/nope")).status, 404);
    });

    await t.step("405 lists HEAD in Allow where GET is", async () => {
      const root = await fetch(`${server.base}/`, { method: "DELETE" });
      await expectError(root, 405, "method_not_allowed");
      assert.strictEqual(root.headers.get("allow"), "GET, HEAD");
      const upload = await fetch(`${server.base}/uploads/x`, { method: "PUT" });
      await expectError(upload, 405, "method_not_allowed");
      assert.strictEqual(upload.headers.get("allow"), "GET, HEAD, DELETE");
      const odd = await rawRequest(server.port, {
        method: "constructor",
        path: "/",
      });
      assert.strictEqual(odd!.status, 405);
    });
    assert.deepStrictEqual(server.errors, []);
  } finally {
    await server.close();
  }
});

Deno.test("http: a 256 MiB blob streams up and down with flat memory", async () => {
  const data = await Deno.makeTempDir({ prefix: "blobstore-http-" });
  const seams = await openSeams({ data, env: () => undefined });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    createHandler(seams.store, { authorize: false }),
  );
  const port = server.addr.port;
  const size = 256 * MiB;
  const chunk = bytesOf(MiB, 9);
  const expected = createHash("sha384");
  for (let i = 0; i < size / MiB; i++) expected.update(chunk);
  const hash = expected.digest("hex");
  let peak = 0;
  const sampler = setInterval(() => {
    peak = Math.max(peak, Deno.memoryUsage().rss);
  }, 20);
  try {
    const baseline = Deno.memoryUsage().rss;
    const up = await rawRequest(port, {
      method: "PUT",
      path: `/blobs/${hash}`,
      headers: { "content-length": String(size) },
      body: (function* () {
        for (let i = 0; i < size / MiB; i++) yield chunk;
      })(),
    });
    assert.strictEqual(up!.status, 201);

    const res = await fetch(`http://127.0.0.1:${port}/blobs/${hash}`);
    assert.strictEqual(res.headers.get("content-length"), String(size));
    const actual = createHash("sha384");
    let received = 0;
    for await (const bytes of res.body!) {
      actual.update(bytes);
      received += bytes.length;
    }
    assert.strictEqual(received, size);
    assert.strictEqual(actual.digest("hex"), hash);
    peak = Math.max(peak, Deno.memoryUsage().rss);
    const growth = (peak - baseline) / MiB;
    console.log(
      `RSS growth over a 256 MiB upload and download: ${growth.toFixed(1)} MiB`,
    );
    assert(
      growth < 128,
      `RSS grew by ${growth.toFixed(1)} MiB (expected < 128 MiB)`,
    );
  } finally {
    clearInterval(sampler);
    await server.shutdown();
    await seams.close();
    await Deno.remove(data, { recursive: true });
  }
});

async function waitFor(condition: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out waiting");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

Deno.test("http: a multipart blob finished by one process is served by hash from another sharing the catalog, with default options", async () => {
  // Two handlers with default options, each with its own KvCatalog over
  // one KV file (as two processes or two Deploy isolates would have), and
  // one file backend: the hash -> upload registry lives in the catalog.
  const dir = await Deno.makeTempDir({ prefix: "blobstore-http-kv-" });
  const kvs = [
    await Deno.openKv(`${dir}/catalog.kv`),
    await Deno.openKv(`${dir}/catalog.kv`),
  ];
  const [a, b] = kvs.map((kv) =>
    startServer({}, {
      catalog: new KvCatalog(kv),
      backend: new FileBackend(`${dir}/blobs`),
    })
  );
  try {
    const parts = [bytesOf(1024, 1), bytesOf(100, 2)];
    const hashes = await Promise.all(parts.map((p) => sha384(p)));
    const { id } = await (await fetch(`${a.base}/uploads`, { method: "POST" }))
      .json();
    for (let i = 0; i < parts.length; i++) {
      const res = await fetch(
        `${b.base}/uploads/${id}/parts/${i}?hash=${hashes[i]}`,
        { method: "PUT", body: parts[i] },
      );
      assert.strictEqual(res.status, 200, await res.text());
    }
    const finish = await fetch(`${a.base}/uploads/${id}/finish`, {
      method: "POST",
      body: JSON.stringify({ parts: hashes.map((hash) => ({ hash })) }),
    });
    assert.strictEqual(finish.status, 200);
    const { hash } = await finish.json();
    const whole = new Uint8Array([...parts[0], ...parts[1]]);
    const got = await fetch(`${b.base}/blobs/${hash}`);
    assert.strictEqual(got.status, 200);
    assert.deepStrictEqual(new Uint8Array(await got.arrayBuffer()), whole);
    const head = await fetch(`${b.base}/blobs/${hash}`, { method: "HEAD" });
    assert.strictEqual(
      head.headers.get("content-length"),
      String(whole.length),
    );
    const tail = await fetch(`${b.base}/blobs/${hash}`, {
      headers: { range: "bytes=-150" },
    });
    assert.strictEqual(tail.status, 206);
    assert.deepStrictEqual(
      new Uint8Array(await tail.arrayBuffer()),
      whole.slice(-150),
    );
  } finally {
    await Promise.all([a.close(), b.close()]);
    kvs.forEach((kv) => kv.close());
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("http: a request target no URL parser accepts is a 400, not a 500", async () => {
  const server = startServer({});
  try {
    // Deno.serve passes an absolute-form target through as `req.url`
    // (found by the fuzzer, seed 462370225).
    const res = await rawRequest(server.port, {
      method: "GET",
      path: "http://%E2%80%AE0000/../../",
    });
    assert.strictEqual(res!.status, 400);
    assert.strictEqual((res!.json() as { error: string }).error, "bad_request");
    assert.deepStrictEqual(server.errors, []);
  } finally {
    await server.close();
  }
});
