/**
 * A seeded fuzzer for the tus endpoint and `POST /blobs`: valid requests
 * (creations with and without bytes, `PATCH`es of odd sizes at the right
 * offset, `HEAD`, `DELETE`, `OPTIONS`, method overrides) mutated with
 * garbage versions, offsets, lengths, metadata, checksums, content types,
 * ids, methods and bodies (cut, stalled, longer than they say, longer
 * than the upload), sent in process and over a loopback connection (where
 * bodies are also cut by closing the socket). Parts are 1 KiB, so bodies
 * cross part boundaries all the time.
 *
 * A model of every upload follows along: after every request that may
 * touch an upload, its `HEAD` must say an offset that never goes back and
 * grows only by a prefix of a body sent at that offset (and not at all
 * for a refusal: 409, 412, 413, 415, 423, 460…); an upload whose bytes
 * are all there names the blob of exactly those bytes; an upload is gone
 * only after a 204 to `DELETE` or a 422 (a declared sha384 that did not
 * match). Never a 5xx, never a failure reported to `onError`. After every
 * batch: the catalog holds no upload but those created, the registry no
 * blob but those of finished uploads, the backend exactly the referenced
 * objects, each hashing to its name. At the end every live upload is
 * completed, and each finished blob is read back whole.
 *
 * `FUZZ_SEED` replays a run; `TUS_FUZZ_CASES` and `TUS_FUZZ_WIRE_CASES`
 * run more (defaults 1500 and 200).
 *
 * @module
 */

import { Rng } from "./rng.ts";
import assert from "node:assert";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { FileBackend } from "../src/fs/backend.ts";
import { KvCatalog } from "../src/kv/catalog.ts";
import { createHandler } from "../src/http/handler.ts";
import { Store } from "../src/store.ts";
import { rawRequest } from "./raw_http.ts";

const SEED = Number(
  Deno.env.get("FUZZ_SEED") ?? Math.floor(Math.random() * 2 ** 31),
);
const CASES = Number(Deno.env.get("TUS_FUZZ_CASES") ?? 1500);
const WIRE_CASES = Number(Deno.env.get("TUS_FUZZ_WIRE_CASES") ?? 200);
const BATCH = 100;
const PART = 1024;
const MAX_BODY = 16 * 1024;
const IDLE = 150;
const OCTET = "application/offset+octet-stream";

const sha384Hex = (bytes: Uint8Array) =>
  createHash("sha384").update(bytes).digest("hex");
const digest = (algorithm: string, bytes: Uint8Array) =>
  createHash(algorithm).update(bytes).digest("base64");

/** What the fuzzer knows of one upload it created. */
interface Up {
  location: string;
  length: number;
  /** What the client means to send. */
  full: Uint8Array;
  /** What the server acknowledged, `[0, offset)`. */
  known: Uint8Array;
  offset: number;
  /** The sha384 declared in Upload-Metadata. */
  expected?: string;
  /** The blob, once finished. */
  hash?: string;
  gone: boolean;
}

interface Model {
  ups: Up[];
  /** Every upload id a 201 (or a Location) named. */
  created: Set<string>;
  /** Hashes of finished uploads' blobs. */
  finished: Set<string>;
  /** Creations whose answer never came (cut on the wire): ids unknown. */
  lost: number;
  counts: Record<string, number>;
}

/** One request. */
interface Case {
  label: string[];
  method: string;
  path: string;
  headers: [string, string][];
  body: Uint8Array | null;
  /** In process: send the body as a stream of random pieces. */
  streamed?: boolean;
  /** In process: send the body, then never end it. */
  stall?: boolean;
  /** On the wire: close the connection after this many body bytes. */
  cutAfter?: number;
  /** The upload it is about. */
  up?: Up;
  /** Where its body would go, if the server took it. */
  at?: number;
  /** A creation (its answer may name a new upload). */
  creates?: { length: number; full: Uint8Array; expected?: string };
}

function setHeader(c: Case, name: string, value: string | undefined) {
  c.headers = c.headers.filter(([n]) => n.toLowerCase() !== name);
  if (value !== undefined) c.headers.push([name, value]);
}

function live(model: Model): Up[] {
  return model.ups.filter((u) => !u.gone);
}

