/**
 * Fault injection with the real servers: `deno task faults` (the quick
 * form, a few minutes, run by CI) or `FAULTS_FULL=1 deno task faults` (the
 * full form). A plain `deno test` skips it unless BLOBSTORE_FAULTS is set,
 * so the ordinary suite stays fast.
 *
 * - Servers killed (SIGKILL) or frozen (SIGSTOP) and restarted under
 *   concurrent puts, part uploads, finishes and GC: the suite's own
 *   FerretDB, its own Swift proxy in front of the shared Swift storage, and
 *   its own Swift proxy speaking S3 (s3api) under `S3Backend`'s single and
 *   multipart puts (the shared instances are never signalled). Then: every
 *   acknowledged blob opens with its exact bytes, every failure was a typed
 *   error, no reference points at missing bytes, and after `gc` plus
 *   `sweepOrphans` no unreferenced bytes remain (for S3: no object no
 *   reference names and no incomplete multipart upload, listed straight
 *   from the S3 API).
 * - Clients that disconnect, stall or send wrong bytes before, during and
 *   at the end of the body, on the store and over HTTP: nothing stored,
 *   nothing leaked.
 * - The same blob put from several processes at once, and conditional
 *   catalog steps raced from several processes.
 * - A writer killed between writing its bytes and recording them: the
 *   orphan sweep removes exactly that object, never a put in progress.
 *
 * Typed errors: a `BlobStoreError` (with `SwiftError`, `S3Error` and
 * `TimeoutError`), a MongoDB driver `MongoError`, or an error keeping one
 * as its `cause`. FAULTS_SEED replays a run's random choices.
 *
 * @module
 */

import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert";
import { MongoClient } from "mongodb";
import { FileBackend } from "../src/fs/backend.ts";
import { KvBackend } from "../src/kv/backend.ts";
import { createHandler } from "../src/http/handler.ts";
import { Store } from "../src/store.ts";
import { collect as collectStore } from "../src/collect.ts";
import { NotFoundError } from "../src/errors.ts";
import { MultipartBlobs, UNKNOWN_PART_SIZE } from "../src/multipart_blobs.ts";
import { Refs } from "../src/refs.ts";
import { bytesOf, collect, hashOf, readAll } from "./helpers.ts";
import { MONGODB_URL, serviceAvailable } from "./services.ts";
import { openSeams, type Seams } from "./faults/child.ts";
import { caseBlob, clientFaults, expected, rawPut } from "./faults/clients.ts";
import {
  danglingChunks,
  dropContainer,
  mongoRig,
  S3_PART_SIZE,
  s3Rig,
  swiftNames,
  swiftRig,
} from "./faults/rigs.ts";
import {
  FAULTS_STATE,
  ferretdbBinary,
  PrivateFerretDB,
  PrivateSwiftProxy,
} from "./faults/servers.ts";
import {
  type FaultReport,
  runUnderFaults,
  summarize,
} from "./faults/workload.ts";

const FULL = Deno.env.get("FAULTS_FULL") === "1" ||
  Deno.env.get("BLOBSTORE_FAULTS") === "full";
const ENABLED = FULL || Deno.env.get("BLOBSTORE_FAULTS") !== undefined;
const SEED = Number(Deno.env.get("FAULTS_SEED") ?? Date.now() % 1e9);
const KiB = 1024;
const SWIFT_AUTH_URL = Deno.env.get("SWIFT_AUTH_URL") ??
  "http://127.0.0.1:8390/auth/v1.0";

