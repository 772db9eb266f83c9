/**
 * Redirect downloads end to end, against the real services `deno task
 * test` starts: `Backend.signedUrl` on Swift (TempURLs, on the tempauth
 * proxy with SHA-256, on the S3/TempURL proxy with SHA-512, and on a blob
 * stored as a Static Large Object) and on S3 (presigned GETs on Swift's
 * s3api): fetched with no credentials they give the exact bytes and
 * ranges, and the storage refuses them once expired. Then
 * `createHandler(store, { redirect })` over each: a GET is a 307 whose
 * `Location` fetch follows to the exact bytes, a Range GET to the exact
 * slice (fetch sends `Range` again after the redirect); HEAD, 304,
 * `If-Match`, multipart blobs and absent blobs are answered as without
 * redirects, and a backend without `signedUrl` streams.
 *
 * The Swift account `test` gets the TempURL key {@linkcode TEMP_URL_KEY}
 * (set as its owner by `SwiftBackend.ensureTempUrlKey`, the same key every
 * run). Every test works in containers or buckets of its own, removed at
 * its end. Reads SWIFT_AUTH_URL and S3_ENDPOINT.
 *
 * @module
 */

import assert from "node:assert";
import {
  type Backend,
  BadParamsError,
  MemoryBackend,
  MemoryCatalog,
  MultipartBlobs,
  sha384,
  Store,
} from "../mod.ts";
import { SwiftBackend, type SwiftParams } from "../swift.ts";
import { S3Backend, type S3Params } from "../s3.ts";
import { bearerToken, createHandler, type HandlerOptions } from "../http.ts";
import { SwiftAuth, type SwiftCredentials } from "../src/swift/auth.ts";
import { S3Client } from "../src/s3/client.ts";
import { MIN_PART_SIZE } from "../src/s3/params.ts";
import { bytesOf } from "./helpers.ts";
import {
  S3_ACCESS_KEY,
  S3_ENDPOINT,
  S3_REGION,
  S3_SECRET_KEY,
  S3_SWIFT_AUTH_URL,
  s3Available,
  serviceAvailable,
} from "./services.ts";

/** The TempURL key of the test account (idempotent: every run sets the same). */
const TEMP_URL_KEY = "blobstore-test-temp-url-key";

const V1: SwiftCredentials = {
  authURL: Deno.env.get("SWIFT_AUTH_URL") ??
    "http://127.0.0.1:8390/auth/v1.0",
  tenant: "test",
  username: "tester",
  secret: "testing",
};

/** Swift v1 auth on the S3/TempURL proxy (its tempurl allows sha256, sha512). */
const V1_S3_PROXY: SwiftCredentials = {
  authURL: S3_SWIFT_AUTH_URL,
  tenant: "test",
  username: "tester",
  secret: "testing",
};

const swiftOk = await serviceAvailable("Swift (v1 auth)", async () => {
  await new SwiftAuth(V1, { timeoutMs: 5000 }).session();
});
const s3Ok = await s3Available();

const run = crypto.randomUUID().slice(0, 8);
let fresh = 0;

/** A backend with `signedUrl` over a real service, and how to clean up. */
interface Fixture {
  backend: Backend & Required<Pick<Backend, "signedUrl">>;
  /** The status the storage refuses an expired URL with. */
  expired: number;
  close(): Promise<void>;
}

interface Kind {
  name: string;
  ignore: boolean;
  make(): Promise<Fixture>;
}

function swiftKind(
  name: string,
  credentials: SwiftCredentials,
  extra: Partial<SwiftParams> = {},
  ignore = !swiftOk,
): Kind {
  return {
    name,
    ignore,
    async make() {
      const bucket = `blobstore-redirect-${run}-${fresh++}`;
      const backend = new SwiftBackend({
        ...credentials,
        bucket,
        tempUrlKey: TEMP_URL_KEY,
        retryDelayMs: 10,
        ...extra,
      });
      await backend.ensureTempUrlKey();
      assert(backend.signedUrl, "a SwiftBackend with a key has signedUrl");
      return {
        backend: backend as Fixture["backend"],
        expired: 401,
        close: () => dropContainers(backend, credentials, bucket),
      };
    },
  };
}