const GENERATORS: Record<string, (rng: Rng, model: Model) => Case> = {
  create(rng) {
    const length = rng.pick([
      0,
      1,
      7,
      PART - 1,
      PART,
      PART + 1,
      3 * PART,
      5 * PART + 3,
      rng.int(MAX_BODY + 1),
    ]);
    const full = rng.bytes(length);
    const headers: [string, string][] = [
      ["tus-resumable", "1.0.0"],
      ["upload-length", String(length)],
    ];
    let expected: string | undefined;
    const meta: string[] = [];
    if (rng.chance(0.5)) meta.push(`filename ${btoa(`f${rng.int(100)}.bin`)}`);
    if (rng.chance(0.2)) meta.push("flag");
    if (rng.chance(0.3)) {
      expected = rng.chance(0.8) ? sha384Hex(full) : rng.hex(96);
      meta.push(`sha384 ${btoa(expected)}`);
    }
    if (meta.length) headers.push(["upload-metadata", meta.join(",")]);
    let body: Uint8Array | null = null;
    if (rng.chance(0.3)) {
      body = full.subarray(0, rng.int(length + 1));
      headers.push(["content-type", OCTET]);
      if (rng.chance(0.6)) {
        headers.push(["content-length", String(body.length)]);
      }
    }
    return {
      label: ["create"],
      method: "POST",
      path: "/tus/",
      headers,
      body,
      streamed: body !== null && rng.chance(0.5),
      at: 0,
      creates: { length, full, expected },
    };
  },
  patch(rng, model) {
    const ups = live(model);
    const up = ups.length > 0 ? rng.pick(ups) : undefined;
    const at = up?.offset ?? 0;
    const room = (up?.length ?? 100) - at;
    const size = rng.pick([
      0,
      1,
      rng.int(PART),
      PART - 1,
      PART,
      PART + 1,
      rng.int(room + 1),
      room,
      room,
      rng.int(3 * PART),
    ]);
    const body = up && rng.chance(0.9)
      ? up.full.subarray(at, at + Math.min(size, room))
      : rng.bytes(size);
    const headers: [string, string][] = [
      ["tus-resumable", "1.0.0"],
      ["content-type", OCTET],
      ["upload-offset", String(at)],
    ];
    if (rng.chance(0.6)) headers.push(["content-length", String(body.length)]);
    if (rng.chance(0.2)) {
      headers.push([
        "upload-checksum",
        `${rng.pick(["sha1", "sha384"])} ${
          digest(rng.pick(["sha1", "sha384"]), body)
        }`,
      ]);
    }
    return {
      label: ["patch"],
      method: "PATCH",
      path: up?.location ?? `/tus/${rng.hex(32)}`,
      headers,
      body,
      streamed: rng.chance(0.4),
      up,
      at,
    };
  },
  override(rng, model) {
    const c = GENERATORS.patch(rng, model);
    c.label = ["override"];
    c.method = "POST";
    c.headers.push([
      "x-http-method-override",
      rng.pick(["PATCH", "patch", "DELETE", "GET", ""]),
    ]);
    return c;
  },
  head(rng, model) {
    const ups = model.ups;
    const up = ups.length > 0 && rng.chance(0.9) ? rng.pick(ups) : undefined;
    return {
      label: ["head"],
      method: "HEAD",
      path: up?.location ?? `/tus/${rng.hex(rng.int(40))}`,
      headers: [["tus-resumable", "1.0.0"]],
      body: null,
      up,
    };
  },
  delete(rng, model) {
    const ups = model.ups;
    const up = ups.length > 0 && rng.chance(0.9) ? rng.pick(ups) : undefined;
    return {
      label: ["delete"],
      method: "DELETE",
      path: up?.location ?? `/tus/${rng.hex(32)}`,
      headers: [["tus-resumable", "1.0.0"]],
      body: null,
      up,
    };
  },
  options(rng) {
    return {
      label: ["options"],
      method: "OPTIONS",
      path: rng.pick(["/tus/", "/tus", `/tus/${rng.hex(32)}`]),
      headers: [],
      body: null,
    };
  },
  postBlob(rng) {
    const body = rng.bytes(rng.pick([0, 1, 100, PART, rng.int(MAX_BODY)]));
    const headers: [string, string][] = [[
      "content-length",
      String(body.length),
    ]];
    if (rng.chance(0.4)) {
      const hash = rng.chance(0.7) ? sha384Hex(body) : rng.hex(96);
      headers.push([
        "repr-digest",
        `sha-384=:${Buffer.from(hash, "hex").toString("base64")}:`,
      ]);
    }
    return {
      label: ["postBlob"],
      method: "POST",
      path: "/blobs",
      headers,
      body,
    };
  },
};

