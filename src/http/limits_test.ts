import assert from "node:assert";
import { MemoryBackend } from "../memory/backend.ts";
import { KvCatalog } from "../kv/catalog.ts";
import { MemoryCatalog } from "../memory/catalog.ts";
import { sha384 } from "../digest.ts";
import { Store } from "../store.ts";
import { createHandler, type HandlerOptions } from "./handler.ts";
import { ConcurrencyLimiter, remoteAddressKey } from "./limits.ts";

const HASH = "0".repeat(96);

function memoryStore(): { store: Store; backend: MemoryBackend } {
  const backend = new MemoryBackend();
  return {
    store: new Store({ catalog: new MemoryCatalog(), backend }),
    backend,
  };
}

function handlerOf(store: Store, options: HandlerOptions = {}) {
  return createHandler(store, { authorize: false, ...options });
}

/** A body that sends `head` and then waits until `release` is called. */
function heldBody(head: Uint8Array): {
  body: ReadableStream<Uint8Array>;
  release(rest: Uint8Array): void;
} {
  let release!: (rest: Uint8Array) => void;
  const rest = new Promise<Uint8Array>((resolve) => release = resolve);
  let step = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (step++ === 0) return controller.enqueue(head);
      if (step === 2) return controller.enqueue(await rest);
      controller.close();
    },
  }, { highWaterMark: 0 });
  return { body, release };
}

function put(path: string, body: BodyInit, size: number, headers = {}) {
  return new Request(`http://blobs.test${path}`, {
    method: "PUT",
    body,
    headers: { "content-length": String(size), ...headers },
  });
}

Deno.test("ConcurrencyLimiter counts per key and frees on release", () => {
  const limiter = new ConcurrencyLimiter(2);
  const a1 = limiter.acquire("a");
  const a2 = limiter.acquire("a");
  const b1 = limiter.acquire("b"); // another client is not affected
  assert.throws(() => limiter.acquire("a"), { status: 429 });
  a1();
  a1(); // twice is once
  assert.strictEqual(limiter.inFlight("a"), 1);
  limiter.acquire("a")();
  a2();
  b1();
  assert.strictEqual(limiter.inFlight("a"), 0);
  assert.strictEqual(limiter.inFlight("b"), 0);
  assert.throws(() => new ConcurrencyLimiter(0), RangeError);
});

Deno.test("remoteAddressKey: the connection's address, else X-Forwarded-For", () => {
  const req = new Request("http://x/", {
    headers: { "x-forwarded-for": " 192.0.2.7 , 10.0.0.1" },
  });
  const info = {
    remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 5000 },
    completed: Promise.resolve(),
  } as Deno.ServeHandlerInfo;
  assert.strictEqual(remoteAddressKey(req, info), "127.0.0.1");
  assert.strictEqual(remoteAddressKey(req), "192.0.2.7");
  assert.strictEqual(remoteAddressKey(new Request("http://x/")), "unknown");
});

Deno.test("http limits: uploads in flight per client beyond the limit get 429", async () => {
  const { store } = memoryStore();
  const handler = handlerOf(store, {
    maxConcurrentUploads: 2,
    clientKey: (req) => req.headers.get("x-client") ?? "anonymous",
  });
  const content = new TextEncoder().encode("held open");
  const hash = await sha384(content);
  const held = [0, 1].map(() => heldBody(content.subarray(0, 4)));
  const running = held.map(({ body }) =>
    handler(put(`/blobs/${hash}`, body, content.length, { "x-client": "a" }))
  );
  await new Promise((resolve) => setTimeout(resolve, 20));

  const refused = await handler(
    put(`/blobs/${hash}`, content, content.length, { "x-client": "a" }),
  );
  assert.strictEqual(refused.status, 429);
  assert.strictEqual(refused.headers.get("retry-after"), "1");
  assert.strictEqual((await refused.json()).error, "too_many_requests");
  // The JSON posts count too; reads and other clients do not.
  const post = await handler(
    new Request("http://blobs.test/uploads", {
      method: "POST",
      headers: { "x-client": "a" },
    }),
  );
  assert.strictEqual(post.status, 429);
  await post.body?.cancel();
  const read = await handler(
    new Request(`http://blobs.test/blobs/${HASH}`, {
      headers: { "x-client": "a" },
    }),
  );
  assert.strictEqual(read.status, 404);
  await read.body?.cancel();
  const other = await handler(
    put(`/blobs/${hash}`, content, content.length, { "x-client": "b" }),
  );
  assert.strictEqual(other.status, 201);
  await other.body?.cancel();

  for (const { release } of held) release(content.subarray(4));
  const statuses = await Promise.all(running.map(async (p) => {
    const res = await p;
    await res.body?.cancel();
    return res.status;
  }));
  // Client b's put stored the blob while these were held: both say "already there".
  assert.deepStrictEqual(statuses, [200, 200]);
  // Slots come back whatever the outcome, errors included.
  for (let i = 0; i < 5; i++) {
    const res = await handler(put(`/blobs/${hash}`, "wrong!!!!", 9, {
      "x-client": "a",
    }));
    assert.strictEqual(res.status, 422);
    await res.body?.cancel();
  }
});

