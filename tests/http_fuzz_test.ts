/**
 * A seeded fuzzer for the HTTP handler: random requests built from valid
 * ones and mutated (bad hashes, huge, negative and non-numeric sizes,
 * `Content-Length` lies, offsets and part numbers, malformed ranges and
 * JSON, path traversal, unknown methods, stalled and trickling bodies,
 * oversize headers), sent in process to `handler(req)` and over a real
 * loopback connection as raw bytes.
 *
 * Invariants, checked on every case: the handler never throws, never takes
 * longer than its deadline (the body idle timeout plus a margin), never
 * answers 5xx (every case is the client's doing), and a 2xx for a put only
 * ever acknowledges exactly the bytes sent. After every batch: every
 * reference in the catalog names content some request sent whole and
 * correct, its bytes hash to it, the backend's `list()` holds exactly the
 * referenced objects, and nothing was written outside the backend's root.
 *
 * `FUZZ_SEED` replays a run (the seed is printed on failure); without it
 * the seed is random, except in CI, where it is taken from the commit;
 * `FUZZ_CASES` and `FUZZ_WIRE_CASES` run more cases (defaults 3000 and
 * 300).
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
import { concatBytes } from "./helpers.ts";
import { indexOfHeadEnd, parseHead } from "./raw_http.ts";

const SEED = Number(Deno.env.get("FUZZ_SEED") ?? defaultSeed());
/**
 * A fresh seed on every laptop run, so the fuzzer keeps exploring; in CI
 * the seed comes from the commit under test, so a CI run on a clone of a
 * commit replays exactly what the CI of that commit will run.
 */