const WEIGHTS: [string, number][] = [
  ["create", 18],
  ["patch", 50],
  ["override", 4],
  ["head", 8],
  ["delete", 4],
  ["options", 3],
  ["postBlob", 8],
];

const JUNK_NUMBERS = [
  "",
  "-1",
  "1.5",
  "1e3",
  "0x10",
  "+5",
  "5, 5",
  "abc",
  "99999999999999999999",
  "9007199254740993",
  " 3 ",
];

const MUTATIONS: Record<string, (c: Case, rng: Rng) => void> = {
  version(c, rng) {
    setHeader(
      c,
      "tus-resumable",
      rng.pick([undefined, "", "0.2.2", "1.0", "2.0.0", "1.0.0, 0.2.2"]),
    );
  },
  offset(c, rng) {
    const at = c.at ?? 0;
    const value = rng.chance(0.5)
      ? String(Math.max(0, at + rng.pick([-PART, -1, 1, 7, PART])))
      : rng.pick([undefined, ...JUNK_NUMBERS]);
    setHeader(c, "upload-offset", value);
    // A creation's bytes go at 0 whatever it says.
    if (c.creates) return;
    c.at = value !== undefined && /^\d+$/.test(value.trim())
      ? Number(value)
      : undefined;
  },
  length(c, rng) {
    setHeader(
      c,
      "upload-length",
      rng.pick([
        undefined,
        String(MAX_BODY + 1),
        String(2 ** 40),
        "0",
        ...JUNK_NUMBERS,
      ]),
    );
  },
  contentType(c, rng) {
    setHeader(
      c,
      "content-type",
      rng.pick([
        undefined,
        "",
        "application/octet-stream",
        "text/plain",
        `${OCTET}; x=1`,
        "APPLICATION/OFFSET+OCTET-STREAM",
      ]),
    );
  },
  contentLength(c, rng) {
    const n = c.body?.length ?? 0;
    setHeader(
      c,
      "content-length",
      rng.pick([
        undefined,
        String(Math.max(0, n - 1)),
        String(n + 1),
        String(n + 5000),
        ...JUNK_NUMBERS,
      ]),
    );
  },
  metadata(c, rng) {
    if (c.creates) c.creates.expected = undefined;
    setHeader(
      c,
      "upload-metadata",
      rng.pick([
        "",
        ",",
        "a b c",
        "a !!!!",
        "a,a",
        "k eA=",
        "clé eA==",
        `sha384 ${btoa("abc")}`,
        `sha384 ${btoa("G".repeat(96))}`,
        "x ".repeat(3000),
        "__proto__ eA==,constructor",
      ]),
    );
  },
  checksum(c, rng) {
    const body = c.body ?? new Uint8Array(0);
    setHeader(
      c,
      "upload-checksum",
      rng.pick([
        `sha1 ${digest("sha1", body)}`,
        `sha384 ${digest("sha384", body)}`,
        `sha1 ${digest("sha1", new Uint8Array([1]))}`,
        `sha384 ${digest("sha384", new Uint8Array([1]))}`,
        `md5 ${digest("md5", body)}`,
        `sha256 ${digest("sha256", body)}`,
        "sha1",
        "sha1 !!!!",
        "",
        "SHA1 AAAA",
      ]),
    );
  },
  extension(c, rng) {
    setHeader(
      c,
      rng.pick(["upload-defer-length", "upload-concat"]),
      rng.pick(["1", "partial", "final;/tus/a /tus/b"]),
    );
  },
  body(c, rng) {
    const body = c.body ?? new Uint8Array(0);
    const choice = rng.int(4);
    if (choice === 0) c.body = body.subarray(0, rng.int(body.length + 1));
    else if (choice === 1) {
      c.body = new Uint8Array([...body, ...rng.bytes(1 + rng.int(2 * PART))]);
    } else if (choice === 2 && body.length > 0) {
      c.body = body.slice();
      c.body[rng.int(body.length)] ^= 1 + rng.int(255);
    } else c.body = rng.bytes(rng.int(MAX_BODY + 2));
  },
  stall(c) {
    c.stall = true;
  },
  method(c, rng) {
    c.method = rng.pick([
      "GET",
      "HEAD",
      "PUT",
      "POST",
      "DELETE",
      "PATCH",
      "OPTIONS",
      "FOO",
    ]);
  },
  id(c, rng) {
    c.path = `/tus/${
      rng.pick([
        "",
        "..",
        "%2e%2e",
        "a".repeat(200),
        "__proto__",
        "constructor",
        rng.hex(31),
        rng.hex(32).toUpperCase(),
        "x%00y",
        "%zz",
      ])
    }`;
    c.up = undefined;
  },
  path(c, rng) {
    c.path = rng.pick([
      "/tus/a/b",
      "/tus//",
      "/TUS/",
      "/tus/?x=1",
      `${c.path}/`,
      `${c.path}?a=b`,
    ]);
  },
};

