/**
 * `POST /blobs`: the service hashes the body itself, over a real loopback
 * connection (single blobs, bodies of several 8 MiB parts, `Repr-Digest`
 * checked or refused) and in process (length lies, limits, auth, CORS).
 */

import assert from "node:assert";
import { createHash } from "node:crypto";
import {
  type Backend,
  collect,
  MemoryBackend,
  MemoryCatalog,
  NotFoundError,
  Refs,
  Store,
  UNKNOWN_PART_SIZE,
} from "../mod.ts";
import { bearerToken, createHandler, type HandlerOptions } from "../http.ts";
import { bytesOf, collect as collectAll } from "./helpers.ts";

const hex = (bytes: Uint8Array) =>
  createHash("sha384").update(bytes).digest("hex");
const reprDigest = (hash: string) =>
  `sha-384=:${Buffer.from(hash, "hex").toString("base64")}:`;

/** Counts the backend's puts, so a test can tell a body was never read. */
class CountingBackend extends MemoryBackend {
  puts = 0;
  override put(...args: Parameters<Backend["put"]>) {
    this.puts++;
    return super.put(...args);
  }
}

/**
 * A service on a memory backend, which stages (a large body is one blob,
 * hashed once), or with `stage: false` one that cannot (parts).
 */
function service(options: HandlerOptions = {}, stage = true) {
  const backend = new CountingBackend();
  if (!stage) Object.defineProperty(backend, "stage", { value: undefined });
  const store = new Store({ catalog: new MemoryCatalog(), backend });
  const errors: unknown[] = [];
  const handler = createHandler(store, {
    authorize: false,
    cors: false,
    onError: (err) => errors.push(err),
    ...options,
  });
  return { store, backend, handler, errors };
}

function post(
  handler: (req: Request) => Promise<Response>,
  body: BodyInit | null,
  headers: Record<string, string> = {},
): Promise<Response> {
  return handler(
    new Request("http://x/blobs", { method: "POST", body, headers }),
  );
}

async function uploadsOf(store: Store) {
  return await collectAll(store.catalog.uploads());
}