function defaultSeed(): number {
  if (Deno.env.get("CI") === "true") {
    const head = new Deno.Command("git", {
      args: ["rev-parse", "HEAD"],
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    const hex = new TextDecoder().decode(head.stdout).trim();
    if (head.success && /^[0-9a-f]{8}/.test(hex)) {
      return parseInt(hex.slice(0, 8), 16) % 2 ** 31;
    }
  }
  return Math.floor(Math.random() * 2 ** 31);
}

const CASES = Number(Deno.env.get("FUZZ_CASES") ?? 3000);
const WIRE_CASES = Number(Deno.env.get("FUZZ_WIRE_CASES") ?? 300);
/** Cases between two checks of the store. */
const BATCH = 100;
/** The store's least part size in these tests: parts stay small. */
const MIN_PART = 1024;
/** The handler's largest body: sizes above it must be a 413. */
const MAX_BODY = 256 * 1024;
/** The body idle timeouts, in process and on the wire (ms). */
const IDLE_IN_PROCESS = 150;
const IDLE_ON_WIRE = 400;
/** How many bytes of a trickled body go one at a time. */
const TRICKLED_BYTES = 20;
/** How long beyond its idle timeout a case may take before it is a hang. */
const HANG_MARGIN = 5000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// ---------------------------------------------------------------------------
// Randomness

function sha384Hex(bytes: Uint8Array): string {
  return createHash("sha384").update(bytes).digest("hex");
}

// ---------------------------------------------------------------------------
// Cases

/** One request, as bytes go: `path` is the raw request target. */
interface FuzzCase {
  /** What built it: generator and mutations, for the failure message. */
  label: string[];
  method: string;
  path: string;
  headers: [string, string][];
  body: Uint8Array;
  /** Send the body, then neither end it nor close (a stalled client). */
  stall?: boolean;
  /** On the wire: send the body a few bytes at a time, this far apart (ms). */
  trickleMs?: number;
  /** On the wire: the raw bytes to send instead of a well-formed request. */
  raw?: Uint8Array;
}

/** What the fuzzer has learnt from the answers so far. */
interface FuzzState {
  /** Content of blobs acknowledged by hash. */
  blobs: Map<string, Uint8Array>;
  /** Uploads created, with the parts acknowledged. */
  uploads: { id: string; parts: { hash: string; bytes: Uint8Array }[] }[];
  /** Hashes of multipart blobs finished. */
  multipart: string[];
  /** Every hash for which some request sent its exact content whole. */
  sentWhole: Set<string>;
  counts: Record<string, number>;
}

function newState(): FuzzState {
  return {
    blobs: new Map(),
    uploads: [],
    multipart: [],
    sentWhole: new Set(),
    counts: {},
  };
}

function someHash(rng: Rng, state: FuzzState): string {
  const known = [...state.blobs.keys(), ...state.multipart];
  if (known.length > 0 && rng.chance(0.6)) return rng.pick(known);
  return rng.hex(96);
}

function someContent(rng: Rng, state: FuzzState): Uint8Array {
  if (state.blobs.size > 0 && rng.chance(0.15)) {
    return rng.pick([...state.blobs.values()]); // a duplicate put
  }
  const size = rng.pick([0, 1, 2, 7, 64, 1000, 4096, 70_000]);
  return rng.bytes(rng.chance(0.5) ? size : rng.int(size + 1));
}

function withLength(body: Uint8Array): [string, string][] {
  return [["content-length", String(body.length)]];
}

function jsonBody(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

/** The valid requests the mutations start from, by route. */
const GENERATORS: Record<string, (rng: Rng, state: FuzzState) => FuzzCase> = {
  putBlob(rng, state) {
    const body = someContent(rng, state);
    return {
      label: ["putBlob"],
      method: "PUT",
      path: `/blobs/${sha384Hex(body)}`,
      headers: withLength(body),
      body,
    };
  },
  getBlob(rng, state) {
    const headers: [string, string][] = [];
    if (rng.chance(0.5)) {
      const a = rng.int(5000);
      headers.push([
        "range",
        rng.pick([
          `bytes=${a}-${a + rng.int(5000)}`,
          `bytes=${a}-`,
          `bytes=-${a}`,
        ]),
      ]);
    }
    const hash = someHash(rng, state);
    if (rng.chance(0.1)) headers.push(["if-none-match", `"${hash}"`]);
    if (rng.chance(0.1)) headers.push(["if-range", `"${hash}"`]);
    return {
      label: ["getBlob"],
      method: rng.chance(0.2) ? "HEAD" : "GET",
      path: `/blobs/${hash}`,
      headers,
      body: new Uint8Array(0),
    };
  },
  createUpload(rng) {
    const expires = new Date(Date.now() + 1000 + rng.int(86_400_000));
    const body = rng.pick([
      new Uint8Array(0),
      jsonBody({}),
      jsonBody({ expires: expires.toISOString() }),
    ]);
    return {
      label: ["createUpload"],
      method: "POST",
      path: "/uploads",
      headers: [["content-type", "application/json"], ...withLength(body)],
      body,
    };
  },
  putPart(rng, state) {
    const upload = state.uploads.length > 0
      ? rng.pick(state.uploads)
      : { id: rng.hex(16), parts: [] };
    const part = rng.chance(0.7)
      ? upload.parts.length
      : rng.int(upload.parts.length + 2);
    const size = rng.chance(0.7) ? MIN_PART + rng.int(2000) : rng.int(MIN_PART);
    const body = rng.bytes(size);
    const offset = upload.parts.slice(0, part).reduce(
      (sum, p) => sum + (p?.bytes.length ?? 0),
      0,
    );
    const query = rng.chance(0.5)
      ? `?hash=${sha384Hex(body)}`
      : `?hash=${sha384Hex(body)}&offset=${offset}`;
    return {
      label: ["putPart"],
      method: "PUT",
      path: `/uploads/${upload.id}/parts/${part}${query}`,
      headers: withLength(body),
      body,
    };
  },
  getUpload(rng, state) {
    const id = state.uploads.length > 0 && rng.chance(0.8)
      ? rng.pick(state.uploads).id
      : rng.hex(rng.int(40));
    return {
      label: ["getUpload"],
      method: rng.chance(0.15) ? "DELETE" : "GET",
      path: `/uploads/${id}`,
      headers: [],
      body: new Uint8Array(0),
    };
  },
  finish(rng, state) {
    const upload = state.uploads.length > 0
      ? rng.pick(state.uploads)
      : { id: rng.hex(16), parts: [] };
    const body = jsonBody({
      parts: upload.parts.filter(Boolean).map((p) => ({ hash: p.hash })),
    });
    return {
      label: ["finish"],
      method: "POST",
      path: `/uploads/${upload.id}/finish`,
      headers: [["content-type", "application/json"], ...withLength(body)],
      body,
    };
  },
  root(rng) {
    return {
      label: ["root"],
      method: rng.pick(["GET", "HEAD"]),
      path: rng.pick(["/", "", "/blobs", "/uploads/", "/nope"]),
      headers: [],
      body: new Uint8Array(0),
    };
  },
};

const GENERATOR_WEIGHTS: [string, number][] = [
  ["putBlob", 30],
  ["getBlob", 20],
  ["createUpload", 10],
  ["putPart", 20],
  ["getUpload", 5],
  ["finish", 10],
  ["root", 5],
];

const JUNK_HASHES = [
  "",
  "0",
  "..",
  "%2e%2e",
  "..%2f..%2fetc%2fpasswd",
  "%2F",
  "%00",
  "a%00b",
  "%",
  "%zz",
  "A".repeat(96),
  "g".repeat(96),
  "0".repeat(95),
  "0".repeat(97),
  "0".repeat(5000),
  "%E2%80%AE" + "0".repeat(90),
  "０".repeat(96),
  "-1",
  "null",
  "__proto__",
];

const JUNK_LENGTHS = [
  "",
  "-1",
  "-0",
  "abc",
  "1e3",
  "0x10",
  "1.5",
  " 12 ",
  "+5",
  "18446744073709551616",
  "9007199254740993",
  "99999999999999999999999999",
  String(MAX_BODY + 1),
  String(2 ** 32),
  "5, 5",
  "١٢",
];

const JUNK_RANGES = [
  "bytes=",
  "bytes=-",
  "bytes=5-2",
  "bytes=0-0,1-1",
  "bytes=99999999999999999999-",
  "bytes=-99999999999999999999",
  "bytes=-0",
  "bytes = 1 - 2",
  "bytes=1-2-3",
  "items=0-1",
  "bytes=-1-",
  "bytes=0x1-0x2",
  "bytes=1e3-",
  "bytes=" + "9".repeat(400) + "-",
  "Bytes=0-1",
  "bytes=0-1 ",
  "bytes=٣-٤",
];

const JUNK_NUMBERS = [
  "-1",
  "",
  "1.5",
  "1e3",
  "0x1",
  "01",
  "9".repeat(16),
  "9".repeat(40),
  "٣",
  "%31",
  "NaN",
  "Infinity",
  String(2 ** 53),
  "399",
  "400",
  "57600",
];

const JUNK_JSON: (() => Uint8Array)[] = [
  () => encoder.encode("{"),
  () => encoder.encode("null"),
  () => encoder.encode("[]"),
  () => encoder.encode('"str"'),
  () => encoder.encode("42"),
  () => encoder.encode('{"parts": 5}'),
  () => encoder.encode('{"parts": [null]}'),
  () => encoder.encode('{"parts": [{"hash": 5}]}'),
  () => encoder.encode('{"parts": [{"hash": "x"}]}'),
  () => encoder.encode('{"parts": [{}]}'),
  () => encoder.encode('{"expires": 12}'),
  () => encoder.encode('{"expires": "yesterday"}'),
  () => encoder.encode('{"expires": "1970-01-01T00:00:00Z"}'),
  () => encoder.encode('{"expires": "+275760-09-13T00:00:00.000Z"}'),
  () => encoder.encode('{"expires": "9999-12-31T00:00:00Z"}'),
  () => encoder.encode('{"__proto__": {"expires": 1}}'),
  () => encoder.encode('{"constructor": {"prototype": {}}}'),
  () => encoder.encode("[".repeat(50_000) + "]".repeat(50_000)),
  () => encoder.encode('{"a":'.repeat(20_000) + "1" + "}".repeat(20_000)),
  () => encoder.encode(`{"parts": [${'{"hash":"x"},'.repeat(40_000)}{}]}`),
  () =>
    encoder.encode(`{"parts": [${"[[[[[[[[[[[]]]]]]]]]]],".repeat(9000)}1]}`),
  () => encoder.encode(`{"x": "${"a".repeat(MAX_BODY)}"}`),
  () => new Uint8Array([0xff, 0xfe, 0x7b, 0x7d]),
  () => encoder.encode("\u0000"),
];

const METHODS = [
  "GET",
  "HEAD",
  "PUT",
  "POST",
  "DELETE",
  "PATCH",
  "OPTIONS",
  "FOO",
  "M-SEARCH",
  "PROPFIND",
];

/** Replaces the `index`th path segment (counting from 1 after the leading "/"). */
function replaceSegment(path: string, index: number, value: string): string {
  const [pathname, query] = splitQuery(path);
  const segments = pathname.split("/");
  if (index < segments.length) segments[index] = value;
  return segments.join("/") + (query === undefined ? "" : `?${query}`);
}

function splitQuery(path: string): [string, string | undefined] {
  const at = path.indexOf("?");
  return at === -1
    ? [path, undefined]
    : [path.slice(0, at), path.slice(at + 1)];
}

/**
 * The path segments the server routes on: the URL parser resolves `.`,
 * `..` and their percent-encoded forms (`%2e%2e`) before any handler sees
 * the path, so `/blobs/<hash>/%2e%2e/%2e%2e` is `/`, not that blob.
 */
function routedSegments(c: FuzzCase): string[] {
  const raw = c.path.startsWith("/") ? c.path : `/${c.path}`;
  try {
    return new URL(raw, "http://fuzz.test").pathname.split("/");
  } catch {
    return [];
  }
}

function setHeader(c: FuzzCase, name: string, value: string | undefined) {
  c.headers = c.headers.filter(([n]) => n.toLowerCase() !== name);
  if (value !== undefined) c.headers.push([name, value]);
}

/** Mutations that keep the request expressible as a `Request`. */
const MUTATIONS: Record<string, (c: FuzzCase, rng: Rng) => void> = {
  hash(c, rng) {
    const junk = rng.pick(JUNK_HASHES);
    if (c.path.includes("hash=") && rng.chance(0.5)) {
      c.path = c.path.replace(/hash=[^&]*/, `hash=${junk}`);
    } else {
      c.path = replaceSegment(c.path, 2, junk);
    }
  },
  otherHash(c, rng) {
    // A well-formed hash that does not match the content.
    const other = rng.hex(96);
    c.path = c.path.includes("hash=")
      ? c.path.replace(/hash=[0-9a-f]*/, `hash=${other}`)
      : replaceSegment(c.path, 2, other);
  },
  traversal(c, rng) {
    const [pathname, query] = splitQuery(c.path);
    const trick = rng.pick([
      "/..",
      "/../..",
      "/%2e%2e",
      "/%2E%2E/%2e%2e",
      "/.%2e",
      "/..%2f..",
      "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
      "//",
      "/./",
      "/%00",
      "/%2f",
      "/..;",
      "/%5c..%5c..",
      "/\\..\\..",
    ]);
    const cut = rng.int(pathname.length + 1);
    c.path = pathname.slice(0, cut) + trick + pathname.slice(cut) +
      (query === undefined ? "" : `?${query}`);
  },
  contentLength(c, rng) {
    const choice = rng.int(4);
    if (choice === 0) setHeader(c, "content-length", undefined);
    else if (choice === 1) {
      setHeader(c, "content-length", rng.pick(JUNK_LENGTHS));
    } else {
      // A lie by a little, either way.
      const lie = Math.max(0, c.body.length + rng.pick([-100, -1, 1, 7, 5000]));
      setHeader(c, "content-length", String(lie));
    }
  },
  body(c, rng) {
    const choice = rng.int(5);
    if (choice === 0 && c.body.length > 0) {
      c.body = c.body.slice();
      c.body[rng.int(c.body.length)] ^= 1 + rng.int(255);
    } else if (choice === 1) {
      c.body = c.body.slice(0, rng.int(c.body.length + 1));
    } else if (choice === 2) {
      c.body = new Uint8Array([...c.body, ...rng.bytes(1 + rng.int(100))]);
    } else if (choice === 3) {
      c.body = new Uint8Array(0);
    } else {
      c.body = rng.bytes(MAX_BODY + 1);
    }
    if (rng.chance(0.7)) setHeader(c, "content-length", String(c.body.length));
  },
  json(c, rng) {
    c.body = rng.pick(JUNK_JSON)();
    setHeader(c, "content-length", String(c.body.length));
  },
  method(c, rng) {
    c.method = rng.pick(METHODS);
  },
  query(c, rng) {
    const [pathname, query] = splitQuery(c.path);
    const params = new URLSearchParams(query ?? "");
    const choice = rng.int(4);
    if (choice === 0) params.set("offset", rng.pick(JUNK_NUMBERS));
    else if (choice === 1) params.delete("hash");
    else if (choice === 2) params.append("hash", rng.hex(96));
    else params.set("offset", String(rng.int(2 ** 40)));
    c.path = `${pathname}?${params}`;
  },
  partNumber(c, rng) {
    c.path = replaceSegment(c.path, 4, rng.pick(JUNK_NUMBERS));
  },
  range(c, rng) {
    setHeader(c, "range", rng.pick(JUNK_RANGES));
  },
  conditional(c, rng) {
    setHeader(
      c,
      rng.pick(["if-none-match", "if-range"]),
      rng.pick(["*", 'W/"x"', '""', '"', "a, b, , ,", "Wed, 21 Oct 2015"]),
    );
  },
  stall(c) {
    c.stall = true;
  },
  bigHeader(c, rng) {
    c.headers.push([
      `x-fuzz-${rng.int(100)}`,
      "v".repeat(1 << (10 + rng.int(7))),
    ]);
  },
  manyHeaders(c, rng) {
    for (let i = 0, n = 20 + rng.int(60); i < n; i++) {
      c.headers.push([`x-many-${i}`, rng.hex(8)]);
    }
  },
  forwarded(c, rng) {
    setHeader(
      c,
      "x-forwarded-for",
      rng.pick(["", ",", "1.2.3.4", "::1, 10.0.0.1", "x".repeat(2000)]),
    );
  },
  contentType(c, rng) {
    setHeader(
      c,
      "content-type",
      rng.pick(["text/plain", "multipart/form-data; boundary=x", "", "*/*"]),
    );
  },
};

/** Mutations only the wire can carry: raw bytes a `Request` would refuse. */
const WIRE_MUTATIONS: Record<string, (c: FuzzCase, rng: Rng) => void> = {
  rawTraversal(c, rng) {
    c.path = rng.pick([
      "/blobs/../../../../etc/passwd",
      "/../uploads",
      "/blobs/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
      "/uploads/..%2F..%2F..%2Fetc/parts/0?hash=0",
      "/blobs/\\..\\..\\windows",
      "http://127.0.0.1/blobs/" + "0".repeat(96),
      "http://evil.example/../../",
      "*",
      "blobs/" + "0".repeat(96),
      "/" + "a".repeat(10_000),
      "/blobs/" + "%41".repeat(30_000),
    ]);
  },
  nul(c) {
    c.path = c.path + "\u0000";
  },
  duplicateLength(c) {
    c.headers.push(["content-length", String(c.body.length + 1)]);
  },
  chunked(c, rng) {
    setHeader(c, "content-length", rng.chance(0.5) ? undefined : "3");
    c.headers.push(["transfer-encoding", "chunked"]);
    c.body = rng.pick([
      encoder.encode("3\r\nabc\r\n0\r\n\r\n"),
      encoder.encode("zz\r\nabc\r\n0\r\n\r\n"),
      encoder.encode("ffffffffffffffffff\r\nabc\r\n"),
      encoder.encode("3\r\nabc"),
    ]);
  },
  trickle(c, rng) {
    // A byte every 10 to 60 ms, within the idle timeout: a slow-loris the
    // idle timeout alone does not stop (the per-client limit bounds how
    // many one client holds). Half of them stall afterwards.
    c.trickleMs = rng.pick([10, 30, 60]);
    c.stall = rng.chance(0.5);
  },
  hugeHeader(c, rng) {
    c.headers.push([
      "x-huge",
      "h".repeat(rng.pick([70_000, 200_000, 500_000])),
    ]);
  },
  tooManyHeaders(c) {
    for (let i = 0; i < 150; i++) c.headers.push([`x-h${i}`, "v"]);
  },
  garbage(c, rng) {
    c.raw = rng.pick([
      encoder.encode("HELLO\r\n\r\n"),
      encoder.encode("\r\n\r\n"),
      encoder.encode("GET / HTTP/9.9\r\n\r\n"),
      encoder.encode("GET /\r\n\r\n"),
      encoder.encode(`PUT /blobs/${"0".repeat(96)} HTTP/1.0\r\n\r\n`),
      encoder.encode("GET / HTTP/1.1\nhost: x\n\n"),
      encoder.encode("GET / HTTP/1.1\r\nno-colon\r\n\r\n"),
      encoder.encode("GET / HTTP/1.1\r\nhost: x\r\nx: a\u0000b\r\n\r\n"),
      rng.bytes(200),
    ]);
  },
  badHeaderValue(c) {
    c.headers.push(["x-bad", "a\u0001b\u007fc"]);
  },
};

function pickWeighted(rng: Rng, weights: [string, number][]): string {
  const total = weights.reduce((sum, [, w]) => sum + w, 0);
  let at = rng.next() * total;
  for (const [name, weight] of weights) {
    at -= weight;
    if (at < 0) return name;
  }
  return weights[0][0];
}

/** Draws the next case: a valid request, most of the time mutated. */
function generateCase(rng: Rng, state: FuzzState, wire: boolean): FuzzCase {
  const c = GENERATORS[pickWeighted(rng, GENERATOR_WEIGHTS)](rng, state);
  const mutations = Object.keys(MUTATIONS).filter((name) =>
    // Stalls cost an idle timeout each: keep them rare.
    name !== "stall" || rng.chance(wire ? 0.2 : 0.3)
  );
  const count = rng.chance(0.2) ? 0 : 1 + rng.int(3);
  for (let i = 0; i < count; i++) {
    const useWire = wire && rng.chance(0.4);
    const names = useWire ? Object.keys(WIRE_MUTATIONS) : mutations;
    const name = rng.pick(names);
    (useWire ? WIRE_MUTATIONS : MUTATIONS)[name](c, rng);
    c.label.push(name);
  }
  return c;
}

// ---------------------------------------------------------------------------
// Sending

interface Outcome {
  /** The status, or `undefined` when the server closed without answering. */
  status?: number;
  headers: Headers;
  body: Uint8Array;
  elapsed: number;
}

/** The deadline of a case: past it, the handler hangs. */
function deadlineOf(c: FuzzCase, idle: number): number {
  const trickle = c.trickleMs ? TRICKLED_BYTES * c.trickleMs : 0;
  return idle + HANG_MARGIN + trickle;
}

/** Rejects after `ms` with a message naming what hung. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`hang: ${what} after ${ms} ms`)),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The body of an in-process request, stalling after its bytes if asked. */
function requestBody(c: FuzzCase): BodyInit {
  if (!c.stall) return c.body.slice();
  let sent = false;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (!sent && c.body.length > 0) {
        sent = true;
        controller.enqueue(c.body.slice());
        return;
      }
      return new Promise(() => {}); // never another byte, never the end
    },
  }, { highWaterMark: 0 });
}