function pickWeighted(rng: Rng): string {
  const total = WEIGHTS.reduce((sum, [, w]) => sum + w, 0);
  let at = rng.next() * total;
  for (const [name, weight] of WEIGHTS) {
    at -= weight;
    if (at < 0) return name;
  }
  return WEIGHTS[0][0];
}

function generate(rng: Rng, model: Model, wire: boolean): Case {
  const c = GENERATORS[pickWeighted(rng)](rng, model);
  const count = rng.chance(0.45) ? 0 : 1 + rng.int(2);
  const names = Object.keys(MUTATIONS).filter((name) =>
    // Stalls cost an idle timeout; on the wire, bodies are cut instead.
    name === "stall"
      ? !wire && rng.chance(0.2)
      : !(wire && name === "contentLength")
  );
  for (let i = 0; i < count; i++) {
    const name = rng.pick(names);
    MUTATIONS[name](c, rng);
    c.label.push(name);
  }
  if (wire && c.body) {
    // Raw requests say their length; some are cut short by the client.
    setHeader(c, "content-length", String(c.body.length));
    if (c.body.length > 0 && rng.chance(0.2)) {
      c.cutAfter = rng.int(c.body.length);
      c.label.push("cut");
    }
  }
  return c;
}

interface Outcome {
  status: number;
  headers: Headers;
  body: Uint8Array;
}

type Handler = (req: Request) => Promise<Response>;

function pieces(body: Uint8Array, rng: Rng): Uint8Array[] {
  const out = [];
  for (let at = 0; at < body.length;) {
    const n = 1 + rng.int(Math.max(1, Math.min(body.length - at, 700)));
    out.push(body.slice(at, at + n));
    at += n;
  }
  return out;
}

async function sendInProcess(
  handler: Handler,
  c: Case,
  rng: Rng,
): Promise<Outcome | undefined> {
  let body: BodyInit | null = c.body as Uint8Array<ArrayBuffer> | null;
  if (c.body && (c.streamed || c.stall)) {
    const chunks = pieces(c.body, rng);
    const stall = c.stall;
    body = new ReadableStream<Uint8Array>({
      pull(controller) {
        const next = chunks.shift();
        if (next) controller.enqueue(next);
        else if (!stall) controller.close();
        else return new Promise(() => {}); // never another byte
      },
    }, { highWaterMark: 0 });
  }
  let req: Request;
  try {
    req = new Request(new URL(c.path, "http://fuzz.test"), {
      method: c.method,
      headers: c.headers,
      body: c.method === "GET" || c.method === "HEAD" ? null : body,
    });
  } catch {
    return undefined; // not expressible as a Request
  }
  const res = await handler(req);
  return {
    status: res.status,
    headers: res.headers,
    body: new Uint8Array(await res.arrayBuffer()),
  };
}

async function sendOnWire(port: number, c: Case): Promise<Outcome> {
  try {
    const res = await rawRequest(port, {
      method: c.method,
      path: c.path,
      headers: Object.fromEntries(c.headers),
      body: c.body ? [c.body] : [],
      abortAfter: c.cutAfter,
    });
    if (!res) {
      return { status: 0, headers: new Headers(), body: new Uint8Array(0) };
    }
    return { status: res.status, headers: res.headers, body: res.body };
  } catch {
    return { status: 0, headers: new Headers(), body: new Uint8Array(0) };
  }
}