const servicesOk = ENABLED && await serviceAvailable(
  "FerretDB binary, MongoDB server and Swift (for the fault suite)",
  async () => {
    if (!await ferretdbBinary()) throw new Error("no FerretDB binary");
    const client = await MongoClient.connect(MONGODB_URL, {
      serverSelectionTimeoutMS: 3000,
    });
    await client.close();
    const res = await fetch(SWIFT_AUTH_URL, {
      headers: { "X-Auth-User": "test:tester", "X-Auth-Key": "testing" },
    });
    await res.body?.cancel();
    if (!res.ok) throw new Error(`Swift auth: HTTP ${res.status}`);
  },
);
const ignore = !ENABLED || !servicesOk;
if (ENABLED) {
  console.log(`faults: ${FULL ? "full" : "quick"} form, FAULTS_SEED=${SEED}`);
}

/** Totals over the whole run, printed at its end for the report. */
const totals = {
  faults: 0,
  survived: 0,
  lost: 0,
  leaked: 0,
  untyped: 0,
  hung: 0,
  cases: 0,
  rawSocketErrors: 0,
  /**
   * Per way of writing blobs in pieces (Static Large Objects, S3 multipart
   * uploads): puts acknowledged and read back intact, unfinished sets
   * swept.
   */
  pieces: {} as Record<
    string,
    { acked: number; intact: number; unfinishedLabel: string; swept: number }
  >,
};

/**
 * Whether a raw Node socket error (EPIPE) escaping the MongoDB driver under
 * Deno fails the run. Off by default: it is the driver's, reported, and
 * tolerated until MongoCatalog wraps driver failures (see the report).
 */
const STRICT_ERRORS = Deno.env.get("FAULTS_STRICT_ERRORS") === "1";

function check(report: FaultReport) {
  console.log(summarize(report));
  const problems = {
    lost: report.lost,
    "dangling references": report.danglingRefs,
    leaked: report.leaked,
    "untyped errors": STRICT_ERRORS
      ? [...report.untyped, ...report.rawSocketErrors]
      : report.untyped,
    hung: report.hung,
  };
  for (const [what, list] of Object.entries(problems)) {
    for (const line of list.slice(0, 10)) console.log(`  ${what}: ${line}`);
  }
  for (const line of report.rawSocketErrors) {
    console.log(`  raw socket error from the MongoDB driver: ${line}`);
  }
  totals.rawSocketErrors += report.rawSocketErrors.length;
  totals.faults += report.faults;
  totals.lost += report.lost.length;
  totals.leaked += report.leaked.length;
  totals.untyped += report.untyped.length;
  totals.hung += report.hung.length;
  const { pieces } = report;
  if (pieces) {
    const t = totals.pieces[pieces.label] ??= {
      acked: 0,
      intact: 0,
      unfinishedLabel: pieces.unfinishedLabel,
      swept: 0,
    };
    t.acked += pieces.ackedPuts;
    t.intact += pieces.intactPuts;
    t.swept += pieces.sweptSets;
  }
  const clean = Object.values(problems).every((l) => l.length === 0);
  if (clean) totals.survived += report.faults;
  for (const [what, list] of Object.entries(problems)) {
    strictEqual(list.length, 0, `${report.rig}: ${what}: ${list.join("; ")}`);
  }
  ok(report.ackedPuts > 0, "some puts were acknowledged");
  if (pieces) {
    // The piece size is there to put pieces (Static Large Objects, S3
    // multipart uploads) under faults: a run that stored none, or none of
    // several pieces, did not test what it claims to.
    ok(
      pieces.intactPuts > 0,
      `${report.rig}: no put in ${pieces.piece} (${pieces.label}) was acknowledged and read back intact`,
    );
    ok(
      pieces.maxPieces >= 3,
      `${report.rig}: no acknowledged put had 3 ${pieces.piece} or more (most: ${pieces.maxPieces})`,
    );
    strictEqual(
      pieces.sweptSets,
      pieces.unfinishedSets,
      `${report.rig}: the sweep left ${pieces.unfinishedLabel}`,
    );
  }
}