const KINDS: Kind[] = [
  swiftKind("Swift TempURL (SHA-256)", V1),
  swiftKind(
    "Swift TempURL (SHA-512, S3/TempURL proxy)",
    V1_S3_PROXY,
    { tempUrlDigest: "sha512" },
    !s3Ok,
  ),
  swiftKind("Swift TempURL of a Static Large Object", V1, {
    segmentSize: 4096,
  }),
  {
    name: "S3 presigned GET",
    ignore: !s3Ok,
    make() {
      const params: S3Params = {
        endpoint: S3_ENDPOINT,
        region: S3_REGION,
        bucket: `blobstore-redirect-${run}-${fresh++}`,
        accessKeyId: S3_ACCESS_KEY,
        secretAccessKey: S3_SECRET_KEY,
        partSize: MIN_PART_SIZE,
        retryDelayMs: 10,
      };
      return Promise.resolve({
        backend: new S3Backend(params),
        expired: 403,
        close: () => dropBucket(params),
      });
    },
  },
];

/** Removes every object of `bucket` (and its segments), then the containers. */
async function dropContainers(
  backend: SwiftBackend,
  credentials: SwiftCredentials,
  bucket: string,
): Promise<void> {
  for await (const { name } of backend.list()) await backend.remove(name);
  const { token, storageURL } = await new SwiftAuth(credentials).session();
  for (const container of [bucket, `${bucket}_segments`]) {
    const res = await fetch(`${storageURL}/${encodeURIComponent(container)}`, {
      method: "DELETE",
      headers: { "X-Auth-Token": token },
    });
    await res.body?.cancel();
  }
}

/** Empties and deletes the bucket of `params`. */
async function dropBucket(params: S3Params): Promise<void> {
  const backend = new S3Backend(params);
  for await (const { name } of backend.list()) await backend.remove(name);
  const res = await new S3Client(params).send("DELETE bucket", {
    method: "DELETE",
  });
  await res.body?.cancel();
}

/** Puts `bytes` into the backend under a fresh name, as a store would. */
async function putObject(backend: Backend, bytes: Uint8Array<ArrayBuffer>) {
  const name = `redirect-${crypto.randomUUID()}`;
  await backend.put(
    name,
    new Blob([bytes]).stream(),
    bytes.length,
    await sha384(bytes),
  );
  return name;
}

