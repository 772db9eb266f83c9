/**
 * tus-js-client (its Node build, run by Deno on node:http) against the
 * real server (`main.ts serve`, as `deno task start` runs it, in a
 * subprocess on a temporary data directory), through a TCP proxy that
 * cuts the connection mid-body at random points: 64 MiB of random bytes
 * in one PATCH and in 8 MiB PATCHes, each cut three times and resumed
 * from the server's offset (the client HEADs, then PATCHes from there),
 * once with the server SIGKILLed and restarted on the same data between
 * two resumptions and a new client picking the upload URL from its URL
 * storage. The blob is then read back by the hash the server gave, and
 * must be exactly the bytes.
 *
 * The cut points are printed; `TUS_TEST_SEED` replays a run.
 *
 * @module
 */

import assert from "node:assert";
import { Buffer } from "node:buffer";
import { Agent } from "node:http";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { type ServerProcess, startServer } from "./server_process.ts";
import { CuttingProxy } from "./tcp_proxy.ts";
import { type Tus, tus, tusAvailable } from "./tus_js_client.ts";

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
/** How long one upload may take before the test fails (they take seconds). */
const UPLOAD_TIMEOUT_MS = 60_000;

// ---- random, replayable ----

const SEED = Number(Deno.env.get("TUS_TEST_SEED") ?? Date.now() % 2 ** 31);
let state = SEED || 1;
/** A number in [0, 1) from a xorshift generator seeded with {@linkcode SEED}. */
function random(): number {
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  return (state >>> 0) / 2 ** 32;
}

/**
 * Three cut points: the numbers of client bytes (through the proxy, from
 * the start) after which the connection is cut, sorted, at least 1 MiB
 * apart, within the first `size` bytes.
 */
function cutPoints(size: number, count = 3): number[] {
  for (;;) {
    const points = Array.from(
      { length: count },
      () => Math.floor(MiB / 2 + random() * (size - MiB)),
    ).sort((a, b) => a - b);
    if (points.every((p, i) => i === 0 || p - points[i - 1] >= MiB)) {
      return points;
    }
  }
}

function randomBytes(size: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) {
    crypto.getRandomValues(bytes.subarray(at, at + 65536));
  }
  return bytes;
}

function sha384Hex(bytes: Uint8Array): string {
  return createHash("sha384").update(bytes).digest("hex");
}

// ---- the client ----

/** One request tus-js-client sent, and what came back (status 0: it failed). */
interface Exchange {
  method: string;
  url: string;
  /** The `Upload-Offset` the request carried (PATCH). */
  offset?: number;
  status: number;
  /** The `Upload-Offset` the answer carried. */
  answered?: number;
}

/** A tus-js-client upload with its log and a promise of its end. */
interface Running {
  upload: Tus.Upload;
  log: Exchange[];
  done: Promise<Tus.HttpResponse>;
  /** Aborts it, as a client that goes away does: the upload stays on the server. */
  abort(): Promise<void>;
}

/**
 * Starts (or, with `previous`, resumes) an upload of `bytes` to
 * `endpoint` with tus-js-client, logging every exchange.
 */