Deno.test({
  name: "faults: servers killed or frozen under puts, parts, finishes and GC",
  ignore,
  fn: async (t) => {
    const ferret = await PrivateFerretDB.create("ferretdb-kill");
    const proxy = await PrivateSwiftProxy.create();
    try {
      const rigs = [
        () => mongoRig(ferret, 64 * KiB),
        () => swiftRig(ferret, proxy, 128 * KiB),
      ];
      for (const [i, open] of rigs.entries()) {
        const rig = await open();
        try {
          await t.step(rig.name, async () => {
            check(
              await runUnderFaults(rig, {
                faults: FULL ? 30 : 6,
                seed: SEED + i,
                minPartSize: i === 0 ? 64 * KiB : 128 * KiB,
                maxPutSize: i === 0 ? 256 * KiB : 512 * KiB,
                freeze: true,
                log: (line) => console.log(line),
              }),
            );
          });
        } finally {
          await rig.close();
        }
      }
    } finally {
      await ferret.close();
      await proxy.close();
    }
  },
});

/**
 * The S3 rig: puts of up to 16 MiB and store parts of 3 to 6 MiB, against
 * S3's 5 MiB parts, so that about two puts in three (up to 4 parts each)
 * and a third of the store's parts go up as S3 multipart uploads, the rest
 * as single PUTs.
 */
const S3_MIN_STORE_PART = 3 * 1024 * KiB;
const S3_MAX_PUT = 16 * 1024 * KiB;

Deno.test({
  name:
    "faults: the S3 proxy killed or frozen under puts, multipart puts, parts, finishes and GC",
  ignore,
  fn: async () => {
    const proxy = await PrivateSwiftProxy.create("s3api");
    const rig = s3Rig(proxy, S3_MIN_STORE_PART);
    try {
      ok(S3_MAX_PUT > 2 * S3_PART_SIZE, "some puts have 3 parts or more");
      check(
        await runUnderFaults(rig, {
          faults: FULL ? 30 : 6,
          seed: SEED + 2,
          minPartSize: S3_MIN_STORE_PART,
          maxPutSize: S3_MAX_PUT,
          freeze: true,
          log: (line) => console.log(line),
        }),
      );
    } finally {
      await rig.close();
      await proxy.close();
    }
  },
});

// ---- clients that misbehave ----

/** Seams for one case, and how to find what a failed put may have left. */
interface CaseSeams {
  store: Store;
  /** The same seams, as a child process opens them. */
  config: Seams;
  /** Anything stored or left behind, described; empty when clean. */
  residue(hash: string): Promise<string[]>;
  close(): Promise<void>;
}

type SeamKind = Seams["kind"];