/**
 * Builds the `Request` of a case, or `undefined` when the platform refuses
 * it (a forbidden method, an unparsable URL): such a case never reaches a
 * handler in process.
 */
function toRequest(c: FuzzCase): Request | undefined {
  try {
    const bodyless = c.method === "GET" || c.method === "HEAD";
    return new Request(
      `http://fuzz.test${c.path.startsWith("/") ? "" : "/"}${c.path}`,
      {
        method: c.method,
        headers: c.headers,
        body: bodyless ? undefined : requestBody(c),
      },
    );
  } catch {
    return undefined;
  }
}

async function sendInProcess(
  handler: (req: Request) => Promise<Response>,
  c: FuzzCase,
): Promise<Outcome | undefined> {
  const req = toRequest(c);
  if (!req) return undefined;
  const started = performance.now();
  const deadline = deadlineOf(c, IDLE_IN_PROCESS);
  const res = await within(handler(req), deadline, "handler");
  const body = new Uint8Array(
    await within(res.arrayBuffer(), deadline, "response body"),
  );
  return {
    status: res.status,
    headers: res.headers,
    body,
    elapsed: performance.now() - started,
  };
}

function wireHead(c: FuzzCase, port: number): Uint8Array {
  const lines = [
    `${c.method} ${c.path} HTTP/1.1`,
    `host: 127.0.0.1:${port}`,
    "connection: close",
    ...c.headers.map(([name, value]) => `${name}: ${value}`),
  ];
  return encoder.encode(lines.join("\r\n") + "\r\n\r\n");
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Sends a case as raw bytes on a fresh connection and reads the answer
 * until the server closes or the answer is complete.
 */
async function sendOnWire(port: number, c: FuzzCase): Promise<Outcome> {
  const started = performance.now();
  const deadline = deadlineOf(c, IDLE_ON_WIRE);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const response = readResponse(conn, c.method === "HEAD");
  response.catch(() => {});
  const send = async () => {
    try {
      if (c.raw) return await writeAll(conn, c.raw);
      await writeAll(conn, wireHead(c, port));
      // A stalled body never sends its last byte; a trickled one sends its
      // first bytes one at a time.
      const end = c.stall ? Math.max(0, c.body.length - 1) : c.body.length;
      const slow = c.trickleMs ? Math.min(end, TRICKLED_BYTES) : 0;
      for (let at = 0; at < slow; at++) {
        await writeAll(conn, c.body.subarray(at, at + 1));
        await delay(c.trickleMs!);
      }
      await writeAll(conn, c.body.subarray(slow, end));
    } catch {
      // The server answered early and stopped reading: its answer says why.
    }
  };
  const sending = send();
  try {
    const outcome = await within(response, deadline, "response on the wire");
    return { ...outcome, elapsed: performance.now() - started };
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
    await sending;
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let n = 0; n < bytes.length;) n += await conn.write(bytes.subarray(n));
}

/**
 * Reads one response: its head, and its body by `Content-Length`, by
 * chunks, or up to EOF. (The server may keep the connection open after
 * answering, to drain a body the handler did not read.)
 */
async function readResponse(
  conn: Deno.Conn,
  isHead: boolean,
): Promise<Omit<Outcome, "elapsed">> {
  const buffer = new Uint8Array(64 * 1024);
  let data = new Uint8Array(0);
  const more = async () => {
    let n: number | null;
    try {
      n = await conn.read(buffer);
    } catch {
      n = null; // reset by the server: as good as closed
    }
    if (n === null) return false;
    data = concatBytes([data, buffer.subarray(0, n)]);
    return true;
  };
  let headEnd = -1;
  while ((headEnd = indexOfHeadEnd(data)) === -1) {
    if (!(await more())) return { headers: new Headers(), body: data };
  }
  const { status, headers } = parseHead(data.subarray(0, headEnd));
  const bodyless = isHead || status === 204 || status === 304 || status < 200;
  const length = bodyless
    ? 0
    : Number(headers.get("content-length") ?? Infinity);
  const chunked = /chunked/i.test(headers.get("transfer-encoding") ?? "");
  const complete = () =>
    chunked
      ? decoder.decode(data.subarray(-5)) === "0\r\n\r\n"
      : data.length - headEnd - 4 >= length;
  while (!complete() && await more());
  const body = data.subarray(headEnd + 4);
  return { status, headers, body: chunked ? unchunk(body) : body };
}

/** Decodes a chunked body (well formed: the server wrote it). */
function unchunk(bytes: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let at = 0;;) {
    const lineEnd = bytes.indexOf(13, at);
    const size = parseInt(decoder.decode(bytes.subarray(at, lineEnd)), 16);
    if (!(size > 0)) break;
    parts.push(bytes.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
  return concatBytes(parts);
}

// ---------------------------------------------------------------------------
// Checking

interface Fixture {
  root: string;
  kv: Deno.Kv;
  catalog: KvCatalog;
  backend: FileBackend;
  store: Store;
  errors: unknown[];
  handler: (req: Request, info?: Deno.ServeHandlerInfo) => Promise<Response>;
  /** Requests the handler has not answered yet. */
  inFlight(): number;
  close(): Promise<void>;
}

async function openFixture(idle: number): Promise<Fixture> {
  const root = await Deno.makeTempDir({ prefix: "blobstore-fuzz-" });
  const kv = await Deno.openKv(":memory:");
  const catalog = new KvCatalog(kv);
  const backend = new FileBackend(join(root, "blobs"));
  const store = new Store({ catalog, backend, minPartSize: MIN_PART });
  const errors: unknown[] = [];
  const inner = createHandler(store, {
    authorize: false,
    maxBodySize: MAX_BODY,
    bodyIdleTimeout: idle,
    maxConcurrentUploads: 1000,
    onError: (err) => errors.push(err),
  });
  let active = 0;
  return {
    root,
    kv,
    catalog,
    backend,
    store,
    errors,
    handler: async (req, info) => {
      active++;
      try {
        return await inner(req, info);
      } finally {
        active--;
      }
    },
    inFlight: () => active,
    async close() {
      kv.close();
      await Deno.remove(root, { recursive: true });
    },
  };
}

/** The parsed `Content-Length` a server would accept, or `undefined`. */
function declaredLength(c: FuzzCase): number | undefined {
  const values = c.headers.filter(([n]) =>
    n.toLowerCase() === "content-length"
  );
  if (values.length !== 1 || !/^\s*\d+\s*$/.test(values[0][1])) {
    return undefined;
  }
  return Number(values[0][1]);
}

/**
 * Checks one answer against the invariants and learns from it. `wire`:
 * the server read exactly `Content-Length` bytes of the body (in process
 * the handler sees the whole stream).
 */
function checkOutcome(
  c: FuzzCase,
  outcome: Outcome,
  state: FuzzState,
  wire: boolean,
): void {
  const { status = 0, body } = outcome;
  state.counts[status] = (state.counts[status] ?? 0) + 1;
  assert(
    status < 500,
    `server error ${status}: ${decoder.decode(body.slice(0, 300))}`,
  );
  if (!wire && status >= 400 && c.method !== "HEAD") {
    const json = JSON.parse(decoder.decode(body));
    assert(typeof json.error === "string" && typeof json.message === "string");
  }
  const declared = declaredLength(c);
  const sent = completeBody(c, declared, wire);
  // Content sent whole and right may be stored even when the answer is an
  // error (a part whose upload was deleted meanwhile): remember it.
  if (sent && !c.raw) state.sentWhole.add(sha384Hex(sent));
  if (c.raw) return;
  if (status < 200 || status >= 300 || c.method !== "PUT") {
    learnOther(c, outcome, state);
    return;
  }
  const json = JSON.parse(decoder.decode(body));
  const isPart = typeof json.part === "number";
  const upload = isPart
    ? state.uploads.find((u) =>
      u.id === decodeURIComponent(routedSegments(c)[2] ?? "")
    )
    : undefined;
  // Re-sending a part already complete with the same hash is a no-op that
  // does not read the body (the store's rule): nothing to check there.
  if (upload?.parts[json.part]?.hash === json.hash) return;
  // A 2xx put acknowledges exactly the bytes sent.
  assert(sent, "acknowledged a body that never ended or lied about its length");
  assert.strictEqual(json.size, sent.length, "acknowledged another size");
  assert.strictEqual(json.hash, sha384Hex(sent), "acknowledged other content");
  if (upload) upload.parts[json.part] = { hash: json.hash, bytes: sent };
  else if (!isPart) state.blobs.set(json.hash, sent);
}

/**
 * The body the server received whole, as long as it declared, or
 * `undefined`: in process the handler reads the whole stream (a stalled
 * one never ends); on the wire the server reads `Content-Length` bytes of
 * what was written (a stalled body lacks its last byte).
 */
function completeBody(
  c: FuzzCase,
  declared: number | undefined,
  wire: boolean,
): Uint8Array | undefined {
  if (declared === undefined) return undefined;
  if (!wire) return !c.stall && declared === c.body.length ? c.body : undefined;
  const written = c.stall ? Math.max(0, c.body.length - 1) : c.body.length;
  return declared <= written ? c.body.subarray(0, declared) : undefined;
}

function learnOther(c: FuzzCase, outcome: Outcome, state: FuzzState): void {
  const { status = 0, body } = outcome;
  if (c.method === "POST" && status === 201) {
    const json = JSON.parse(decoder.decode(body));
    state.uploads.push({ id: json.id, parts: [] });
    if (state.uploads.length > 50) state.uploads.shift();
  } else if (c.method === "POST" && status === 200) {
    state.multipart.push(JSON.parse(decoder.decode(body)).hash);
  } else if (c.method === "GET" && (status === 200 || status === 206)) {
    checkServedBytes(c, outcome, state);
  }
}

/** A blob served must be the bytes that were put, range and all. */
function checkServedBytes(
  c: FuzzCase,
  { status, headers, body }: Outcome,
  state: FuzzState,
): void {
  const segments = routedSegments(c);
  if (segments.length !== 3 || segments[1] !== "blobs") return;
  const hash = segments[2];
  const content = state.blobs.get(hash);
  if (!content) return;
  if (status === 200) {
    assert.strictEqual(sha384Hex(body), hash, "served other bytes");
    return;
  }
  const range = headers.get("content-range")?.match(
    /^bytes (\d+)-(\d+)\/(\d+)$/,
  );
  assert(range, `206 without a valid Content-Range`);
  const [start, last, size] = range.slice(1).map(Number);
  assert.strictEqual(size, content.length, "Content-Range names another size");
  assert.deepStrictEqual(
    body,
    content.subarray(start, last + 1),
    "served a range that is not the blob's",
  );
}

/** The store after a batch: nothing stored that should not be. */
async function checkStore(
  fixture: Fixture,
  state: FuzzState,
  verified: Set<string>,
): Promise<{ refs: number; objects: number }> {
  for (let i = 0; fixture.inFlight() > 0; i++) {
    assert(i < 200, "requests still running 10 s after their clients left");
    await delay(50);
  }
  const names = new Set<string>();
  for await (const ref of fixture.catalog.refsPutBefore(new Date(8.64e15))) {
    assert(
      state.sentWhole.has(ref.hash),
      `stored ${ref.hash}, which no request sent whole`,
    );
    names.add(ref.name);
    if (verified.has(ref.name)) continue;
    const { size, body } = await fixture.backend.get(ref.name);
    const bytes = new Uint8Array(await new Response(body).arrayBuffer());
    assert.strictEqual(size, ref.size);
    assert.strictEqual(sha384Hex(bytes), ref.hash, `${ref.name}: bytes differ`);
    verified.add(ref.name);
  }
  const listed = new Set<string>();
  for await (const { name } of fixture.backend.list()) listed.add(name);
  assert.deepStrictEqual(
    [...listed].sort(),
    [...names].sort(),
    "backend objects and references differ",
  );
  await checkTree(fixture.root);
  return { refs: names.size, objects: listed.size };
}

/** Only the backend's fan-out directories and blob files under the root. */
async function checkTree(root: string): Promise<void> {
  const top = [];
  for await (const entry of Deno.readDir(root)) top.push(entry.name);
  assert.deepStrictEqual(
    top.filter((n) => n !== "blobs"),
    [],
    "files outside the backend",
  );
  const walk = async (dir: string, depth: number) => {
    for await (const entry of Deno.readDir(dir)) {
      const path = join(dir, entry.name);
      if (depth < 2) {
        assert(entry.isDirectory && /^[0-9a-f_]{2}$/.test(entry.name), path);
        await walk(path, depth + 1);
      } else {
        assert(
          entry.isFile && /^[0-9a-f]{96}-[0-9a-f]+$/.test(entry.name),
          path,
        );
      }
    }
  };
  try {
    await walk(join(root, "blobs"), 0);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

function describe(c: FuzzCase): string {
  const head = `${c.method} ${c.path.slice(0, 200)}${
    c.path.length > 200 ? "…" : ""
  }`;
  const headers = c.headers.map(([n, v]) =>
    `${n}: ${v.length > 60 ? `${v.slice(0, 60)}… (${v.length})` : v}`
  );
  return `[${c.label.join(" + ")}] ${head} {${
    headers.join("; ")
  }} body ${c.body.length} B${c.stall ? " then stalls" : ""}${
    c.trickleMs ? `, trickled every ${c.trickleMs} ms` : ""
  }${c.raw ? " (raw bytes)" : ""}`;
}

function failWith(
  mode: string,
  index: number,
  c: FuzzCase,
  err: unknown,
): never {
  throw new Error(
    `fuzz ${mode} case ${index} failed (replay with FUZZ_SEED=${SEED}): ${
      describe(c)
    }\n  ${err instanceof Error ? err.message : err}`,
    { cause: err },
  );
}

// ---------------------------------------------------------------------------
// The tests

Deno.test("http fuzz: in process, random and mutated requests", async () => {
  const fixture = await openFixture(IDLE_IN_PROCESS);
  const rng = new Rng(SEED);
  const state = newState();
  const verified = new Set<string>();
  let tried = 0;
  let refused = 0;
  try {
    for (let i = 0; i < CASES; i++) {
      const c = generateCase(rng, state, false);
      try {
        const outcome = await sendInProcess(fixture.handler, c);
        if (!outcome) {
          refused++;
          continue;
        }
        tried++;
        checkOutcome(c, outcome, state, false);
        assert.deepStrictEqual(fixture.errors, [], "a failure reached onError");
      } catch (err) {
        failWith("in-process", i, c, err);
      }
      if ((i + 1) % BATCH === 0 || i === CASES - 1) {
        await checkStore(fixture, state, verified).catch((err) =>
          failWith("in-process batch ending with", i, c, err)
        );
      }
    }
    const { refs } = await checkStore(fixture, state, verified);
    console.log(
      `seed ${SEED}: ${tried} in-process cases (${refused} refused by Request), statuses ${
        JSON.stringify(state.counts)
      }, ${refs} blobs stored and verified`,
    );
  } finally {
    await fixture.close();
  }
});

Deno.test("http fuzz: over loopback, raw bytes", async () => {
  const fixture = await openFixture(IDLE_ON_WIRE);
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    fixture.handler,
  );
  const port = server.addr.port;
  const rng = new Rng(SEED ^ 0x5bd1e995);
  const state = newState();
  const verified = new Set<string>();
  try {
    for (let i = 0; i < WIRE_CASES; i++) {
      const c = generateCase(rng, state, true);
      try {
        const outcome = await sendOnWire(port, c);
        checkOutcome(c, outcome, state, true);
        assert.deepStrictEqual(fixture.errors, [], "a failure reached onError");
      } catch (err) {
        failWith("wire", i, c, err);
      }
      if ((i + 1) % BATCH === 0 || i === WIRE_CASES - 1) {
        const alive = await fetch(`http://127.0.0.1:${port}/`);
        assert.strictEqual(alive.status, 200, "the server stopped answering");
        await alive.body?.cancel();
        await checkStore(fixture, state, verified).catch((err) =>
          failWith("wire batch ending with", i, c, err)
        );
      }
    }
    const { refs } = await checkStore(fixture, state, verified);
    console.log(
      `seed ${SEED}: ${WIRE_CASES} wire cases, statuses ${
        JSON.stringify(state.counts)
      } (0: closed without an answer), ${refs} blobs stored and verified`,
    );
  } finally {
    await server.shutdown();
    await fixture.close();
  }
});