for (const stage of [true, false]) {
  Deno.test(`POST /blobs over loopback, ${stage ? "a backend that stages" : "in parts"}: the service names the blob`, async (t) => {
    const { store, backend, handler, errors } = service({}, stage);
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      handler,
    );
    const base = `http://127.0.0.1:${server.addr.port}`;
    const send = (body: Uint8Array<ArrayBuffer>, headers = {}) =>
      fetch(`${base}/blobs`, { method: "POST", body, headers });
    try {
      await t.step("a small body: 201, Location, then 200", async () => {
        const bytes = bytesOf(1000, 3);
        const hash = hex(bytes);
        const res = await send(bytes);
        assert.strictEqual(res.status, 201);
        assert.strictEqual(res.headers.get("location"), `/blobs/${hash}`);
        assert.strictEqual(res.headers.get("etag"), `"${hash}"`);
        assert.deepStrictEqual(await res.json(), { hash, size: 1000 });
        const again = await send(bytes, { "repr-digest": reprDigest(hash) });
        assert.strictEqual(again.status, 200);
        assert.deepStrictEqual(await again.json(), { hash, size: 1000 });
        const got = await fetch(`${base}/blobs/${hash}`);
        assert.deepStrictEqual(new Uint8Array(await got.arrayBuffer()), bytes);
        assert.strictEqual((await store.stat(hash)).kind, "single");
      });

      await t.step("an empty body is the empty blob", async () => {
        const res = await send(new Uint8Array(0));
        assert.strictEqual(res.status, 201);
        assert.deepStrictEqual(await res.json(), {
          hash: hex(new Uint8Array(0)),
          size: 0,
        });
      });

      await t.step(
        "a body of several parts, with its Repr-Digest: one blob staged, or 8 MiB parts; served whole",
        async () => {
          const bytes = bytesOf(2 * UNKNOWN_PART_SIZE + 12_345, 4);
          const hash = hex(bytes);
          const puts = backend.puts;
          const res = await send(bytes, { "repr-digest": reprDigest(hash) });
          assert.strictEqual(res.status, 201);
          assert.deepStrictEqual(await res.json(), {
            hash,
            size: bytes.length,
          });
          const stat = await store.stat(hash);
          if (stage) {
            assert.strictEqual(stat.kind, "single");
            assert.strictEqual(backend.puts, puts, "staged, never put");
          } else {
            assert.strictEqual(stat.kind, "multipart");
            assert.deepStrictEqual(stat.index?.sizes, [
              UNKNOWN_PART_SIZE,
              UNKNOWN_PART_SIZE,
              12_345,
            ]);
          }
          const got = await fetch(`${base}/blobs/${hash}`);
          assert.deepStrictEqual(
            new Uint8Array(await got.arrayBuffer()),
            bytes,
          );
          // Again: the blob is there, and the second upload does not stay.
          const before = (await uploadsOf(store)).length;
          const again = await send(bytes);
          assert.strictEqual(again.status, 200);
          await again.body?.cancel();
          assert.strictEqual((await uploadsOf(store)).length, before);
        },
      );

      await t.step(
        "a Repr-Digest that does not match: 422, nothing recorded, small or in parts",
        async () => {
          const objects = async () => (await collectAll(backend.list())).length;
          const stored = await objects();
          for (const size of [5000, UNKNOWN_PART_SIZE + 1]) {
            const bytes = bytesOf(size, 5);
            const wrong = hex(bytesOf(size, 6));
            const before = await uploadsOf(store);
            const registered = await collectAll(
              store.catalog.multipart.entries(),
            );
            const res = await send(bytes, { "repr-digest": reprDigest(wrong) });
            assert.strictEqual(res.status, 422);
            const body = await res.json();
            assert.strictEqual(body.error, "hash_mismatch");
            assert.match(body.message, new RegExp(wrong));
            await assert.rejects(store.stat(hex(bytes)), NotFoundError);
            await assert.rejects(store.stat(wrong), NotFoundError);
            assert.deepStrictEqual(await uploadsOf(store), before);
            assert.deepStrictEqual(
              await collectAll(store.catalog.multipart.entries()),
              registered,
            );
            const got = await fetch(`${base}/blobs/${hex(bytes)}`);
            assert.strictEqual(got.status, 404);
            await got.body?.cancel();
          }
          // A staged body was never named: nothing is left. Parts stored
          // before the mismatch was known are garbage, which a collection
          // that keeps nothing removes.
          if (stage) assert.strictEqual(await objects(), stored);
          else assert(await objects() > stored);
          await collect(store, { keep: new Refs(), before: new Date() });
          // (The parts of the multipart blob above stay: the service owns
          // its upload.)
          assert(await objects() <= stored);
        },
      );

      await t.step("a chunked body (no Content-Length): 411", async () => {
        const res = await fetch(`${base}/blobs`, {
          method: "POST",
          body: ReadableStream.from([bytesOf(10)]),
        });
        assert.strictEqual(res.status, 411);
        assert.strictEqual((await res.json()).error, "length_required");
      });
      assert.deepStrictEqual(errors, []);
    } finally {
      await server.shutdown();
    }
  });
}