function startUpload(
  bytes: Uint8Array<ArrayBuffer>,
  endpoint: string,
  options: Partial<Tus.UploadOptions> = {},
  previous?: (upload: Tus.Upload) => Promise<void>,
): Running {
  const log: Exchange[] = [];
  let upload!: Tus.Upload;
  let fail!: (err: Error) => void;
  const done = new Promise<Tus.HttpResponse>((resolve, reject) => {
    fail = reject;
    upload = new tus.Upload(
      Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
      {
        endpoint,
        // One request a connection, so the proxy cuts only bodies the
        // server reads (see CuttingProxy's skipAnswered).
        httpStack: new tus.DefaultHttpStack({
          agent: new Agent({ keepAlive: false }),
        }),
        removeFingerprintOnSuccess: true,
        metadata: {
          filename: "random.bin",
          filetype: "application/octet-stream",
        },
        // Retries follow each cut at once; a 423 (the server still ending
        // the cut PATCH) or a refused connection waits a little.
        retryDelays: [0, 100, 250, 500, 1000, 2000],
        onAfterResponse(req, res) {
          const offset = req.getHeader("Upload-Offset");
          const answered = res.getHeader("Upload-Offset");
          log.push({
            method: req.getMethod(),
            url: req.getURL(),
            offset: offset === undefined ? undefined : Number(offset),
            status: res.getStatus(),
            answered: answered === undefined ? undefined : Number(answered),
          });
        },
        onShouldRetry(err) {
          const req = err.originalRequest;
          if (!err.originalResponse) {
            const offset = req.getHeader("Upload-Offset");
            log.push({
              method: req.getMethod(),
              url: req.getURL(),
              offset: offset === undefined ? undefined : Number(offset),
              status: 0,
            });
            return true;
          }
          const status = err.originalResponse.getStatus();
          return status >= 500 || status === 409 || status === 423;
        },
        onSuccess: ({ lastResponse }) => resolve(lastResponse),
        onError: reject,
        ...options,
      },
    );
  });
  const timed = withTimeout(done, UPLOAD_TIMEOUT_MS, "the upload");
  const started = previous ? previous(upload) : Promise.resolve();
  started.then(() => upload.start(), () => {});
  return {
    upload,
    log,
    done: started.then(() => timed),
    async abort() {
      await upload.abort();
      fail(new Error("aborted"));
    },
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${what} took more than ${ms} ms`)),
        ms,
      );
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * The blob's hash from a finished upload's answer: `Upload-Metadata`'s
 * `sha384` (base64 of the hex), which `Content-Location` names too.
 */
function hashFrom(res: Tus.HttpResponse): string {
  const metadata = res.getHeader("Upload-Metadata") ?? "";
  const pair = metadata.split(",").map((p) => p.trim().split(" "))
    .find(([key]) => key === "sha384");
  assert.ok(pair?.[1], `no sha384 in Upload-Metadata: ${metadata}`);
  const hash = atob(pair[1]);
  assert.strictEqual(res.getHeader("Content-Location"), `/blobs/${hash}`);
  return hash;
}

/**
 * Cuts the proxy's connections at `points`: numbers of client bytes
 * counted from now, ascending.
 */
async function cutAt(proxy: CuttingProxy, points: number[]) {
  const base = proxy.countedBytes;
  for (const point of points) {
    await proxy.cutAfter(Math.max(0, base + point - proxy.countedBytes));
  }
}

/** Reads the blob back from the server itself and checks it is `bytes`. */
async function assertServed(
  server: ServerProcess,
  hash: string,
  bytes: Uint8Array,
) {
  assert.strictEqual(hash, sha384Hex(bytes));
  const res = await fetch(`${server.base}/blobs/${hash}`);
  assert.strictEqual(res.status, 200);
  assert.strictEqual(res.headers.get("content-length"), String(bytes.length));
  const got = new Uint8Array(await res.arrayBuffer());
  assert.strictEqual(got.length, bytes.length);
  assert.ok(Buffer.from(got).equals(bytes), "the blob's bytes differ");
}

/**
 * What every resumed upload shows in its log: `cuts` requests failed; a
 * PATCH after a HEAD starts where that HEAD said; a PATCH after a failed
 * one never starts before it (the server kept what it had), and there is
 * no second POST (the upload is never started over).
 */
function assertResumed(log: Exchange[], cuts: number) {
  const text = JSON.stringify(log, null, 1);
  assert.ok(log.filter((e) => e.status === 0).length >= cuts, text);
  assert.ok(log.filter((e) => e.method === "POST").length <= 1, text);
  let floor = 0;
  for (let i = 0; i < log.length; i++) {
    const e = log[i];
    if (e.method === "HEAD") {
      const patch = log.slice(i + 1).find((e) => e.method === "PATCH");
      if (patch) assert.strictEqual(patch.offset, e.answered, text);
    }
    if (e.method === "PATCH") {
      assert.ok(
        e.offset! >= floor,
        `a PATCH went back to ${e.offset}: ${text}`,
      );
      floor = e.offset!;
    }
  }
}

async function withServer(
  fn: (ctx: {
    dir: string;
    server: () => ServerProcess;
    restart: () => Promise<ServerProcess>;
    proxy: CuttingProxy;
  }) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "blobstore-tus-client-" });
  let server = await startServer(join(dir, "data"));
  const proxy = new CuttingProxy(server.port, { skipAnswered: true });
  try {
    await fn({
      dir,
      server: () => server,
      async restart() {
        server = await startServer(join(dir, "data"));
        proxy.target = server.port;
        return server;
      },
      proxy,
    });
  } finally {
    await proxy.close();
    await server.kill();
    await Deno.remove(dir, { recursive: true });
  }
}

console.error(`tus_client_test: TUS_TEST_SEED=${SEED}`);

Deno.test({
  name:
    "tus-js-client under Deno: 64 MiB in one PATCH, the connection cut three times at random points, resumed each time",
  ignore: !tusAvailable,
  fn: async () => {
    await withServer(async ({ server, proxy }) => {
      const bytes = randomBytes(SIZE);
      const points = cutPoints(SIZE);
      console.error(`  cut after ${points.join(", ")} client bytes`);
      const started = performance.now();
      const running = startUpload(bytes, `${proxy.url}/tus/`);
      const cutting = cutAt(proxy, points);
      const res = await running.done;
      const ms = Math.round(performance.now() - started);
      assert.strictEqual(proxy.cuts, 3, "the upload ended before every cut");
      await cutting;
      assert.strictEqual(res.getStatus(), 204);
      // One PATCH a try: chunkSize unset sends the rest of the bytes each time.
      const patches = running.log.filter((e) => e.method === "PATCH");
      assert.ok(
        patches.every((p) => p.status !== 204 || p.answered === SIZE),
        JSON.stringify(patches),
      );
      assertResumed(running.log, 3);
      const hash = hashFrom(res);
      await assertServed(server(), hash, bytes);
      // HEAD of the finished upload names the blob too.
      const head = await fetch(
        running.upload.url!.replace(proxy.url, server().base),
        {
          method: "HEAD",
          headers: { "tus-resumable": "1.0.0" },
        },
      );
      assert.strictEqual(head.status, 200);
      assert.strictEqual(head.headers.get("upload-offset"), String(SIZE));
      assert.strictEqual(
        head.headers.get("content-location"),
        `/blobs/${hash}`,
      );
      console.error(
        `  ${running.log.length} requests, ${proxy.countedBytes} client bytes counted (${proxy.upstreamBytes} in all), ${ms} ms`,
      );
    });
  },
});

Deno.test({
  name:
    "tus-js-client under Deno: 64 MiB in 8 MiB PATCHes, cut three times, the server SIGKILLed and restarted on the same data between two resumptions",
  ignore: !tusAvailable,
  fn: async () => {
    await withServer(async ({ dir, server, restart, proxy }) => {
      const bytes = randomBytes(SIZE);
      const [first, second, third] = cutPoints(SIZE);
      const killAt = Math.floor((second + third) / 2);
      console.error(
        `  cut after ${first}, ${second}, server killed at ${killAt}, cut after ${third} client bytes`,
      );
      // The upload URL lives in a file, as it would across client restarts.
      const FileUrlStorage = (tus as unknown as {
        FileUrlStorage: new (path: string) => Tus.UrlStorage;
      }).FileUrlStorage;
      const urlStorage = new FileUrlStorage(join(dir, "tus-urls.json"));
      const options = { chunkSize: 8 * MiB, urlStorage };
      const started = performance.now();

      // The first client: two cuts, then the server dies mid-PATCH.
      const one = startUpload(bytes, `${proxy.url}/tus/`, options);
      const failed = one.done.then(
        () => assert.fail("the first client finished"),
        (err) => assert.strictEqual(err.message, "aborted"),
      );
      await cutAt(proxy, [first, second]);
      await proxy.cutAfter(killAt - proxy.countedBytes, "hold");
      await one.abort(); // that client is gone too
      const url = one.upload.url!;
      assert.match(url, new RegExp(`^${proxy.url}/tus/.+`));
      const acknowledged = Math.max(
        ...one.log.map((e) => e.answered ?? 0),
      );
      assert.ok(acknowledged > 0, JSON.stringify(one.log));
      await server().kill("SIGKILL");
      proxy.dropHeld();
      await failed;
      await restart();

      // A new client finds the URL in the storage and resumes there.
      const two = startUpload(
        bytes,
        `${proxy.url}/tus/`,
        options,
        async (u) => {
          const previous = await u.findPreviousUploads();
          assert.strictEqual(previous.length, 1);
          assert.strictEqual(previous[0].uploadUrl, url);
          u.resumeFromPreviousUpload(previous[0]);
        },
      );
      await cutAt(proxy, [third - killAt]);
      const res = await two.done;
      const ms = Math.round(performance.now() - started);
      assert.strictEqual(proxy.cuts, 4);
      assert.strictEqual(res.getStatus(), 204);

      // The second client never created an upload: it HEADed the stored URL
      // first, and the server had kept every byte it had acknowledged.
      assert.strictEqual(two.log[0].method, "HEAD");
      assert.strictEqual(two.log[0].url, url);
      assert.ok(
        two.log[0].answered! >= acknowledged,
        `after the restart the upload is at ${
          two.log[0].answered
        }, below the ${acknowledged} acknowledged before`,
      );
      assert.ok(two.log.every((e) => e.method !== "POST"));
      // Each client's own log: the first one's last PATCH (held by the
      // proxy at the kill) is never answered nor logged, though the server
      // may have stored a part from it, so its last HEAD can be below the
      // second client's first one (checked above: never below what was
      // acknowledged).
      assertResumed(one.log, 2);
      assertResumed(two.log, 1);
      // 8 MiB PATCHes: each that went through carried 8 MiB, or the rest.
      for (const e of [...one.log, ...two.log]) {
        if (e.method === "PATCH" && e.status === 204) {
          assert.ok(
            e.answered! - e.offset! === 8 * MiB || e.answered === SIZE,
            JSON.stringify(e),
          );
        }
      }
      const hash = hashFrom(res);
      await assertServed(server(), hash, bytes);
      // Finished, the upload left the URL storage.
      assert.deepStrictEqual(await urlStorage.findAllUploads(), []);
      console.error(
        `  ${one.log.length} + ${two.log.length} requests, ${proxy.countedBytes} client bytes counted (${proxy.upstreamBytes} in all), ${ms} ms`,
      );
    });
  },
});

Deno.test({
  name:
    "tus-js-client under Deno: creation-with-upload cut midway, X-HTTP-Method-Override, a sha384 in the metadata checked (right and wrong), an empty file",
  ignore: !tusAvailable,
  fn: async (t) => {
    await withServer(async ({ server, proxy }) => {
      const endpoint = `${proxy.url}/tus/`;

      await t.step("creation-with-upload, cut in the POST's body", async () => {
        const bytes = randomBytes(12 * MiB + 5);
        const cut = proxy.cutAfter(3 * MiB);
        const running = startUpload(bytes, endpoint, {
          uploadDataDuringCreation: true,
        });
        const res = await running.done;
        await cut;
        const posts = running.log.filter((e) => e.method === "POST");
        // The POST carrying bytes was cut; tus-js-client, which has no URL
        // yet, sends a new POST (the first upload, with what it kept, is
        // left to expire).
        assert.ok(posts.length >= 1, JSON.stringify(running.log));
        assert.ok(running.log.some((e) => e.status === 0));
        await assertServed(server(), hashFrom(res), bytes);
      });

      await t.step(
        "overridePatchMethod: POST with X-HTTP-Method-Override: PATCH",
        async () => {
          const bytes = randomBytes(2 * MiB + 1);
          const running = startUpload(bytes, endpoint, {
            overridePatchMethod: true,
            chunkSize: MiB,
          });
          const res = await running.done;
          const writes = running.log.filter((e) => e.offset !== undefined);
          assert.ok(
            writes.length === 3 && writes.every((e) => e.method === "POST"),
          );
          await assertServed(server(), hashFrom(res), bytes);
        },
      );

      await t.step(
        "the sha384 of the metadata: the right one passes",
        async () => {
          const bytes = randomBytes(MiB);
          const running = startUpload(bytes, endpoint, {
            metadata: { filename: "right.bin", sha384: sha384Hex(bytes) },
          });
          await assertServed(server(), hashFrom(await running.done), bytes);
        },
      );

      await t.step(
        "the sha384 of the metadata: a wrong one is a 422, the upload gone, no blob registered",
        async () => {
          // Two parts (8 MiB + 1 MiB): the whole is a blob of its own, which
          // must not be registered. (A one-part upload's part is the blob
          // itself: refused, it stays readable by its true hash, like any
          // stored part, until gc.)
          const bytes = randomBytes(9 * MiB);
          const wrong = sha384Hex(randomBytes(8));
          const running = startUpload(bytes, endpoint, {
            metadata: { filename: "wrong.bin", sha384: wrong },
          });
          const err = await running.done.then(
            () => assert.fail("a wrong sha384 was accepted"),
            (err) => err as Tus.DetailedError,
          );
          assert.strictEqual(err.originalResponse?.getStatus(), 422);
          const head = await fetch(
            running.upload.url!.replace(proxy.url, server().base),
            { method: "HEAD", headers: { "tus-resumable": "1.0.0" } },
          );
          assert.strictEqual(head.status, 404);
          for (const hash of [wrong, sha384Hex(bytes)]) {
            const absent = await fetch(`${server().base}/blobs/${hash}`);
            await absent.body?.cancel();
            assert.strictEqual(absent.status, 404, hash);
          }
        },
      );

      // A one-part upload's part is its blob: the server checks the
      // sha384 before storing it, as POST /blobs does.
      await t.step({
        name:
          "the sha384 of the metadata: a wrong one on a one-part upload leaves nothing served either",
        fn: async () => {
          const bytes = randomBytes(MiB);
          const running = startUpload(bytes, endpoint, {
            metadata: { sha384: sha384Hex(randomBytes(8)) },
          });
          const err = await running.done.then(
            () => assert.fail("a wrong sha384 was accepted"),
            (err) => err as Tus.DetailedError,
          );
          assert.strictEqual(err.originalResponse?.getStatus(), 422);
          const absent = await fetch(
            `${server().base}/blobs/${sha384Hex(bytes)}`,
          );
          await absent.body?.cancel();
          assert.strictEqual(absent.status, 404);
        },
      });

      await t.step("an empty file", async () => {
        const bytes = new Uint8Array(0);
        const running = startUpload(bytes, endpoint);
        const res = await running.done;
        await assertServed(server(), hashFrom(res), bytes);
      });
    });
  },
});
