/**
 * SwiftBackend against a real Swift: v1 auth (tempauth proxy) and Keystone
 * v3 (second proxy behind authtoken + keystoneauth), both started by
 * `scripts/swift.sh` (run by `deno task test`). The backend contract on
 * both auth paths and with small SLO segments, the store contract (with
 * MemoryCatalog, and with MongoCatalog on FerretDB at MONGODB_URL), and the
 * Swift-specific checks: token expiry and renewal, 401 re-authentication
 * (shared by concurrent requests), puts that fail halfway leave nothing in
 * either container, segments of puts killed before their manifest are
 * found and removed by the orphan sweep (past its grace period only),
 * Static Large Objects and ranges across their segments,
 * and errors that never show a secret or a token.
 *
 * Reads SWIFT_AUTH_URL (v1), KEYSTONE_AUTH_URL (v3) and MONGODB_URL; every test works
 * in containers of its own, removed at its end.
 *
 * @module
 */

import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert";
import { SwiftBackend } from "./backend.ts";
import type { SwiftParams } from "./params.ts";
import { SwiftAuth, type SwiftCredentials } from "./auth.ts";
import { SwiftError } from "./error.ts";
import type { FetchFn } from "../request.ts";
import { MemoryCatalog } from "../memory/catalog.ts";
import { MongoCatalog } from "../mongo/catalog.ts";
import { MongoClient } from "mongodb";
import { BadParamsError, HashMismatchError, NotFoundError } from "../errors.ts";
import { newBlobName } from "../names.ts";
import { Store } from "../store.ts";
import { sweepOrphans } from "../sweep.ts";
import { testBackendContract } from "../../tests/backend_contract.ts";
import {
  bytesOf,
  chunkedStream,
  collect,
  failingStream,
  generatedStream,
  hashOf,
  readAll,
} from "../../tests/helpers.ts";
import { MONGODB_URL, serviceAvailable } from "../../tests/services.ts";
import { testStoreContract } from "../../tests/store_contract.ts";

const V1: SwiftCredentials = {
  authURL: Deno.env.get("SWIFT_AUTH_URL") ??
    "http://127.0.0.1:8390/auth/v1.0",
  tenant: "test",
  username: "tester",
  secret: "testing",
};

const V3: SwiftCredentials = {
  authURL: Deno.env.get("KEYSTONE_AUTH_URL") ?? "http://127.0.0.1:8392/v3",
  tenant: "test",
  username: "tester",
  secret: "testing",
  domain: "Default",
};

const v1ok = await serviceAvailable("Swift (v1 auth)", async () => {
  await new SwiftAuth(V1, { timeoutMs: 5000 }).session();
});
const v3ok = await serviceAvailable("Swift behind Keystone (v3)", async () => {
  const { token, storageURL } = await new SwiftAuth(V3, { timeoutMs: 5000 })
    .session();
  const res = await fetch(storageURL, {
    method: "HEAD",
    headers: { "X-Auth-Token": token },
  });
  if (!res.ok) throw new Error(`HEAD account: HTTP ${res.status}`);
});

// ---- fixtures ----

const run = crypto.randomUUID().slice(0, 8);
let containers = 0;

/** A fresh container name for this test run. */
function freshBucket(): string {
  return `blobstore-test-${run}-${containers++}`;
}

/** Raw access to a container pair, for checks and cleanup. */
class Containers {
  readonly auth: SwiftAuth;
  constructor(readonly credentials: SwiftCredentials, readonly bucket: string) {
    this.auth = new SwiftAuth(credentials);
  }

  async names(container: string): Promise<string[]> {
    const { token, storageURL } = await this.auth.session();
    const res = await fetch(
      `${storageURL}/${encodeURIComponent(container)}?format=json`,
      { headers: { "X-Auth-Token": token } },
    );
    if (res.status === 404) {
      await res.body?.cancel();
      return [];
    }
    ok(res.ok, `listing ${container}: HTTP ${res.status}`);
    return ((await res.json()) as { name: string }[]).map((o) => o.name);
  }

  /** Names in the blob container and in the segment container. */
  async everything(): Promise<{ objects: string[]; segments: string[] }> {
    return {
      objects: await this.names(this.bucket),
      segments: await this.names(`${this.bucket}_segments`),
    };
  }

