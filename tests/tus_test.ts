/**
 * tus over real connections: `Deno.serve` on a loopback port, the
 * embedded seams (a `KvCatalog` file and a `FileBackend` directory), 8 MiB
 * parts. A `PATCH` whose client goes away midway (a raw connection closed
 * after some bytes of its `Content-Length`, and a `fetch` aborted while it
 * streams) keeps what the server read, and the upload resumes from there
 * to the right hash; a new handler over the same files (a restart)
 * resumes an upload; CORS lets a page on another origin `PATCH`; two
 * `PATCH`es at once write one body; and `serve --tus-prefix`.
 */

import assert from "node:assert";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { Store, UNKNOWN_PART_SIZE } from "../mod.ts";
import { FileBackend } from "../fs.ts";
import { KvCatalog } from "../kv.ts";
import { createHandler, type HandlerOptions } from "../http.ts";
import { rawRequest } from "./raw_http.ts";

const PART = UNKNOWN_PART_SIZE;
const TUS = { "tus-resumable": "1.0.0" };
const OCTET = "application/offset+octet-stream";

const hex = (bytes: Uint8Array) =>
  createHash("sha384").update(bytes).digest("hex");

function bytesOf(size: number, seed = 1): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  let x = seed >>> 0;
  for (let i = 0; i < size; i += 4) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    bytes[i] = x;
    bytes[i + 1] = x >> 8;
    bytes[i + 2] = x >> 16;
    bytes[i + 3] = x >> 24;
  }
  return bytes;
}

/** The embedded seams in `dir`, served on a free loopback port. */
async function open(dir: string, options: HandlerOptions = {}) {
  const kv = await Deno.openKv(join(dir, "catalog.kv"));
  const store = new Store({
    catalog: new KvCatalog(kv),
    backend: new FileBackend(join(dir, "blobs")),
  });
  const errors: unknown[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    createHandler(store, {
      authorize: false,
      cors: false,
      onError: (err) => errors.push(err),
      ...options,
    }),
  );
  const port = server.addr.port;
  const base = `http://127.0.0.1:${port}`;
  return {
    store,
    errors,
    port,
    base,
    async close() {
      await server.shutdown();
      kv.close();
    },
  };
}

type Served = Awaited<ReturnType<typeof open>>;

async function create(s: Served, length: number): Promise<string> {
  const res = await fetch(`${s.base}/tus/`, {
    method: "POST",
    headers: { ...TUS, "upload-length": String(length) },
  });
  assert.strictEqual(res.status, 201);
  await res.body?.cancel();
  return res.headers.get("location")!;
}

async function head(s: Served, location: string): Promise<Headers> {
  const res = await fetch(`${s.base}${location}`, {
    method: "HEAD",
    headers: TUS,
  });
  assert.strictEqual(res.status, 200);
  return res.headers;
}

/** A `PATCH` with a `Content-Length`, on its own connection. */
function patch(
  s: Served,
  location: string,
  offset: number,
  body: Uint8Array,
  abortAfter?: number,
) {
  return rawRequest(s.port, {
    method: "PATCH",
    path: location,
    headers: {
      ...TUS,
      "content-type": OCTET,
      "upload-offset": String(offset),
      "content-length": String(body.length),
    },
    body: chunks(body, 256 * 1024),
    abortAfter,
  });
}

function* chunks(bytes: Uint8Array, size: number) {
  for (let at = 0; at < bytes.length; at += size) {
    yield bytes.subarray(at, at + size);
  }
}

/**
 * The offset of an upload once no request is writing it: what a tus
 * client does after a failure (HEAD, then PATCH from there; a 423 or a
 * 409 means try again), with an empty PATCH as the probe.
 */