async function openCaseSeams(kind: SeamKind): Promise<CaseSeams> {
  const id = crypto.randomUUID().replaceAll("-", "").slice(0, 12);
  const dir = `${FAULTS_STATE}/case-${id}`;
  await Deno.mkdir(dir, { recursive: true });
  const seams: Seams = kind === "kv+file"
    ? { kind, kvPath: `${dir}/catalog.kv`, dir: `${dir}/blobs` }
    : kind === "kv+kv"
    ? { kind, kvPath: `${dir}/store.kv` }
    : kind === "kv+swift"
    ? {
      kind,
      kvPath: `${dir}/catalog.kv`,
      authURL: SWIFT_AUTH_URL,
      bucket: `faults_${id}`,
    }
    : { kind, url: MONGODB_URL, db: `faults_${id}` };
  const opened = await openSeams(seams);
  const client = kind === "mongo+mongo"
    ? await MongoClient.connect(MONGODB_URL)
    : undefined;
  const store = new Store({ ...opened, minPartSize: 64 * KiB });
  return {
    store,
    config: seams,
    async residue(hash) {
      const found: string[] = [];
      if (await opened.catalog.getRef(hash)) found.push("a reference");
      for (const o of await collect(opened.backend.list!())) {
        found.push(`object ${o.name}`);
      }
      if (opened.backend instanceof FileBackend) {
        for (const path of await filesUnder(`${dir}/blobs`)) {
          found.push(`file ${path}`);
        }
      }
      if (opened.backend instanceof KvBackend) {
        const swept = await opened.backend.sweep(0);
        if (swept) found.push(`${swept} KV debris entries`);
      }
      if (client && seams.kind === "mongo+mongo") {
        found.push(...await danglingChunks(client.db(seams.db), "blobstore"));
      }
      if (seams.kind === "kv+swift") {
        for (
          const n of await swiftNames(
            SWIFT_AUTH_URL,
            `${seams.bucket}_segments`,
          )
        ) {
          found.push(`segment ${n}`);
        }
      }
      return found;
    },
    async close() {
      await opened.close();
      if (client && seams.kind === "mongo+mongo") {
        await client.db(seams.db).dropDatabase();
        await client.close();
      }
      if (seams.kind === "kv+swift") {
        await dropContainer(SWIFT_AUTH_URL, seams.bucket);
        await dropContainer(SWIFT_AUTH_URL, `${seams.bucket}_segments`);
      }
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) out.push(...await filesUnder(path));
      else out.push(path);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return out;
}

const SEAM_KINDS: SeamKind[] = ["kv+file", "kv+kv", "mongo+mongo", "kv+swift"];

Deno.test({
  name: "faults: store puts from clients that disconnect, stall or lie",
  ignore,
  fn: async (t) => {
    const size = 200 * KiB;
    for (const kind of SEAM_KINDS) {
      await t.step(kind, async () => {
        const seams = await openCaseSeams(kind);
        try {
          for (const [i, fault] of clientFaults(300).entries()) {
            const { bytes, hash } = caseBlob(size, SEED + i);
            const err = await seams.store.put(fault.source(bytes), hash, size)
              .then(() => undefined, (e) => e);
            ok(err, `${kind}, client ${fault.name}: the put succeeded`);
            ok(
              expected(fault, err),
              `${kind}, client ${fault.name}: got ${err}`,
            );
            deepStrictEqual(
              await seams.residue(hash),
              [],
              `${kind}, client ${fault.name}: left something`,
            );
            totals.cases++;
          }
          // and the store still works
          const { bytes, hash } = caseBlob(size, SEED);
          await seams.store.put(bytes, hash, size);
          deepStrictEqual(
            await readAll((await seams.store.open(hash)).body),
            bytes,
          );
        } finally {
          await seams.close();
        }
      });
    }
  },
});

/**
 * The HTTP handler on `seams`, served on a free port, counting the
 * requests in flight: `settled()` waits until the handler has returned
 * from every request.
 */
function serveCase(seams: CaseSeams) {
  let inFlight = 0;
  const errors: unknown[] = [];
  const handler = createHandler(seams.store, {
    authorize: false,
    bodyIdleTimeout: 1000,
    onError: (err) => errors.push(err),
  });
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: () => {},
  }, async (req, info) => {
    inFlight++;
    try {
      return await handler(req, info);
    } finally {
      inFlight--;
    }
  });
  return {
    port: server.addr.port,
    errors,
    server,
    async settled() {
      for (let i = 0; i < 200 && inFlight > 0; i++) {
        await new Promise((r) => setTimeout(r, 25));
      }
      strictEqual(inFlight, 0, "the handler finished with the request");
    },
  };
}

/**
 * `seams.residue(hash)` once `done` holds of it, or after 2 s: the put's
 * own cleanup may still be unwinding as its handler returns (a temporary
 * file not yet renamed or removed). Says so when it needed a moment.
 */
async function residueOnce(
  seams: CaseSeams,
  hash: string,
  done: (residue: string[]) => boolean,
  label: string,
): Promise<string[]> {
  let residue = await seams.residue(hash);
  for (let i = 0; i < 40 && !done(residue); i++) {
    await new Promise((r) => setTimeout(r, 50));
    residue = await seams.residue(hash);
    if (done(residue)) {
      console.log(`${label}: settled ${(i + 1) * 50} ms after the handler`);
    }
  }
  return residue;
}