  async drop(): Promise<void> {
    const { token, storageURL } = await this.auth.session();
    for (const container of [this.bucket, `${this.bucket}_segments`]) {
      for (const name of await this.names(container)) {
        const res = await fetch(
          `${storageURL}/${encodeURIComponent(container)}/${name}`,
          { method: "DELETE", headers: { "X-Auth-Token": token } },
        );
        await res.body?.cancel();
      }
      const res = await fetch(
        `${storageURL}/${encodeURIComponent(container)}`,
        {
          method: "DELETE",
          headers: { "X-Auth-Token": token },
        },
      );
      await res.body?.cancel();
    }
  }
}

interface Fixture {
  backend: SwiftBackend;
  containers: Containers;
  close(): Promise<void>;
}

function openFixture(
  credentials: SwiftCredentials,
  extra: Partial<SwiftParams> = {},
): Promise<Fixture> {
  const bucket = freshBucket();
  const containers = new Containers(credentials, bucket);
  return Promise.resolve({
    backend: new SwiftBackend({ ...credentials, bucket, ...extra }),
    containers,
    close: () => containers.drop(),
  });
}

async function withFixture(
  credentials: SwiftCredentials,
  extra: Partial<SwiftParams>,
  fn: (f: Fixture) => Promise<void>,
): Promise<void> {
  const fixture = await openFixture(credentials, extra);
  try {
    await fn(fixture);
  } finally {
    await fixture.close();
  }
}

async function putBytes(
  backend: SwiftBackend,
  bytes: Uint8Array,
  chunkSize = 64 * 1024,
): Promise<string> {
  const hash = hashOf(bytes);
  const name = newBlobName(hash);
  await backend.put(name, chunkedStream(bytes, chunkSize), bytes.length, hash);
  return name;
}

/**
 * A fetch that counts authentications and can spoil tokens: `spoilNext`
 * replaces the token of the next storage request; `spoilIssued` hands the
 * backend a bad token from the next authentication (as if revoked at once);
 * `lifetimeS` shortens what the auth answer says about expiry.
 */
class TestFetch {
  auths = 0;
  spoilNext = false;
  spoilIssued = false;
  lifetimeS: number | undefined;
  readonly fetch: FetchFn = async (input, init) => {
    const url = String(input);
    const isAuth = url.includes("/auth/");
    if (isAuth) this.auths++;
    const headers = new Headers(init?.headers);
    if (!isAuth && this.spoilNext) {
      this.spoilNext = false;
      headers.set("X-Auth-Token", "spoiled-token");
    }
    const res = await fetch(input, { ...init, headers });
    if (!isAuth || (!this.spoilIssued && this.lifetimeS === undefined)) {
      return res;
    }
    const outHeaders = new Headers(res.headers);
    let body = await res.text();
    if (this.spoilIssued) {
      this.spoilIssued = false;
      for (const h of ["X-Auth-Token", "X-Storage-Token", "X-Subject-Token"]) {
        if (outHeaders.has(h)) outHeaders.set(h, "revoked-token");
      }
    }
    if (this.lifetimeS !== undefined) {
      const expires = new Date(Date.now() + this.lifetimeS * 1000);
      if (outHeaders.has("X-Auth-Token-Expires")) {
        outHeaders.set("X-Auth-Token-Expires", String(this.lifetimeS));
      }
      body = body.replace(
        /"expires_at": ?"[^"]+"/,
        `"expires_at": "${expires.toISOString()}"`,
      );
    }
    outHeaders.delete("Content-Length");
    return new Response(body, { status: res.status, headers: outHeaders });
  };
}

const authPaths = [["v1", V1, v1ok], ["v3", V3, v3ok]] as const;

// ---- the contract suites ----

for (const [version, credentials, available] of authPaths) {
  Deno.test({
    name: `SwiftBackend (${version} auth): backend contract`,
    ignore: !available,
    fn: async (t) => {
      await testBackendContract(t, () => openFixture(credentials));
    },
  });
}

Deno.test({
  name: "SwiftBackend with 16 KiB SLO segments: backend contract",
  ignore: !v1ok,
  fn: async (t) => {
    await testBackendContract(
      t,
      () => openFixture(V1, { segmentSize: 16 * 1024 }),
    );
  },
});

Deno.test({
  name: "MemoryCatalog + SwiftBackend: store contract",
  ignore: !v1ok,
  fn: async (t) => {
    await testStoreContract(t, async () => {
      const { backend, close } = await openFixture(V1);
      return { catalog: new MemoryCatalog(), backend, close };
    });
  },
});