/** Statuses after which nothing of the request's body may have been kept. */
const REFUSALS = new Set([
  401,
  404,
  405,
  409,
  411,
  412,
  413,
  415,
  423,
  429,
  460,
]);

interface Fixture {
  root: string;
  kv: Deno.Kv;
  catalog: KvCatalog;
  backend: FileBackend;
  store: Store;
  handler: Handler;
  errors: unknown[];
  /** Requests the handler was called with, so far. */
  seen(): number;
  /** Requests the handler has not answered yet. */
  active(): number;
  close(): Promise<void>;
}

async function openFixture(): Promise<Fixture> {
  const root = await Deno.makeTempDir({ prefix: "blobstore-tus-fuzz-" });
  const kv = await Deno.openKv(":memory:");
  const catalog = new KvCatalog(kv);
  const backend = new FileBackend(join(root, "blobs"));
  const store = new Store({ catalog, backend, minPartSize: PART });
  const errors: unknown[] = [];
  const inner = createHandler(store, {
    authorize: false,
    cors: false,
    maxBodySize: MAX_BODY,
    bodyIdleTimeout: IDLE,
    maxConcurrentUploads: 1000,
    tus: { partSize: PART },
    onError: (err) => errors.push(err),
  });
  let seen = 0;
  let active = 0;
  const handler = async (req: Request) => {
    seen++;
    active++;
    try {
      return await inner(req);
    } finally {
      active--;
    }
  };
  return {
    root,
    kv,
    catalog,
    backend,
    store,
    handler,
    errors,
    seen: () => seen,
    active: () => active,
    async close() {
      kv.close();
      await Deno.remove(root, { recursive: true });
    },
  };
}

const TUS_HEAD = { "tus-resumable": "1.0.0" };

/**
 * Checks an answer, and the state of the upload it may have touched
 * against the model (the model learns what was kept).
 */
async function check(
  fx: Fixture,
  model: Model,
  c: Case,
  out: Outcome,
  settle: (up: Up) => Promise<Response>,
): Promise<void> {
  const { status } = out;
  model.counts[status] = (model.counts[status] ?? 0) + 1;
  assert(
    status < 500,
    `server error ${status}: ${
      new TextDecoder().decode(out.body.slice(0, 300))
    }`,
  );
  assert.deepStrictEqual(fx.errors, [], "a failure reached onError");
  if (status >= 400 && c.method !== "HEAD" && out.body.length > 0) {
    const json = JSON.parse(new TextDecoder().decode(out.body));
    assert(typeof json.error === "string" && typeof json.message === "string");
  }
  let up = c.up;
  if (c.creates && status === 0) model.lost++;
  const location = out.headers.get("location");
  if (c.creates && location?.startsWith("/tus/")) {
    assert.match(location, /^\/tus\/[0-9a-f]{32}$/);
    const id = location.slice(5);
    assert(!model.created.has(id), "a Location named twice");
    model.created.add(id);
    const { length, full, expected } = c.creates;
    up = {
      location,
      length,
      full,
      known: new Uint8Array(length),
      offset: 0,
      expected,
      gone: false,
    };
    model.ups.push(up);
    if (model.ups.length > 60) model.ups.shift();
  }
  if (
    c.method === "POST" && c.path === "/blobs" &&
    (status === 200 || status === 201)
  ) {
    const json = JSON.parse(new TextDecoder().decode(out.body));
    assert.strictEqual(
      json.hash,
      sha384Hex(c.body!),
      "POST /blobs named other content",
    );
  }
  if (!up || up.gone) return;
  const head = await settle(up);
  if (head.status === 404 || head.status === 410) {
    await head.body?.cancel();
    const removed = status === 204 && (c.method === "DELETE" ||
      c.headers.some(([n, v]) =>
        n === "x-http-method-override" && v.toUpperCase() === "DELETE"
      ));
    assert(
      removed || (status === 422 && up.expected !== undefined) || status === 0,
      `upload gone after a ${status}`,
    );
    up.gone = true;
    return;
  }
  assert.strictEqual(head.status, 200, `HEAD: ${head.status}`);
  const length = Number(head.headers.get("upload-length"));
  if (length !== up.length) {
    // The creation said another length than the generator meant (mutated).
    assert.strictEqual(up.offset, 0);
    up.length = length;
    up.full = new Uint8Array(length).map((_, i) => (i * 7) & 0xff);
    up.known = new Uint8Array(length);
  }
  const offset = Number(head.headers.get("upload-offset"));
  assert(
    offset >= up.offset,
    `offset went back from ${up.offset} to ${offset}`,
  );
  if (offset > up.offset) {
    const grown = offset - up.offset;
    assert(!REFUSALS.has(status), `a ${status} kept ${grown} bytes`);
    assert.strictEqual(
      c.at,
      up.offset,
      `grew by ${grown} bytes without a body at ${up.offset}`,
    );
    assert(
      c.body && grown <= c.body.length,
      `grew by ${grown} bytes, more than the body's ${c.body?.length}`,
    );
    up.known.set(c.body.subarray(0, grown), up.offset);
    up.offset = offset;
  }
  if (status === 204 && out.headers.has("upload-offset")) {
    assert.strictEqual(Number(out.headers.get("upload-offset")), offset);
  }
  const blob = head.headers.get("content-location");
  if (offset === up.length) {
    assert(blob, "every byte there, and no blob named");
    const hash = sha384Hex(up.known);
    assert.strictEqual(
      blob,
      `/blobs/${hash}`,
      "the blob is not the bytes acknowledged",
    );
    assert(up.expected === undefined || up.expected === hash);
    assert.match(
      head.headers.get("upload-metadata") ?? "",
      new RegExp(`sha384 ${btoa(hash).replace(/[+/]/g, "\\$&")}$`),
    );
    up.hash = hash;
    model.finished.add(hash);
  } else {
    assert.strictEqual(blob, null);
  }
}