Deno.test("POST /blobs in process: lengths, limits, digests, auth, CORS and metrics", async (t) => {
  await t.step(
    "over maxBodySize: 413, the body unread and nothing stored",
    async () => {
      const { handler, backend } = service({ maxBodySize: 100 });
      let pulled = false;
      const body = new ReadableStream({
        pull(controller) {
          pulled = true;
          controller.enqueue(bytesOf(101));
          controller.close();
        },
      }, { highWaterMark: 0 });
      const res = await post(handler, body, { "content-length": "101" });
      assert.strictEqual(res.status, 413);
      assert.strictEqual((await res.json()).error, "too_large");
      assert.strictEqual(pulled, false);
      assert.strictEqual(backend.puts, 0);
    },
  );

  await t.step(
    "a body shorter or longer than its Content-Length: 400, nothing stored",
    async () => {
      const { handler, store } = service();
      for (
        const [size, declared] of [
          [10, 11],
          [10, 9],
          [UNKNOWN_PART_SIZE + 5, UNKNOWN_PART_SIZE + 6],
          [UNKNOWN_PART_SIZE + 5, UNKNOWN_PART_SIZE + 4],
        ]
      ) {
        const bytes = bytesOf(size, 7);
        const res = await post(handler, bytes, {
          "content-length": String(declared),
        });
        assert.strictEqual(res.status, 400, `${size} vs ${declared}`);
        const body = await res.json();
        assert.strictEqual(body.error, "size_mismatch");
        assert.match(body.message, new RegExp(`expected ${declared} bytes`));
        await assert.rejects(store.stat(hex(bytes)), NotFoundError);
        assert.deepStrictEqual(await uploadsOf(store), []);
      }
    },
  );

  await t.step(
    "a malformed Repr-Digest: 400 before any byte is read",
    async () => {
      const { handler, backend } = service();
      for (
        const value of ["sha-384=abc", "sha-384=:AAAA:", "SHA-384=:x:", ","]
      ) {
        const res = await post(handler, bytesOf(10), {
          "content-length": "10",
          "repr-digest": value,
        });
        assert.strictEqual(res.status, 400, value);
        assert.strictEqual((await res.json()).error, "bad_digest");
      }
      assert.strictEqual(backend.puts, 0);
    },
  );

  await t.step(
    "other algorithms alone are not checked: the blob is stored",
    async () => {
      const { handler } = service();
      const res = await post(handler, bytesOf(10), {
        "content-length": "10",
        "repr-digest": "sha-256=:AAAA:",
      });
      assert.strictEqual(res.status, 201);
      await res.body?.cancel();
    },
  );

  await t.step("it writes: the token is required", async () => {
    const { handler } = service({ authorize: bearerToken("s3cret") });
    const denied = await post(handler, bytesOf(10), { "content-length": "10" });
    assert.strictEqual(denied.status, 401);
    await denied.body?.cancel();
    const ok = await post(handler, bytesOf(10), {
      "content-length": "10",
      authorization: "Bearer s3cret",
    });
    assert.strictEqual(ok.status, 201);
    await ok.body?.cancel();
  });

  await t.step("GET /blobs is a 405 naming POST", async () => {
    const { handler } = service();
    const res = await handler(new Request("http://x/blobs"));
    assert.strictEqual(res.status, 405);
    assert.strictEqual(res.headers.get("allow"), "POST");
    await res.body?.cancel();
  });

  await t.step(
    "CORS: a page may send Repr-Digest and read Location",
    async () => {
      const origin = "https://app.example";
      const { handler } = service({ cors: { origins: [origin] } });
      const preflight = await handler(
        new Request("http://x/blobs", {
          method: "OPTIONS",
          headers: {
            origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "repr-digest, content-type",
          },
        }),
      );
      assert.strictEqual(preflight.status, 204);
      assert.match(
        preflight.headers.get("access-control-allow-headers") ?? "",
        /\bRepr-Digest\b/,
      );
      const res = await post(handler, bytesOf(10), {
        "content-length": "10",
        origin,
      });
      assert.strictEqual(res.status, 201);
      assert.strictEqual(
        res.headers.get("access-control-allow-origin"),
        origin,
      );
      assert.match(
        res.headers.get("access-control-expose-headers") ?? "",
        /\bLocation\b/,
      );
      await res.body?.cancel();
    },
  );

  await t.step("metrics count it as POST /blobs", async () => {
    const { handler } = service({ metrics: true });
    const res = await post(handler, bytesOf(10), { "content-length": "10" });
    await res.body?.cancel();
    const text = await (await handler(new Request("http://x/metrics"))).text();
    assert.match(
      text,
      /blobstore_http_requests_total\{route="\/blobs",method="POST",status="201"\} 1/,
    );
  });
});