const mongoOk = await serviceAvailable(
  `MongoDB server at ${MONGODB_URL}`,
  async () => {
    const client = await MongoClient.connect(MONGODB_URL, {
      serverSelectionTimeoutMS: 3000,
    });
    await client.close();
  },
);

Deno.test({
  name: "MongoCatalog + SwiftBackend: store contract",
  ignore: !v1ok || !mongoOk,
  fn: async (t) => {
    const client = await MongoClient.connect(MONGODB_URL);
    try {
      await testStoreContract(t, async () => {
        const db = client.db(
          `blobstore_swift_${crypto.randomUUID().slice(0, 8)}`,
        );
        const { backend, close } = await openFixture(V1);
        return {
          catalog: new MongoCatalog(db, "blobstore"),
          backend,
          close: async () => {
            await close();
            await db.dropDatabase();
          },
        };
      });
    } finally {
      await client.close();
    }
  },
});

// ---- Swift-specific checks ----

for (const [version, credentials, available] of authPaths) {
  Deno.test({
    name: `SwiftBackend (${version} auth): Swift specifics`,
    ignore: !available,
    fn: async (t) => {
      await t.step("a renewed token before it expires", async () => {
        const spy = new TestFetch();
        spy.lifetimeS = 3; // renewed 0.75 s before its end
        await withFixture(credentials, { fetch: spy.fetch }, async (f) => {
          const authenticated = Date.now();
          const name = await putBytes(f.backend, bytesOf(1000));
          await readAll((await f.backend.get(name)).body);
          if (Date.now() - authenticated < 2000) {
            strictEqual(spy.auths, 1, "a fresh token is reused");
          }
          const renewal = authenticated + 2400 - Date.now();
          await new Promise((resolve) => setTimeout(resolve, renewal));
          await readAll((await f.backend.get(name)).body);
          strictEqual(spy.auths, 2, "renewed before it expires");
        });
      });

      await t.step("a 401 re-authenticates once and retries", async () => {
        const spy = new TestFetch();
        await withFixture(credentials, { fetch: spy.fetch }, async (f) => {
          const bytes = bytesOf(5000, 2);
          const name = await putBytes(f.backend, bytes);
          strictEqual(spy.auths, 1);
          spy.spoilNext = true;
          deepStrictEqual(
            await readAll((await f.backend.get(name)).body),
            bytes,
          );
          strictEqual(spy.auths, 2);
          spy.spoilNext = true;
          strictEqual((await collect(f.backend.list())).length, 1);
          strictEqual(spy.auths, 3);
          spy.spoilNext = true;
          await f.backend.remove(name);
          strictEqual(spy.auths, 4);
          await rejects(f.backend.get(name), NotFoundError);
        });
      });

      await t.step(
        "a refused token: a put re-authenticates before streaming",
        async () => {
          const spy = new TestFetch();
          spy.spoilIssued = true;
          await withFixture(credentials, { fetch: spy.fetch }, async (f) => {
            const bytes = bytesOf(300_000, 3);
            const name = await putBytes(f.backend, bytes);
            strictEqual(spy.auths, 2);
            deepStrictEqual(
              await readAll((await f.backend.get(name)).body),
              bytes,
            );
          });
        },
      );

      await t.step(
        "concurrent requests share one authentication",
        async () => {
          const spy = new TestFetch();
          await withFixture(credentials, { fetch: spy.fetch }, async (f) => {
            const bytes = bytesOf(2000, 4);
            const name = await putBytes(f.backend, bytes);
            const fresh = new SwiftBackend({
              ...credentials,
              bucket: f.containers.bucket,
              fetch: spy.fetch,
            });
            spy.auths = 0;
            spy.spoilIssued = true; // the first token is refused by Swift
            const bodies = await Promise.all(
              Array.from(
                { length: 6 },
                async () => readAll((await fresh.get(name)).body),
              ),
            );
            for (const body of bodies) deepStrictEqual(body, bytes);
            strictEqual(spy.auths, 2, "one auth, then one re-auth for all");
          });
        },
      );

      await t.step(
        "a source failing halfway leaves no object (listing)",
        async () => {
          await withFixture(credentials, {}, async (f) => {
            const keep = await putBytes(f.backend, bytesOf(100, 5));
            const bytes = bytesOf(4 << 20, 6);
            const name = newBlobName(hashOf(bytes));
            const failure = new Error("client went away");
            await rejects(
              f.backend.put(
                name,
                failingStream(bytes, 2 << 20, failure),
                bytes.length,
                hashOf(bytes),
              ),
              (err) => err === failure,
            );
            deepStrictEqual(await f.containers.everything(), {
              objects: [keep],
              segments: [],
            });
          });
        },
      );
    },
  });
}