async function bytesFrom(res: Response): Promise<Uint8Array> {
  return new Uint8Array(await res.arrayBuffer());
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const kind of KINDS) {
  Deno.test({
    name:
      `redirect: ${kind.name}: signedUrl serves the bytes and ranges without credentials, until it expires`,
    ignore: kind.ignore,
    async fn() {
      const { backend, expired, close } = await kind.make();
      try {
        const bytes = bytesOf(10_000, 3);
        const name = await putObject(backend, bytes);
        const url = await backend.signedUrl(name, { expiresIn: 300 });
        assert.doesNotMatch(url, /testing|AUTH_tk/, "no secret, no token");

        const whole = await fetch(url);
        assert.strictEqual(whole.status, 200);
        assert.deepStrictEqual(await bytesFrom(whole), bytes);

        const part = await fetch(url, { headers: { range: "bytes=100-4199" } });
        assert.strictEqual(part.status, 206);
        assert.strictEqual(
          part.headers.get("content-range"),
          "bytes 100-4199/10000",
        );
        assert.deepStrictEqual(await bytesFrom(part), bytes.slice(100, 4200));

        const tail = await fetch(url, { headers: { range: "bytes=-5" } });
        assert.strictEqual(tail.status, 206);
        assert.deepStrictEqual(await bytesFrom(tail), bytes.slice(-5));

        const brief = await backend.signedUrl(name, { expiresIn: 1 });
        await sleep(2100);
        const refused = await fetch(brief);
        await refused.body?.cancel();
        assert.strictEqual(refused.status, expired, "expired: refused");
      } finally {
        await close();
      }
    },
  });

  Deno.test({
    name:
      `redirect: ${kind.name}: createHandler with redirect answers 307 to the storage for single blobs, as before otherwise`,
    ignore: kind.ignore,
    async fn(t) {
      const fixture = await kind.make();
      const store = new Store({
        catalog: new MemoryCatalog(),
        backend: fixture.backend,
        minPartSize: 5,
      });
      const serve = (options: HandlerOptions) =>
        Deno.serve(
          { hostname: "127.0.0.1", port: 0, onListen() {} },
          createHandler(store, { authorize: false, ...options }),
        );
      const server = serve({ redirect: true });
      const base = `http://127.0.0.1:${server.addr.port}`;
      try {
        const bytes = bytesOf(10_000, 4);
        const hash = await sha384(bytes);
        await store.put(bytes, hash, bytes.length);
        const url = `${base}/blobs/${hash}`;

        await t.step(
          "GET: 307 to a short-lived URL on the storage",
          async () => {
            const res = await fetch(url, { redirect: "manual" });
            assert.strictEqual(res.status, 307);
            const location = res.headers.get("location")!;
            assert.notStrictEqual(new URL(location).origin, base);
            assert.strictEqual(res.headers.get("etag"), `"${hash}"`);
            assert.strictEqual(
              res.headers.get("cache-control"),
              "private, max-age=150",
            );
            await res.body?.cancel();
          },
        );

        await t.step(
          "GET followed: the exact bytes, from the storage",
          async () => {
            const res = await fetch(url);
            assert.strictEqual(res.status, 200);
            assert(res.redirected && !res.url.startsWith(base));
            assert.deepStrictEqual(await bytesFrom(res), bytes);
          },
        );

        await t.step(
          "Range GET followed: fetch sends Range again, the exact slice",
          async () => {
            const res = await fetch(url, {
              headers: { range: "bytes=4000-8999" },
            });
            assert.strictEqual(res.status, 206);
            assert(res.redirected);
            assert.strictEqual(
              res.headers.get("content-range"),
              "bytes 4000-8999/10000",
            );
            assert.deepStrictEqual(
              await bytesFrom(res),
              bytes.slice(4000, 9000),
            );
          },
        );

        await t.step("HEAD: 200 from the service, no redirect", async () => {
          const res = await fetch(url, { method: "HEAD", redirect: "manual" });
          assert.strictEqual(res.status, 200);
          assert.strictEqual(res.headers.get("content-length"), "10000");
          assert.strictEqual(res.headers.get("etag"), `"${hash}"`);
        });

        await t.step("If-None-Match: 304, no redirect", async () => {
          const res = await fetch(url, {
            redirect: "manual",
            headers: { "if-none-match": `"${hash}"` },
          });
          assert.strictEqual(res.status, 304);
          assert.strictEqual(res.headers.get("location"), null);
        });

        await t.step(
          "If-Match (which the storage's ETag would fail): streamed",
          async () => {
            const res = await fetch(url, {
              redirect: "manual",
              headers: { "if-match": `"${hash}"`, range: "bytes=10-19" },
            });
            assert.strictEqual(res.status, 206);
            assert.deepStrictEqual(await bytesFrom(res), bytes.slice(10, 20));
          },
        );

        await t.step("a multipart blob: streamed as before", async () => {
          const parts = [bytesOf(3000, 5), bytesOf(2000, 6)];
          const hashes = await Promise.all(parts.map((p) => sha384(p)));
          const id = await store.newUpload(new Date(Date.now() + 3600_000));
          for (const [i, part] of parts.entries()) {
            await store.putPart(id, i, part, part.length, i * 3000, hashes[i]);
          }
          const { hash: whole } = await new MultipartBlobs(store).finish(
            id,
            hashes.map((hash) => ({ hash })),
          );
          const res = await fetch(`${base}/blobs/${whole}`, {
            redirect: "manual",
          });
          assert.strictEqual(res.status, 200);
          assert.deepStrictEqual(
            await bytesFrom(res),
            new Uint8Array([...parts[0], ...parts[1]]),
          );
          const range = await fetch(`${base}/blobs/${whole}`, {
            redirect: "manual",
            headers: { range: "bytes=2990-3009" },
          });
          assert.strictEqual(range.status, 206);
          assert.deepStrictEqual(
            await bytesFrom(range),
            new Uint8Array([...parts[0].slice(2990), ...parts[1].slice(0, 10)]),
          );
        });

        await t.step("an absent blob: 404", async () => {
          const res = await fetch(`${base}/blobs/${"0".repeat(96)}`, {
            redirect: "manual",
          });
          assert.strictEqual(res.status, 404);
          await res.body?.cancel();
        });

        await t.step(
          "reads behind a bearer token: the token is not needed at the storage",
          async () => {
            const guarded = serve({
              redirect: true,
              authorize: bearerToken("s3cret"),
              authorizeReads: true,
            });
            try {
              const guardedUrl =
                `http://127.0.0.1:${guarded.addr.port}/blobs/${hash}`;
              const denied = await fetch(guardedUrl, { redirect: "manual" });
              assert.strictEqual(denied.status, 401);
              await denied.body?.cancel();
              const res = await fetch(guardedUrl, {
                headers: { authorization: "Bearer s3cret" },
              });
              assert.strictEqual(res.status, 200);
              assert(res.redirected);
              assert.deepStrictEqual(await bytesFrom(res), bytes);
            } finally {
              await guarded.shutdown();
            }
          },
        );

        await t.step(
          "redirect: { expiresIn: 1 }: the storage refuses the URL after it",
          async () => {
            const brief = serve({ redirect: { expiresIn: 1 } });
            try {
              const res = await fetch(
                `http://127.0.0.1:${brief.addr.port}/blobs/${hash}`,
                { redirect: "manual" },
              );
              assert.strictEqual(res.status, 307);
              assert.strictEqual(
                res.headers.get("cache-control"),
                "private, max-age=0",
              );
              await sleep(2100);
              const refused = await fetch(res.headers.get("location")!);
              await refused.body?.cancel();
              assert.strictEqual(refused.status, fixture.expired);
            } finally {
              await brief.shutdown();
            }
          },
        );
      } finally {
        await server.shutdown();
        await fixture.close();
      }
    },
  });
}