/**
 * Nothing left, or the blob `hash` stored whole: its reference, and only
 * its object (listed by the backend, and on files its file too).
 */
const nothingOrWhole = (hash: string) => (r: string[]) =>
  r.length === 0 ||
  (r.length >= 2 && r[0] === "a reference" &&
    r.slice(1).every((entry) => entry.includes(`${hash}-`)));

/** One misbehaving client of the HTTP cases. */
interface HttpClientCase {
  name: string;
  send: (b: Uint8Array) => number;
  stallMs?: number;
  hangUp: boolean;
  wrongAt?: (n: number) => number;
  status?: number;
}

/** Clients that hang up or stall at every stage, for a body of any size. */
const HANG_UPS: HttpClientCase[] = [
  { name: "hangs up before the body", send: () => 0, hangUp: true },
  { name: "hangs up mid body", send: (b) => b.length >> 1, hangUp: true },
  { name: "hangs up one byte short", send: (b) => b.length - 1, hangUp: true },
  {
    name: "stalls mid body, then hangs up",
    send: (b) => b.length >> 1,
    stallMs: 500,
    hangUp: true,
  },
  {
    name: "stalls mid body past the server's idle timeout",
    send: (b) => b.length >> 1,
    hangUp: false,
    status: 408,
  },
  {
    name: "stalls before the body past the server's idle timeout",
    send: () => 0,
    hangUp: false,
    status: 408,
  },
];

/** Clients that send a wrong byte, first, midway or last (a 422). */
const LIARS: HttpClientCase[] = [
  ["first", () => 0],
  ["middle", (n: number) => n >> 1],
  ["last", (n: number) => n - 1],
].map(([where, at]) => ({
  name: `sends a wrong ${where} byte`,
  send: (b: Uint8Array) => b.length,
  hangUp: false,
  wrongAt: at as (n: number) => number,
  status: 422,
}));

Deno.test({
  name: "faults: HTTP puts from clients that hang up, stall or lie",
  ignore,
  fn: async (t) => {
    const size = 300 * KiB;
    for (const kind of ["kv+file", "mongo+mongo"] as SeamKind[]) {
      await t.step(kind, async () => {
        const seams = await openCaseSeams(kind);
        const { port, errors, server, settled } = serveCase(seams);
        try {
          for (const [i, c] of [...HANG_UPS, ...LIARS].entries()) {
            const { bytes, hash } = caseBlob(size, SEED + 100 + i);
            const body = c.wrongAt ? bytes.slice() : bytes;
            if (c.wrongAt) body[c.wrongAt(size)] ^= 0xff;
            const status = await rawPut(port, `/blobs/${hash}`, body, {
              declared: size,
              send: c.send(body),
              stallMs: c.stallMs,
              hangUp: c.hangUp,
            });
            await settled();
            if (c.status) strictEqual(status, c.status, `${kind}: ${c.name}`);
            const label = `${kind}: client ${c.name}`;
            deepStrictEqual(
              await residueOnce(seams, hash, (r) => r.length === 0, label),
              [],
              `${label}: left something`,
            );
            totals.cases++;
          }
          // a complete body whose answer is never read: stored, and whole
          const { bytes, hash } = caseBlob(size, SEED + 200);
          await rawPut(port, `/blobs/${hash}`, bytes, {
            declared: size,
            send: size,
            hangUp: true,
          });
          await settled();
          const label = `${kind}: complete body, answer unread`;
          const whole = nothingOrWhole(hash);
          const residue = await residueOnce(seams, hash, whole, label);
          ok(whole(residue), `${label}: ${residue}`);
          if (residue.length) {
            deepStrictEqual(
              await readAll((await seams.store.open(hash)).body),
              bytes,
            );
          }
          deepStrictEqual(errors, [], "no 500s");
        } finally {
          await server.shutdown();
          await seams.close();
        }
      });
    }
  },
});