Deno.test({
  name: "SwiftBackend: Static Large Objects",
  ignore: !v1ok,
  fn: async (t) => {
    const segmentSize = 64 * 1024;

    await t.step(
      "written as segments plus a manifest; ranges cross segment boundaries",
      async () => {
        await withFixture(V1, { segmentSize }, async (f) => {
          const bytes = bytesOf(5 * segmentSize + 1234, 7);
          // chunks that straddle segment boundaries
          const name = await putBytes(f.backend, bytes, 50_000);
          const { objects, segments } = await f.containers.everything();
          deepStrictEqual(objects, [name]);
          deepStrictEqual(
            segments,
            [0, 1, 2, 3, 4, 5].map((i) =>
              `${f.containers.bucket}/${name}/0000000${i}`
            ),
          );
          deepStrictEqual(
            (await collect(f.backend.list())).map((o) => [o.name, o.size]),
            [[name, bytes.length]],
            "the listing shows the whole blob, not its segments",
          );
          const whole = await f.backend.get(name);
          strictEqual(whole.size, bytes.length);
          deepStrictEqual(await readAll(whole.body), bytes);
          const ranges: [number, number | undefined][] = [
            [segmentSize - 10, segmentSize + 10],
            [segmentSize, 2 * segmentSize],
            [segmentSize - 1, 4 * segmentSize + 1],
            [5 * segmentSize - 1, undefined],
            [5 * segmentSize + 1233, 5 * segmentSize + 1234],
            [bytes.length, undefined],
            [bytes.length + 5, bytes.length + 10],
            [777, 777],
          ];
          for (const [start, end] of ranges) {
            const got = await f.backend.get(name, { start, end });
            strictEqual(got.size, bytes.length, `size for ${start}-${end}`);
            deepStrictEqual(
              await readAll(got.body),
              bytes.slice(start, end),
              `bytes ${start}-${end}`,
            );
          }
          await f.backend.remove(name);
          deepStrictEqual(await f.containers.everything(), {
            objects: [],
            segments: [],
          }, "segments are removed with the manifest");
          await rejects(f.backend.get(name), NotFoundError);
          await f.backend.remove(name);
        });
      },
    );

    await t.step(
      "a failed verification removes the segments already written",
      async () => {
        await withFixture(V1, { segmentSize }, async (f) => {
          const bytes = bytesOf(3 * segmentSize + 5, 8);
          const name = newBlobName(hashOf("other"));
          await rejects(
            f.backend.put(
              name,
              chunkedStream(bytes, 10_000),
              bytes.length,
              hashOf("other"),
            ),
            HashMismatchError,
          );
          deepStrictEqual(await f.containers.everything(), {
            objects: [],
            segments: [],
          });
        });
      },
    );

    await t.step(
      "a source failing in a later segment leaves nothing",
      async () => {
        await withFixture(V1, { segmentSize }, async (f) => {
          const bytes = bytesOf(4 * segmentSize, 9);
          const name = newBlobName(hashOf(bytes));
          const failure = new Error("client went away");
          await rejects(
            f.backend.put(
              name,
              failingStream(bytes, 2 * segmentSize + 100, failure),
              bytes.length,
              hashOf(bytes),
            ),
            (err) => err === failure,
          );
          deepStrictEqual(await f.containers.everything(), {
            objects: [],
            segments: [],
          });
        });
      },
    );

    await t.step("more than 1000 segments is refused before any write", () => {
      const backend = new SwiftBackend({
        ...V1,
        bucket: freshBucket(),
        segmentSize: 10,
      });
      return rejects(
        backend.put("x", generatedStream(10_001), 10_001, hashOf("x")),
        BadParamsError,
      );
    });
  },
});

/**
 * Puts `bytes` as `name` the way a put killed midway leaves it: the source
 * fails once `written` bytes are in, and every DELETE fails too, so that
 * the backend's own cleanup cannot run (a killed process runs none).
 */