async function settledOffset(s: Served, location: string): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const offset = Number((await head(s, location)).get("upload-offset"));
    const res = await patch(s, location, offset, new Uint8Array(0));
    if (res!.status === 204) {
      assert.strictEqual(res!.headers.get("upload-offset"), String(offset));
      return offset;
    }
    assert([409, 423].includes(res!.status), `got ${res!.status}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error("the upload stayed busy");
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "blobstore-tus-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function expectBlob(s: Served, hash: string, content: Uint8Array) {
  const res = await fetch(`${s.base}/blobs/${hash}`);
  assert.strictEqual(res.status, 200);
  const got = new Uint8Array(await res.arrayBuffer());
  assert.strictEqual(got.length, content.length);
  assert(got.every((b, i) => b === content[i]), "served other bytes");
}

Deno.test("tus over TCP: a PATCH cut midway keeps what arrived, and the upload resumes to the right hash", async () => {
  await withDir(async (dir) => {
    const s = await open(dir);
    try {
      const content = bytesOf(2 * PART + 3 * 1024 * 1024 + 17, 3);
      const location = await create(s, content.length);
      const sent = PART + 3 * 1024 * 1024 + 12_345;
      // The client goes away after `sent` bytes of its Content-Length.
      assert.strictEqual(
        await patch(s, location, 0, content, sent),
        undefined,
      );
      const offset = await settledOffset(s, location);
      // The full part is stored, and the tail holds what the server read
      // of the rest (all of it, on loopback, unless still in the socket).
      assert(offset > PART, `offset ${offset}: the tail after part 0 was lost`);
      assert(offset <= sent, `offset ${offset}: more than was sent`);
      // The tail is the bytes sent, not others: resume from the offset.
      const rest = await patch(s, location, offset, content.subarray(offset));
      assert.strictEqual(rest!.status, 204);
      assert.strictEqual(
        rest!.headers.get("upload-offset"),
        String(content.length),
      );
      assert.strictEqual(
        rest!.headers.get("content-location"),
        `/blobs/${hex(content)}`,
      );
      await expectBlob(s, hex(content), content);
      assert.deepStrictEqual(s.errors, []);
    } finally {
      await s.close();
    }
  });
});

Deno.test("tus over TCP: an aborted fetch streaming a PATCH keeps what arrived", async () => {
  await withDir(async (dir) => {
    const s = await open(dir);
    try {
      const content = bytesOf(PART + 2 * 1024 * 1024, 4);
      const location = await create(s, content.length);
      const aborter = new AbortController();
      let sent = 0;
      const piece = 64 * 1024;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (sent >= PART / 2) {
            // Half a part in: the client gives up.
            await new Promise((resolve) => setTimeout(resolve, 200));
            aborter.abort();
            return;
          }
          controller.enqueue(content.subarray(sent, sent + piece));
          sent += piece;
        },
      }, { highWaterMark: 0 });
      await assert.rejects(
        fetch(`${s.base}${location}`, {
          method: "PATCH",
          headers: { ...TUS, "content-type": OCTET, "upload-offset": "0" },
          body,
          signal: aborter.signal,
        }),
      );
      const offset = await settledOffset(s, location);
      assert(offset > 0 && offset <= sent, `offset ${offset} of ${sent}`);
      const rest = await patch(s, location, offset, content.subarray(offset));
      assert.strictEqual(
        rest!.headers.get("content-location"),
        `/blobs/${hex(content)}`,
      );
      await expectBlob(s, hex(content), content);
      assert.deepStrictEqual(s.errors, []);
    } finally {
      await s.close();
    }
  });
});

Deno.test("tus over TCP: a creation without Content-Length (as curl -X POST sends it) is no body", async () => {
  await withDir(async (dir) => {
    const s = await open(dir);
    try {
      const res = await rawRequest(s.port, {
        method: "POST",
        path: "/tus/",
        headers: { ...TUS, "upload-length": "3" },
      });
      assert.strictEqual(res!.status, 201, new TextDecoder().decode(res!.body));
      const location = res!.headers.get("location")!;
      assert.strictEqual((await head(s, location)).get("upload-offset"), "0");
      // Bytes of another type are still refused.
      const typed = await rawRequest(s.port, {
        method: "POST",
        path: "/tus/",
        headers: { ...TUS, "upload-length": "3", "content-length": "3" },
        body: [new TextEncoder().encode("abc")],
      });
      assert.strictEqual(typed!.status, 415);
      assert.deepStrictEqual(s.errors, []);
    } finally {
      await s.close();
    }
  });
});

Deno.test("tus over TCP: a new handler over the same files resumes the upload (a restart)", async () => {
  await withDir(async (dir) => {
    const content = bytesOf(2 * PART + 5, 5);
    const first = await open(dir);
    let location: string;
    const cut = PART + 1000;
    try {
      location = await create(first, content.length);
      const res = await patch(first, location, 0, content.subarray(0, cut));
      assert.strictEqual(res!.headers.get("upload-offset"), String(cut));
    } finally {
      await first.close();
    }
    const second = await open(dir);
    try {
      const headers = await head(second, location);
      assert.strictEqual(headers.get("upload-offset"), String(cut));
      assert.strictEqual(
        headers.get("upload-length"),
        String(content.length),
      );
      const res = await patch(second, location, cut, content.subarray(cut));
      assert.strictEqual(res!.status, 204);
      assert.strictEqual(
        res!.headers.get("content-location"),
        `/blobs/${hex(content)}`,
      );
      await expectBlob(second, hex(content), content);
      assert.deepStrictEqual(second.errors, []);
    } finally {
      await second.close();
    }
    // And once more: the finished upload and its blob are still there.
    const third = await open(dir);
    try {
      const headers = await head(third, location);
      assert.strictEqual(
        headers.get("content-location"),
        `/blobs/${hex(content)}`,
      );
      await expectBlob(third, hex(content), content);
    } finally {
      await third.close();
    }
  });
});

Deno.test("tus over TCP: a page on another origin may PATCH (CORS preflight with the tus headers)", async () => {
  await withDir(async (dir) => {
    const origin = "https://app.example";
    const s = await open(dir, { cors: { origins: [origin] } });
    try {
      const location = await create(s, 5);
      const preflight = await fetch(`${s.base}${location}`, {
        method: "OPTIONS",
        headers: {
          origin,
          "access-control-request-method": "PATCH",
          "access-control-request-headers":
            "tus-resumable,upload-offset,content-type,upload-checksum,authorization",
        },
      });
      assert.strictEqual(preflight.status, 204);
      assert.strictEqual(
        preflight.headers.get("access-control-allow-origin"),
        origin,
      );
      assert.match(
        preflight.headers.get("access-control-allow-methods")!,
        /\bPATCH\b/,
      );
      const allowed = preflight.headers.get("access-control-allow-headers")!
        .toLowerCase().split(/,\s*/);
      for (
        const name of [
          "tus-resumable",
          "upload-offset",
          "upload-length",
          "upload-metadata",
          "upload-checksum",
          "content-type",
          "authorization",
          "x-http-method-override",
        ]
      ) {
        assert(allowed.includes(name), name);
      }
      const res = await fetch(`${s.base}${location}`, {
        method: "PATCH",
        headers: {
          ...TUS,
          origin,
          "content-type": OCTET,
          "upload-offset": "0",
        },
        body: "hello",
      });
      assert.strictEqual(res.status, 204);
      assert.strictEqual(
        res.headers.get("access-control-allow-origin"),
        origin,
      );
      const exposed = res.headers.get("access-control-expose-headers")!
        .toLowerCase().split(/,\s*/);
      for (
        const name of [
          "upload-offset",
          "upload-length",
          "upload-metadata",
          "upload-expires",
          "tus-resumable",
          "content-location",
          "location",
        ]
      ) {
        assert(exposed.includes(name), name);
      }
      // Another origin is refused at the preflight.
      const stranger = await fetch(`${s.base}${location}`, {
        method: "OPTIONS",
        headers: {
          origin: "https://evil.example",
          "access-control-request-method": "PATCH",
        },
      });
      assert.strictEqual(stranger.status, 403);
      await stranger.body?.cancel();
      // A tus OPTIONS that is no preflight still answers what tus says.
      const discovery = await fetch(`${s.base}/tus/`, { method: "OPTIONS" });
      assert.strictEqual(discovery.status, 204);
      assert.strictEqual(discovery.headers.get("tus-version"), "1.0.0");
    } finally {
      await s.close();
    }
  });
});

Deno.test("tus over TCP: of two PATCHes at once, one is stored, the other 423 or 409, never both", async () => {
  await withDir(async (dir) => {
    const s = await open(dir);
    try {
      for (let round = 0; round < 3; round++) {
        const a = bytesOf(PART + 4096, 10 + round);
        const b = bytesOf(PART + 4096, 20 + round);
        const location = await create(s, 3 * PART);
        const [ra, rb] = await Promise.all([
          patch(s, location, 0, a),
          patch(s, location, 0, b),
        ]);
        const statuses = [ra!.status, rb!.status].sort();
        assert(
          statuses[0] === 204 && [409, 423].includes(statuses[1]),
          `statuses ${statuses}`,
        );
        const winner = ra!.status === 204 ? a : b;
        const offset = await settledOffset(s, location);
        assert.strictEqual(offset, winner.length);
        // Finish it with the winner's bytes: the blob is the winner's
        // bytes then the rest, nothing of the loser.
        const rest = bytesOf(3 * PART - offset, 30 + round);
        const done = await patch(s, location, offset, rest);
        const whole = new Uint8Array([...winner, ...rest]);
        assert.strictEqual(
          done!.headers.get("content-location"),
          `/blobs/${hex(whole)}`,
        );
      }
      assert.deepStrictEqual(s.errors, []);
    } finally {
      await s.close();
    }
  });
});

const MAIN = new URL("../main.ts", import.meta.url).pathname;

function serve(args: string[], env: Record<string, string> = {}) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-kv", MAIN, "serve", "--memory", ...args],
    env: {
      MONGODB_URL: "",
      SWIFT_AUTH_URL: "",
      S3_BUCKET: "",
      BLOBSTORE_TOKEN: "",
      BLOBSTORE_CORS_ORIGINS: "",
      BLOBSTORE_TUS_PREFIX: "",
      NO_COLOR: "1",
      PORT: "0",
      ...env,
    },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  });
}

Deno.test("serve: tus on by default at /tus/, elsewhere with --tus-prefix or BLOBSTORE_TUS_PREFIX, off with off", async () => {
  for (
    const [args, env, path] of [
      [[], {}, "/tus/"],
      [["--tus-prefix", "/files/v1"], {}, "/files/v1/"],
      [[], { BLOBSTORE_TUS_PREFIX: "uploads-tus" }, "/uploads-tus/"],
      [["--tus-prefix=/files/"], { BLOBSTORE_TUS_PREFIX: "off" }, "/files/"],
      [[], { BLOBSTORE_TUS_PREFIX: "off" }, undefined],
      [["--tus-prefix", "OFF"], {}, undefined],
    ] as const
  ) {
    const child = serve([...args], env).spawn();
    const reader = child.stderr.getReader();
    let text = "";
    try {
      while (!/data in memory.*\n/.test(text)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`serve ended: ${text}`);
        text += new TextDecoder().decode(value);
      }
      const base = text.match(/listening on (http:\/\/[^/]+)\//)![1];
      // The tus line comes last, perhaps in a later read.
      if (path) {
        while (!/tus resumable uploads at .*\n/.test(text)) {
          const { value } = await reader.read();
          text += new TextDecoder().decode(value);
        }
        assert(
          text.includes(`tus resumable uploads at ${base}${path}\n`),
          text,
        );
      }
      const res = await fetch(`${base}${path ?? "/tus/"}`, {
        method: "OPTIONS",
      });
      assert.strictEqual(res.status, path ? 204 : 404, JSON.stringify(args));
      await res.body?.cancel();
    } finally {
      child.kill("SIGTERM");
      assert.strictEqual((await child.status).code, 0);
      reader.releaseLock();
      await child.stderr.cancel();
    }
  }
  const bad = await serve(["--tus-prefix", "/blobs/"]).output();
  assert.strictEqual(bad.code, 2);
  assert.match(
    new TextDecoder().decode(bad.stderr),
    /--tus-prefix: invalid tus prefix "\/blobs\/"/,
  );
  const badEnv = await serve([], { BLOBSTORE_TUS_PREFIX: "/a b/" }).output();
  assert.notStrictEqual(badEnv.code, 0);
  assert.match(
    new TextDecoder().decode(badEnv.stderr),
    /BLOBSTORE_TUS_PREFIX: invalid tus prefix/,
  );
});