Deno.test({
  name:
    "faults: HTTP POST /blobs from clients that hang up, stall or lie (staged on files, in parts on GridFS)",
  ignore,
  fn: async (t) => {
    // Over one 8 MiB part, so that the file backend stages the body and
    // GridFS, which cannot, takes the parts path.
    const size = UNKNOWN_PART_SIZE + 300 * KiB;
    for (const kind of ["kv+file", "mongo+mongo"] as SeamKind[]) {
      await t.step(kind, async () => {
        const seams = await openCaseSeams(kind);
        const { port, errors, server, settled } = serveCase(seams);
        // Parts stored before a POST failed are garbage for the next
        // collection, as the README says: collect, then nothing is left.
        const collected = async () =>
          await collectStore(seams.store, {
            keep: new Refs(),
            before: new Date(),
            graceMs: 0,
          });
        try {
          for (const [i, c] of [...HANG_UPS, LIARS[1]].entries()) {
            const { bytes, hash } = caseBlob(size, SEED + 300 + i);
            const body = c.wrongAt ? bytes.slice() : bytes;
            if (c.wrongAt) body[c.wrongAt(size)] ^= 0xff;
            const status = await rawPut(port, "/blobs", body, {
              method: "POST",
              // The liar says the hash of the bytes it meant to send.
              headers: c.wrongAt
                ? {
                  "repr-digest": `sha-384=:${
                    Buffer.from(hash, "hex").toString("base64")
                  }:`,
                }
                : {},
              declared: size,
              send: c.send(body),
              stallMs: c.stallMs,
              hangUp: c.hangUp,
            });
            await settled();
            const label = `${kind}: POST, client ${c.name}`;
            if (c.status) strictEqual(status, c.status, label);
            await rejects(seams.store.stat(hash), NotFoundError, label);
            if (seams.store.canStage) {
              // Staged and never named: removed at once.
              deepStrictEqual(
                await residueOnce(seams, hash, (r) => r.length === 0, label),
                [],
                `${label}: left something`,
              );
            } else {
              await collected();
              deepStrictEqual(
                await seams.residue(hash),
                [],
                `${label}: left something past a collection`,
              );
            }
            totals.cases++;
          }
          // a complete body whose answer is never read: stored, and whole
          const { bytes, hash } = caseBlob(size, SEED + 400);
          await rawPut(port, "/blobs", bytes, {
            method: "POST",
            declared: size,
            send: size,
            hangUp: true,
          });
          await settled();
          const label = `${kind}: POST, complete body, answer unread`;
          const stored = async () => {
            const found = await seams.store.stat(hash).catch(() => undefined);
            if (found) {
              const blobs = new MultipartBlobs(seams.store);
              deepStrictEqual(
                await readAll((await blobs.open(hash)).body),
                bytes,
              );
            }
            return found !== undefined;
          };
          let whole = await stored();
          for (let i = 0; i < 40 && !whole; i++) {
            await new Promise((r) => setTimeout(r, 50));
            whole = await stored();
          }
          if (seams.store.canStage) {
            const residue = await residueOnce(
              seams,
              hash,
              nothingOrWhole(hash),
              label,
            );
            ok(nothingOrWhole(hash)(residue), `${label}: ${residue}`);
          }
          deepStrictEqual(errors, [], "no 500s");
        } finally {
          await server.shutdown();
          await seams.close();
        }
      });
    }
  },
});

// ---- several processes ----

const CHILD = new URL("./faults/child.ts", import.meta.url).pathname;

/** Runs a child task; returns its JSON lines. */
async function child(task: unknown): Promise<Record<string, unknown>[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-kv", CHILD, JSON.stringify(task)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(
      `child failed (${out.code}): ${text}${
        new TextDecoder().decode(out.stderr)
      }`,
    );
  }
  return text.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

/** How long children need to start before they act together. */
const CHILD_START_MS = 4000;