async function killedPut(
  f: Fixture,
  segmentSize: number,
  name: string,
  bytes: Uint8Array,
  written: number,
): Promise<void> {
  const noDeletes: FetchFn = (input, init) =>
    init?.method === "DELETE"
      ? Promise.reject(new TypeError("cleanup disabled by the test"))
      : fetch(input, init);
  const dying = new SwiftBackend({
    ...V1,
    bucket: f.containers.bucket,
    segmentSize,
    fetch: noDeletes,
    retries: 0,
  });
  const killed = new Error("process killed");
  await rejects(
    dying.put(
      name,
      failingStream(bytes, written, killed),
      bytes.length,
      hashOf(bytes),
    ),
    (err) => err === killed,
  );
}

Deno.test({
  name: "SwiftBackend: the orphan sweep removes segments of killed puts",
  ignore: !v1ok,
  fn: async (t) => {
    const segmentSize = 16 * 1024;
    await withFixture(V1, { segmentSize }, async (f) => {
      const store = new Store({
        catalog: new MemoryCatalog(),
        backend: f.backend,
      });
      const bucket = f.containers.bucket;
      const complete = bytesOf(3 * segmentSize + 100, 21);
      await store.put(complete, hashOf(complete), complete.length);
      const [completeName] = await f.containers.names(bucket);
      const oldBytes = bytesOf(4 * segmentSize, 22);
      const oldName = newBlobName(hashOf(oldBytes));
      const youngBytes = bytesOf(4 * segmentSize, 23);
      const youngName = newBlobName(hashOf(youngBytes));
      const segmentsOf = (name: string, count: number) =>
        Array.from(
          { length: count },
          (_, i) => `${bucket}/${name}/0000000${i}`,
        );

      await t.step("a killed put leaves segments but no manifest", async () => {
        await killedPut(f, segmentSize, oldName, oldBytes, 2 * segmentSize + 5);
        // the young set is written strictly later, so that a cut-off can fall
        // between the two whatever the machine's load (a sleep only widens
        // the gap)
        await new Promise((resolve) => setTimeout(resolve, 50));
        await killedPut(
          f,
          segmentSize,
          youngName,
          youngBytes,
          2 * segmentSize + 5,
        );
        const { objects, segments } = await f.containers.everything();
        deepStrictEqual(objects, [completeName]);
        deepStrictEqual(
          segments,
          [
            ...segmentsOf(completeName, 4),
            ...segmentsOf(oldName, 2),
            ...segmentsOf(youngName, 2),
          ].sort(),
        );
      });

      await t.step(
        "list() shows each set without a manifest under its blob's name",
        async () => {
          const listed = await collect(f.backend.list());
          deepStrictEqual(
            listed.map((o) => [o.name, o.size]).sort(),
            [
              [completeName, complete.length],
              [oldName, 2 * segmentSize],
              [youngName, 2 * segmentSize],
            ].sort(),
          );
        },
      );

      await t.step(
        "a sweep with a long grace period removes nothing",
        async () => {
          deepStrictEqual(await store.sweepOrphans({ olderThan: 3600_000 }), {
            examined: 3,
            removed: 0,
            removedBytes: 0,
          });
        },
      );

      await t.step(
        "a sweep removes the old set only: the young one may be a put in flight",
        async () => {
          const listed = await collect(f.backend.list());
          const young = listed.find((o) => o.name === youngName)!;
          const old = listed.find((o) => o.name === oldName)!;
          ok(old.modified < young.modified, "the old set is older");
          // the cut-off just before the young set's newest segment
          const now = new Date(young.modified.getTime() - 1);
          deepStrictEqual(
            await sweepOrphans(store.catalog, f.backend, 0, now),
            {
              examined: 3,
              removed: 1,
              removedBytes: 2 * segmentSize,
            },
          );
          const { objects, segments } = await f.containers.everything();
          deepStrictEqual(objects, [completeName]);
          deepStrictEqual(
            segments,
            [...segmentsOf(completeName, 4), ...segmentsOf(youngName, 2)]
              .sort(),
          );
        },
      );

      await t.step(
        "once old enough, the other set goes too; the complete blob stays",
        async () => {
          deepStrictEqual(await store.sweepOrphans({ olderThan: 0 }), {
            examined: 2,
            removed: 1,
            removedBytes: 2 * segmentSize,
          });
          deepStrictEqual(await f.containers.everything(), {
            objects: [completeName],
            segments: segmentsOf(completeName, 4),
          });
          deepStrictEqual(
            await readAll((await store.open(hashOf(complete))).body),
            complete,
          );
        },
      );

      await t.step(
        "a backend of another bucket sharing the segment container sees none of it",
        async () => {
          const other = new SwiftBackend({
            ...V1,
            bucket: freshBucket(),
            segmentContainer: `${bucket}_segments`,
          });
          deepStrictEqual(await collect(other.list()), []);
          await other.remove(completeName);
          deepStrictEqual(await f.containers.everything(), {
            objects: [completeName],
            segments: segmentsOf(completeName, 4),
          });
        },
      );
    });
  },
});