/** The store after a batch: nothing in it that should not be. */
async function checkStore(fx: Fixture, model: Model, verified: Set<string>) {
  let unknown = 0;
  for await (const upload of fx.catalog.uploads()) {
    if (!model.created.has(upload.id)) unknown++;
  }
  assert(
    unknown <= model.lost,
    `${unknown} uploads nobody created (${model.lost} creations lost their answer)`,
  );
  for await (const { hash } of fx.catalog.multipart.entries()) {
    assert(
      model.finished.has(hash),
      `registered ${hash}, which no upload finished`,
    );
  }
  const names = new Set<string>();
  for await (const ref of fx.catalog.refsPutBefore(new Date(8.64e15))) {
    names.add(ref.name);
    if (verified.has(ref.name)) continue;
    const { body } = await fx.backend.get(ref.name);
    const bytes = new Uint8Array(await new Response(body).arrayBuffer());
    assert.strictEqual(bytes.length, ref.size);
    assert.strictEqual(sha384Hex(bytes), ref.hash, `${ref.name}: bytes differ`);
    verified.add(ref.name);
  }
  const listed = new Set<string>();
  for await (const { name } of fx.backend.list()) listed.add(name);
  assert.deepStrictEqual(
    [...listed].sort(),
    [...names].sort(),
    "backend objects and references differ",
  );
}

/** Completes every live upload the right way, and reads every blob back. */
async function finishAll(
  fx: Fixture,
  model: Model,
  settle: (up: Up) => Promise<Response>,
) {
  for (const up of live(model)) {
    if (up.offset < up.length) {
      const rest = up.full.subarray(up.offset);
      const res = await fx.handler(
        new Request(new URL(up.location, "http://fuzz.test"), {
          method: "PATCH",
          headers: {
            ...TUS_HEAD,
            "content-type": OCTET,
            "upload-offset": String(up.offset),
          },
          body: rest as Uint8Array<ArrayBuffer>,
        }),
      );
      await res.body?.cancel();
      up.known.set(rest, up.offset);
      const hash = sha384Hex(up.known);
      if (up.expected !== undefined && up.expected !== hash) {
        assert.strictEqual(res.status, 422);
        up.gone = true;
        continue;
      }
      assert.strictEqual(res.status, 204);
      assert.strictEqual(res.headers.get("content-location"), `/blobs/${hash}`);
      up.offset = up.length;
      up.hash = hash;
      model.finished.add(hash);
    }
    const head = await settle(up);
    assert.strictEqual(
      head.headers.get("content-location"),
      `/blobs/${up.hash}`,
    );
    const got = await fx.handler(
      new Request(`http://fuzz.test/blobs/${up.hash}`),
    );
    assert.strictEqual(got.status, 200);
    assert.deepStrictEqual(new Uint8Array(await got.arrayBuffer()), up.known);
  }
}