Deno.test({
  name: "faults: the same blob put from several processes at once",
  ignore,
  fn: async (t) => {
    const processes = 4;
    const rounds = FULL ? 8 : 2;
    for (const kind of ["kv+file", "mongo+mongo"] as SeamKind[]) {
      await t.step(kind, async () => {
        const seams = await openCaseSeams(kind);
        try {
          const { config } = seams;
          for (let round = 0; round < rounds; round++) {
            const size = 1024 * KiB + round;
            const seed = SEED + 300 + round;
            const startAt = Date.now() + CHILD_START_MS;
            const results = (await Promise.all(
              Array.from(
                { length: processes },
                () =>
                  child({ mode: "put", seams: config, startAt, size, seed }),
              ),
            )).flat();
            deepStrictEqual(
              results,
              Array(processes).fill({ ok: true }),
              `${kind}: every process's put is acknowledged`,
            );
            const bytes = bytesOf(size, seed);
            const hash = hashOf(bytes);
            deepStrictEqual(
              await readAll((await seams.store.open(hash)).body),
              bytes,
            );
            // one reference, one object: the copies that lost were removed
            const ref = await seams.store.catalog.getRef(hash);
            const names = (await collect(seams.store.backend.list!())).map(
              (o) => o.name,
            );
            ok(
              ref && names.includes(ref.name),
              `${kind}: the reference's object`,
            );
          }
          const objects = await collect(seams.store.backend.list!());
          strictEqual(objects.length, rounds, `${kind}: one object per blob`);
          totals.cases += rounds;
        } finally {
          await seams.close();
        }
      });
    }
  },
});

Deno.test({
  name: "faults: conditional catalog steps raced from several processes",
  ignore,
  fn: async (t) => {
    const processes = 4;
    const uploads = FULL ? 200 : 50;
    const race = async (kind: string, seams: CaseSeams) => {
      const far = new Date("9999-01-01T00:00:00Z");
      const ids: string[] = [];
      for (let i = 0; i < uploads; i++) {
        const id = `race-${i}-${crypto.randomUUID().slice(0, 8)}`;
        await seams.store.catalog.insertUpload({
          id,
          expires: far,
          parts: [],
          hash: "0".repeat(96),
        });
        ids.push(id);
      }
      const startAt = Date.now() + CHILD_START_MS;
      const results = await Promise.all(
        Array.from({ length: processes }, (_, p) =>
          child({
            mode: "setOwner",
            seams: seams.config,
            startAt,
            owner: `owner-${p}`,
            ids,
          })),
      );
      const wins = new Map<string, number>();
      for (const lines of results) {
        for (const line of lines) {
          ok(line.ok, `${kind}: a setOwner failed: ${JSON.stringify(line)}`);
          for (const id of line.won as string[]) {
            wins.set(id, (wins.get(id) ?? 0) + 1);
          }
        }
      }
      const doubled = ids.filter((id) => (wins.get(id) ?? 0) > 1);
      const none = ids.filter((id) => !wins.has(id));
      console.log(
        `${kind}: ${uploads} uploads, each setOwner raced by ${processes} processes: ${doubled.length} with more than one winner, ${none.length} with none`,
      );
      return { doubled, none };
    };

    for (const kind of ["kv+kv", "mongo+mongo"] as SeamKind[]) {
      await t.step(`${kind}: at most one owner wins`, async () => {
        const seams = await openCaseSeams(kind);
        try {
          const { doubled, none } = await race(kind, seams);
          strictEqual(none.length, 0);
          if (kind === "mongo+mongo" && doubled.length > 0) {
            // FerretDB v1 (SQLite) applies a conditional update as read,
            // modify, write back by _id: atomic within one process only (the
            // catalog's per-document queue). Known, documented: recorded,
            // not failed, unless FAULTS_STRICT_FERRETDB=1.
            console.log(
              `FerretDB v1/SQLite: ${doubled.length} of ${uploads} setOwner races had several winners (not atomic across processes)`,
            );
            if (Deno.env.get("FAULTS_STRICT_FERRETDB") === "1") {
              strictEqual(doubled.length, 0);
            }
          } else {
            strictEqual(doubled.length, 0, `${kind}: several owners won`);
          }
          totals.cases += uploads;
        } finally {
          await seams.close();
        }
      });
    }
  },
});