Deno.test("redirect: a backend without signedUrl (memory, Swift without a key) streams as before", async () => {
  const backends: Backend[] = [new MemoryBackend()];
  const swift = new SwiftBackend({ ...V1, bucket: "never-used" });
  assert.strictEqual(swift.signedUrl, undefined, "no key, no signedUrl");
  for (const backend of backends) {
    const store = new Store({ catalog: new MemoryCatalog(), backend });
    const handler = createHandler(store, { authorize: false, redirect: true });
    const bytes = bytesOf(1000, 7);
    const hash = await sha384(bytes);
    await store.put(bytes, hash, bytes.length);
    const res = await handler(new Request(`http://x/blobs/${hash}`));
    assert.strictEqual(res.status, 200);
    assert.deepStrictEqual(await bytesFrom(res), bytes);
    const part = await handler(
      new Request(`http://x/blobs/${hash}`, {
        headers: { range: "bytes=5-9" },
      }),
    );
    assert.strictEqual(part.status, 206);
    assert.deepStrictEqual(await bytesFrom(part), bytes.slice(5, 10));
  }
});

Deno.test("redirect: a handler with a signing backend redirects only when asked, and checks expiresIn", async () => {
  const signing = Object.assign(new MemoryBackend(), {
    signedUrl: (name: string, { expiresIn }: { expiresIn: number }) =>
      Promise.resolve(`https://storage.example.com/${name}?ttl=${expiresIn}`),
  });
  const store = new Store({ catalog: new MemoryCatalog(), backend: signing });
  const bytes = bytesOf(100, 8);
  const hash = await sha384(bytes);
  await store.put(bytes, hash, bytes.length);
  const get = (options: HandlerOptions) =>
    createHandler(store, { authorize: false, ...options })(
      new Request(`http://x/blobs/${hash}`),
    );
  const off = await get({});
  assert.strictEqual(off.status, 200);
  await off.body?.cancel();
  const on = await get({ redirect: { expiresIn: 60 } });
  assert.strictEqual(on.status, 307);
  assert.match(
    on.headers.get("location")!,
    /^https:\/\/storage\.example\.com\/.+\?ttl=60$/,
  );
  assert.strictEqual(on.headers.get("cache-control"), "private, max-age=30");
  for (const expiresIn of [0, 1.5, 604_801]) {
    assert.throws(
      () => createHandler(store, { authorize: false, redirect: { expiresIn } }),
      BadParamsError,
    );
  }
});