Deno.test({
  name: "SwiftBackend (v3 auth): endpointURL overrides the catalog",
  ignore: !v3ok,
  fn: async () => {
    const { storageURL } = await new SwiftAuth(V3).session();
    let calledStorage = false;
    const spy: FetchFn = (input, init) => {
      if (String(input).startsWith(`${storageURL}/`)) calledStorage = true;
      return fetch(input, init);
    };
    await withFixture(
      V3,
      { endpointURL: `${storageURL}/`, fetch: spy },
      async (f) => {
        const bytes = bytesOf(1000, 10);
        const name = await putBytes(f.backend, bytes);
        deepStrictEqual(await readAll((await f.backend.get(name)).body), bytes);
        ok(calledStorage);
      },
    );
  },
});

Deno.test({
  name: "SwiftBackend: errors show the status and Swift's text, never a secret",
  ignore: !v1ok || !v3ok,
  fn: async (t) => {
    for (const [version, credentials] of authPaths) {
      await t.step(`wrong password (${version})`, async () => {
        const secret = "wrong-secret-1234";
        const backend = new SwiftBackend({
          ...credentials,
          secret,
          bucket: freshBucket(),
        });
        const err = await backend.get("x").catch((e) => e);
        ok(err instanceof SwiftError, String(err));
        strictEqual(err.status, 401);
        ok(!err.message.includes(secret), err.message);
      });
    }

    await t.step("a token Swift keeps refusing", async () => {
      const issued: string[] = [];
      const spy: FetchFn = async (input, init) => {
        const res = await fetch(input, init);
        const token = res.headers.get("X-Auth-Token");
        if (token) issued.push(token);
        if (String(input).includes("/auth/")) return res;
        await res.body?.cancel();
        // a server that echoes the token it refuses
        const sent = new Headers(init?.headers).get("X-Auth-Token");
        return new Response(`Unauthorized: token ${sent} is not valid`, {
          status: 401,
        });
      };
      const backend = new SwiftBackend({
        ...V1,
        bucket: freshBucket(),
        fetch: spy,
      });
      const err = await backend.get("x").catch((e) => e);
      ok(err instanceof SwiftError, String(err));
      strictEqual(err.status, 401);
      ok(err.message.includes("Unauthorized"), err.message);
      strictEqual(issued.length, 2, "one re-authentication");
      for (const token of issued) ok(!err.message.includes(token), err.message);
      ok(!err.message.includes(V1.secret), err.message);
    });

    await t.step("an answer that never comes hits timeoutMs", async () => {
      const hanging: FetchFn = (_input, init) =>
        new Promise((_resolve, reject) => {
          init?.signal?.addEventListener(
            "abort",
            () => reject(init.signal!.reason),
          );
        });
      const backend = new SwiftBackend({
        ...V1,
        bucket: freshBucket(),
        fetch: hanging,
        timeoutMs: 100,
      });
      const err = await backend.get("x").catch((e) => e);
      ok(err instanceof SwiftError, String(err));
      strictEqual(err.status, 0);
      ok(/timeoutMs/.test(err.message), err.message);
    });
  },
});

Deno.test("SwiftBackend: parameters are checked", () => {
  const base = { ...V1, bucket: "b" };
  for (
    const bad of [
      { bucket: "" },
      { bucket: "a/b" },
      { segmentSize: 0 },
      { segmentSize: 1.5 },
      { segmentContainer: "b" },
      { authURL: "http://127.0.0.1:5000/v2.0" },
      { authURL: "not a url" },
      { secret: "" },
    ]
  ) {
    try {
      new SwiftBackend({ ...base, ...bad });
    } catch (err) {
      ok(err instanceof BadParamsError, String(err));
      ok(!(err as Error).message.includes(V1.secret));
      continue;
    }
    throw new Error(`accepted ${JSON.stringify(bad)}`);
  }
});