function describe(c: Case): string {
  const headers = c.headers.map(([n, v]) =>
    `${n}: ${v.length > 60 ? `${v.slice(0, 60)}…` : v}`
  );
  return `[${c.label.join(" + ")}] ${c.method} ${c.path.slice(0, 100)} {${
    headers.join("; ")
  }} body ${c.body?.length ?? "none"}${c.stall ? " then stalls" : ""}${
    c.cutAfter !== undefined ? `, cut after ${c.cutAfter}` : ""
  }`;
}

async function run(mode: "in-process" | "wire", cases: number) {
  const fx = await openFixture();
  const rng = new Rng(mode === "wire" ? SEED ^ 0x2545f491 : SEED);
  const model: Model = {
    ups: [],
    created: new Set(),
    finished: new Set(),
    lost: 0,
    counts: {},
  };
  const verified = new Set<string>();
  const server = mode === "wire"
    ? Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, fx.handler)
    : undefined;
  const head = (up: Up) =>
    fx.handler(
      new Request(new URL(up.location, "http://fuzz.test"), {
        method: "HEAD",
        headers: TUS_HEAD,
      }),
    );
  // On the wire, a cut request may still be running when its client is
  // gone: wait for it as a tus client does (an empty PATCH at the offset
  // HEAD gives is a 423 or a 409 until it is done).
  const settle = async (up: Up): Promise<Response> => {
    for (let i = 0;; i++) {
      const res = await head(up);
      if (!server || res.status !== 200) return res;
      const probe = await fx.handler(
        new Request(new URL(up.location, "http://fuzz.test"), {
          method: "PATCH",
          headers: {
            ...TUS_HEAD,
            "content-type": OCTET,
            "upload-offset": res.headers.get("upload-offset")!,
          },
        }),
      );
      await probe.body?.cancel();
      if (
        probe.status === 204 || probe.status === 404 || probe.status === 410 ||
        probe.status === 422
      ) {
        return probe.status === 204 ? res : await head(up);
      }
      assert(i < 400, `upload busy for 10 s (${probe.status})`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  };
  let refused = 0;
  try {
    for (let i = 0; i < cases; i++) {
      const c = generate(rng, model, mode === "wire");
      try {
        const seen = fx.seen();
        const out = server
          ? await sendOnWire(server.addr.port, c)
          : await sendInProcess(fx.handler, c, rng);
        if (!out) {
          refused++;
          continue;
        }
        if (server && out.status === 0) {
          // The client went away: the server may not even have begun
          // with its request. Let it see the request and be done with it.
          for (let t = 0; fx.seen() === seen || fx.active() > 0; t++) {
            assert(t < 400, "a cut request still running after 10 s");
            await new Promise((resolve) => setTimeout(resolve, 25));
          }
        }
        await check(fx, model, c, out, settle);
      } catch (err) {
        throw new Error(
          `tus fuzz ${mode} case ${i} failed (replay with FUZZ_SEED=${SEED}): ${
            describe(c)
          }\n  ${err instanceof Error ? err.message : err}`,
          { cause: err },
        );
      }
      if ((i + 1) % BATCH === 0) await checkStore(fx, model, verified);
    }
    await finishAll(fx, model, settle);
    await checkStore(fx, model, verified);
    assert.deepStrictEqual(fx.errors, []);
    console.log(
      `seed ${SEED}: ${
        cases - refused
      } ${mode} cases (${refused} refused by Request), statuses ${
        JSON.stringify(model.counts)
      }, ${model.created.size} uploads, ${model.finished.size} blobs finished`,
    );
  } finally {
    await server?.shutdown();
    await fx.close();
  }
}

Deno.test("tus fuzz: in process, random and mutated requests", async () => {
  await run("in-process", CASES);
});

Deno.test("tus fuzz: over loopback, bodies cut by the client", async () => {
  await run("wire", WIRE_CASES);
});