Deno.test("http limits: the default client key is the remote address Deno.serve passes", async () => {
  const { store } = memoryStore();
  const handler = handlerOf(store, { maxConcurrentUploads: 1 });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    handler,
  );
  const base = `http://127.0.0.1:${server.addr.port}`;
  const content = new TextEncoder().encode("one at a time");
  const hash = await sha384(content);
  try {
    // One upload held open (a raw connection with a body that has not
    // arrived), then another one from the same address: refused.
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.addr.port,
    });
    await conn.write(
      new TextEncoder().encode(
        `PUT /blobs/${hash} HTTP/1.1\r\nhost: x\r\ncontent-length: ${content.length}\r\n\r\n`,
      ),
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    const res = await fetch(`${base}/blobs/${hash}`, {
      method: "PUT",
      body: content,
    });
    assert.strictEqual(res.status, 429);
    await res.body?.cancel();
    await conn.write(content);
    const answer = new Uint8Array(1024);
    const n = await conn.read(answer);
    assert.match(
      new TextDecoder().decode(answer.subarray(0, n ?? 0)),
      /^HTTP\/1.1 201/,
    );
    conn.close();
  } finally {
    await server.shutdown();
  }
});

Deno.test("http limits: a stalled body is a 408 within the idle timeout and leaves nothing", async () => {
  const { store, backend } = memoryStore();
  const handler = handlerOf(store, { bodyIdleTimeout: 100 });
  const content = new TextEncoder().encode("never finished");
  const hash = await sha384(content);
  const { body } = heldBody(content.subarray(0, 5)); // never released
  const started = performance.now();
  const res = await handler(put(`/blobs/${hash}`, body, content.length));
  const elapsed = performance.now() - started;
  assert.strictEqual(res.status, 408);
  assert.strictEqual((await res.json()).error, "request_timeout");
  assert(elapsed >= 90 && elapsed < 2000, `answered after ${elapsed} ms`);
  const names = [];
  for await (const { name } of backend.list()) names.push(name);
  assert.deepStrictEqual(names, []);
  assert.strictEqual(await store.catalog.getRef(hash), undefined);

  // The JSON routes too.
  const post = await handler(
    new Request("http://blobs.test/uploads", {
      method: "POST",
      body: heldBody(new TextEncoder().encode("{")).body,
    }),
  );
  assert.strictEqual(post.status, 408);
  await post.body?.cancel();
});

Deno.test("http limits: a slow body that keeps flowing within the idle timeout is fine", async () => {
  const { store } = memoryStore();
  const handler = handlerOf(store, { bodyIdleTimeout: 200 });
  const content = new TextEncoder().encode("slow but steady");
  const hash = await sha384(content);
  let at = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (at >= content.length) return controller.close();
      await new Promise((resolve) => setTimeout(resolve, 30));
      controller.enqueue(content.subarray(at, at += 3));
    },
  }, { highWaterMark: 0 });
  const res = await handler(put(`/blobs/${hash}`, body, content.length));
  assert.strictEqual(res.status, 201);
  await res.body?.cancel();
});

Deno.test("http limits: an over-long upload id is a 400, not a catalog failure", async () => {
  // Found by tests/http_fuzz_test.ts: Deno KV refuses keys over 2 KiB, so
  // a 5000-character id reached the catalog and came back as a 500.
  const kv = await Deno.openKv(":memory:");
  try {
    const errors: unknown[] = [];
    const handler = handlerOf(
      new Store({ catalog: new KvCatalog(kv), backend: new MemoryBackend() }),
      { onError: (err) => errors.push(err) },
    );
    const id = "0".repeat(5000);
    const requests = [
      new Request(`http://blobs.test/uploads/${id}`),
      new Request(`http://blobs.test/uploads/${id}`, { method: "DELETE" }),
      new Request(`http://blobs.test/uploads/${id}/finish`, {
        method: "POST",
        body: '{"parts": []}',
      }),
      put(`/uploads/${id}/parts/0?hash=${HASH}`, "x", 1),
      new Request(`http://blobs.test/uploads/a%00b`),
    ];
    for (const req of requests) {
      const res = await handler(req);
      assert.strictEqual(res.status, 400, `${req.method} ${req.url}`);
      assert.strictEqual((await res.json()).error, "bad_params");
    }
    assert.deepStrictEqual(errors, []);
    const res = await handler(new Request("http://blobs.test/uploads/nope"));
    assert.strictEqual(res.status, 404);
    await res.body?.cancel();
  } finally {
    kv.close();
  }
});