// ---- a writer killed between writing its bytes and recording them ----

/** Starts an orphan-making child; resolves with the object name once written, after killing it. */
async function killedWriter(
  config: Seams,
  size: number,
  seed: number,
): Promise<string> {
  const proc = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-kv",
      CHILD,
      JSON.stringify({ mode: "orphan", seams: config, size, seed }),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) throw new Error(`writer exited before writing: ${text}`);
      text += value;
      const match = /\{"written":"([^"]+)"\}/.exec(text);
      if (match) {
        proc.kill("SIGKILL");
        return match[1];
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
    await proc.status;
  }
}

Deno.test({
  name:
    "faults: a writer killed between bytes and reference leaves an orphan the sweep removes",
  ignore,
  fn: async (t) => {
    for (const kind of SEAM_KINDS) {
      await t.step(kind, async () => {
        const seams = await openCaseSeams(kind);
        try {
          const { store } = seams;
          const size = 256 * KiB;
          const orphan = await killedWriter(seams.config, size, SEED + 400);
          const names = async () =>
            (await collect(store.backend.list!())).map((o) => o.name).sort();
          deepStrictEqual(await names(), [orphan], "the bytes were written");
          strictEqual(
            await store.catalog.getRef(orphan.slice(0, 96)),
            undefined,
          );
          // Within the grace period, nothing goes.
          strictEqual(
            (await store.sweepOrphans({ olderThan: 3600_000 })).removed,
            0,
          );
          // A put still streaming its body while the sweep runs.
          const { bytes, hash } = caseBlob(size, SEED + 401);
          let release!: () => void;
          const gate = new Promise<void>((r) => release = r);
          let sent = 0;
          const slow = new ReadableStream<Uint8Array>({
            async pull(controller) {
              if (sent === size >> 1) await gate;
              const end = sent < size >> 1 ? size >> 1 : size;
              controller.enqueue(bytes.slice(sent, end));
              sent = end;
              if (sent === size) controller.close();
            },
          }, { highWaterMark: 0 });
          const putting = store.put(slow, hash, size);
          while (sent < size >> 1) await new Promise((r) => setTimeout(r, 10));
          await new Promise((r) => setTimeout(r, 100));
          const stats = await store.sweepOrphans({ olderThan: 0 });
          strictEqual(stats.removed, 1, `${kind}: exactly the orphan`);
          strictEqual(stats.removedBytes, size);
          deepStrictEqual(await names(), [], `${kind}: the orphan is gone`);
          release();
          await putting;
          deepStrictEqual(await readAll((await store.open(hash)).body), bytes);
          const ref = await store.catalog.getRef(hash);
          deepStrictEqual(await names(), [ref!.name]);
          strictEqual((await store.sweepOrphans({ olderThan: 0 })).removed, 0);
          totals.cases++;
        } finally {
          await seams.close();
        }
      });
    }
  },
});

Deno.test({
  name: "faults: totals",
  ignore,
  fn() {
    console.log(
      `faults totals: ${totals.faults} server faults injected, ${totals.survived} survived; ${totals.cases} client, process and orphan cases; lost blobs ${totals.lost}, leaked ${totals.leaked}, untyped errors ${totals.untyped}, hung ${totals.hung}, raw driver socket errors ${totals.rawSocketErrors}${
        Object.entries(totals.pieces).map(([label, t]) =>
          `; ${label}: puts acknowledged ${t.acked}, read back intact ${t.intact}, ${t.unfinishedLabel} swept ${t.swept}`
        ).join("")
      }`,
    );
  },
});
