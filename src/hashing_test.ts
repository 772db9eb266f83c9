import {
  deepStrictEqual,
  notStrictEqual,
  ok,
  rejects,
  strictEqual,
  throws,
} from "node:assert";
import { seededRandom } from "../tests/rng.ts";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import {
  BadParamsError,
  HashMismatchError,
  SizeMismatchError,
} from "./errors.ts";
import {
  type Hashing,
  hashingStats,
  type Sha384Job,
  startSha384,
  WORKER_MIN_SIZE,
} from "./hashing.ts";
import { ResumableSha384, STATE_SIZE } from "./resumable_sha384.ts";
import { verified, VerifyStream } from "./verify.ts";

const MiB = 1024 * 1024;

// Random data and chunk sizes come from a seeded generator: a failure names
// its seed, and TEST_SEED=<seed> replays it.
const SEED = Number(
  Deno.env.get("TEST_SEED") ?? Math.floor(Math.random() * 2 ** 32),
);
const at = `(TEST_SEED=${SEED})`;

const random = seededRandom(SEED);

/** An integer in [min, max]. */
function between(min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

/** 16 MiB of random bytes, made once; test data are slices of it. */
const POOL = (() => {
  const bytes = new Uint8Array(16 * MiB);
  const words = new Uint32Array(bytes.buffer);
  for (let i = 0; i < words.length; i++) words[i] = random() * 2 ** 32;
  return bytes;
})();

/** `size` random bytes (a view of the pool, from a random offset). */
function randomBytes(size: number): Uint8Array {
  if (size > POOL.byteLength) throw new Error(`at most ${POOL.byteLength}`);
  const from = between(0, POOL.byteLength - size);
  return POOL.subarray(from, from + size);
}

/** A chunk size from 1 byte to 3 MiB, small ones as likely as large. */
function chunkSize(): number {
  return Math.max(1, Math.floor(Math.exp(random() * Math.log(3 * MiB))));
}

/** Random chunks of `data` (views of it), from 1 byte to 3 MiB. */
function randomChunks(data: Uint8Array): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let from = 0; from < data.byteLength;) {
    const n = Math.min(chunkSize(), data.byteLength - from);
    chunks.push(data.subarray(from, from + n));
    from += n;
  }
  return chunks;
}

function nodeSha384(...pieces: Uint8Array[]): string {
  const hash = createHash("sha384");
  for (const piece of pieces) hash.update(piece);
  return hash.digest("hex");
}

/**
 * Feeds `chunks` to `job`, waiting whenever it says so, and returns how
 * many times it did. Checks that the job leaves the chunks as they were
 * (a worker job sends copies: the caller passes the originals on).
 */
async function feed(job: Sha384Job, chunks: Uint8Array[]): Promise<number> {
  let waits = 0;
  for (const chunk of chunks) {
    const size = chunk.byteLength;
    const first = chunk[0];
    const wait = job.update(chunk);
    strictEqual(chunk.byteLength, size, "the chunk is not detached");
    strictEqual(chunk[0], first);
    if (wait) {
      waits++;
      await wait;
    }
  }
  return waits;
}

/** Hashes `data` in random chunks as `options` say; checks where it ran. */
async function hashWith(
  hashing: "inline" | "worker",
  data: Uint8Array,
  resume?: Uint8Array | null,
): Promise<{ digest: string; state?: Uint8Array }> {
  const job = await startSha384({ hashing, size: data.byteLength, resume });
  strictEqual(job.where, hashing);
  await feed(job, randomChunks(data));
  return await job.finish();
}

/** The stats, checking that workers are available (else nothing here holds). */
function stats(): { worker: number; inline: number } {
  const { worker, inline, unavailable } = hashingStats();
  strictEqual(unavailable, undefined, "workers are available");
  return { worker, inline };
}

const config = fileURLToPath(new URL("../deno.json", import.meta.url));

/**
 * Runs `code` as a script of its own in a child Deno (with the project's
 * import map, for "hash-wasm"), killed after `timeoutMs`.
 */
async function runScript(
  code: string,
  timeoutMs: number,
): Promise<
  {
    status: number | "timeout";
    stdout: string;
    stderr: string;
    exitedAt: number;
  }
> {
  const dir = await Deno.makeTempDir({ prefix: "hashing_test_" });
  try {
    const script = `${dir}/script.ts`;
    await Deno.writeTextFile(script, code);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--config", config, script],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const ended = await Promise.race([child.status, timeout]);
    const exitedAt = Date.now();
    clearTimeout(timer);
    if (ended === "timeout") child.kill("SIGKILL");
    const { stdout, stderr } = await child.output();
    return {
      status: ended === "timeout" ? "timeout" : ended.code,
      stdout: new TextDecoder().decode(stdout),
      stderr: new TextDecoder().decode(stderr),
      exitedAt,
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const SIZES = [
  0,
  1,
  1000,
  WORKER_MIN_SIZE - 1,
  WORKER_MIN_SIZE,
  5 * MiB + 3,
  12 * MiB,
];

Deno.test("startSha384: worker and inline hash like node:crypto, in random chunks", async (t) => {
  for (const hashing of ["worker", "inline"] as const) {
    await t.step(`${hashing}, plain`, async () => {
      for (const size of SIZES) {
        const data = randomBytes(size);
        const result = await hashWith(hashing, data);
        strictEqual(result.digest, nodeSha384(data), `${size} bytes ${at}`);
        strictEqual(result.state, undefined, "a plain hash has no state");
      }
    });
    await t.step(`${hashing}, resumable`, async () => {
      for (const size of SIZES) {
        const data = randomBytes(size);
        const result = await hashWith(hashing, data, null);
        strictEqual(result.digest, nodeSha384(data), `${size} bytes ${at}`);
        ok(result.state instanceof Uint8Array);
        strictEqual(result.state.byteLength, STATE_SIZE);
        const resumed = await ResumableSha384.create(result.state);
        strictEqual(resumed.digest(), result.digest);
      }
    });
  }
});

Deno.test("startSha384: a state goes from inline to worker and back", async (t) => {
  const a = randomBytes(between(0, 3 * MiB));
  const b = randomBytes(between(1, 3 * MiB));
  const c = randomBytes(between(1, 3 * MiB));
  const sizes = `${a.byteLength}, ${b.byteLength}, ${c.byteLength} bytes ${at}`;

  await t.step("inline, then worker, then inline", async () => {
    const first = await hashWith("inline", a, null);
    const second = await hashWith("worker", b, first.state);
    strictEqual(second.digest, nodeSha384(a, b), sizes);
    const third = await hashWith("inline", c, second.state);
    strictEqual(third.digest, nodeSha384(a, b, c), sizes);
  });

  await t.step("worker, then worker, then a ResumableSha384", async () => {
    const first = await hashWith("worker", a, null);
    const second = await hashWith("worker", b, first.state);
    strictEqual(second.digest, nodeSha384(a, b), sizes);
    const third = await ResumableSha384.create(second.state);
    strictEqual(third.update(c).digest(), nodeSha384(a, b, c), sizes);
  });

  await t.step("a ResumableSha384's state, on a worker", async () => {
    const state = (await ResumableSha384.create()).update(a).save();
    const rest = await hashWith("worker", b, state);
    strictEqual(rest.digest, nodeSha384(a, b), sizes);
  });

  await t.step("an invalid state", async () => {
    const bad = new Uint8Array(STATE_SIZE);
    // Inline, startSha384 itself refuses it.
    await rejects(
      startSha384({ hashing: "inline", resume: bad }),
      BadParamsError,
    );
    // On a worker, the job fails: its next update throws, or its finish
    // rejects, with the worker's message (not a BadParamsError: errors
    // cross the thread as text).
    const job = await startSha384({ hashing: "worker", resume: bad });
    strictEqual(job.where, "worker");
    await rejects(job.finish(), /invalid SHA-384 state/);
    throws(() => job.update(new Uint8Array(1)), /invalid SHA-384 state/);
    // And the pool goes on.
    const data = randomBytes(2 * MiB);
    strictEqual((await hashWith("worker", data)).digest, nodeSha384(data));
  });
});

Deno.test("startSha384: save() gives the state so far while the job goes on", async (t) => {
  const pieces = [
    randomBytes(between(0, 3 * MiB)),
    randomBytes(between(1, 3 * MiB)),
    randomBytes(between(1, 3 * MiB)),
  ];
  const sizes = pieces.map((p) => p.byteLength).join(", ") + ` bytes ${at}`;
  for (const hashing of ["inline", "worker"] as const) {
    await t.step(hashing, async () => {
      const job = await startSha384({ hashing, resume: null });
      strictEqual(job.where, hashing);
      const saves: Promise<Uint8Array>[] = [];
      for (const piece of pieces) {
        await job.update(piece);
        saves.push(job.save()); // not awaited: saves queue behind data
      }
      const { digest } = await job.finish();
      strictEqual(digest, nodeSha384(...pieces), sizes);
      // Each saved state resumes to the hash of the pieces before it.
      const states = await Promise.all(saves);
      for (let i = 0; i < pieces.length; i++) {
        const resumed = await ResumableSha384.create(states[i]);
        strictEqual(
          resumed.digest(),
          nodeSha384(...pieces.slice(0, i + 1)),
          `state ${i}, ${sizes}`,
        );
      }
    });
    await t.step(`${hashing}: a plain job refuses to save`, async () => {
      const job = await startSha384({ hashing });
      await rejects(job.save(), /not resumable/);
      job.abort();
    });
  }
});

Deno.test("startSha384: hashingStats counts where jobs ran; auto decides on the size", async (t) => {
  const cases: [string, Hashing, number | undefined, "inline" | "worker"][] = [
    ['"worker", small', "worker", 10, "worker"],
    ['"worker", no size', "worker", undefined, "worker"],
    ['"inline", large', "inline", 100 * MiB, "inline"],
    ['"auto", empty', "auto", 0, "inline"],
    ['"auto", WORKER_MIN_SIZE - 1', "auto", WORKER_MIN_SIZE - 1, "inline"],
    ['"auto", WORKER_MIN_SIZE', "auto", WORKER_MIN_SIZE, "worker"],
    ['"auto", large', "auto", 100 * MiB, "worker"],
    ['"auto", no size', "auto", undefined, "worker"],
  ];
  for (const [name, hashing, size, where] of cases) {
    await t.step(name, async () => {
      for (const resume of [undefined, null]) {
        const before = stats();
        const job = await startSha384({ hashing, size, resume });
        strictEqual(job.where, where);
        const after = stats();
        deepStrictEqual(after, {
          worker: before.worker + (where === "worker" ? 1 : 0),
          inline: before.inline + (where === "inline" ? 1 : 0),
        });
        job.update(new Uint8Array(3));
        strictEqual((await job.finish()).digest, nodeSha384(new Uint8Array(3)));
      }
    });
  }
  await t.step("the default is auto", async () => {
    const before = stats();
    const job = await startSha384();
    strictEqual(job.where, "worker");
    strictEqual(stats().worker, before.worker + 1);
    strictEqual((await job.finish()).digest, nodeSha384());
  });
});

Deno.test("startSha384: a worker job holds back a fast sender (64 MiB)", async (t) => {
  const data = POOL; // 16 MiB, sent 4 times
  const expected = nodeSha384(data, data, data, data);
  for (const chunking of ["1 MiB chunks", "random chunks"]) {
    await t.step(chunking, async () => {
      const job = await startSha384({ hashing: "worker", size: 64 * MiB });
      let fed = 0;
      let firstWaitAt: number | undefined;
      let waits = 0;
      for (let round = 0; round < 4; round++) {
        const chunks = chunking === "1 MiB chunks"
          ? Array.from(
            { length: 16 },
            (_, i) => data.subarray(i * MiB, (i + 1) * MiB),
          )
          : randomChunks(data);
        for (const chunk of chunks) {
          const wait = job.update(chunk);
          fed += chunk.byteLength;
          if (wait) {
            firstWaitAt ??= fed;
            waits++;
            await wait;
          }
        }
      }
      ok(waits > 0, "update returned a promise");
      // Nothing is hashed before the sender yields: it must be held back
      // once 8 MiB are in flight, give or take a batch and a chunk.
      ok(
        firstWaitAt! <= 8 * MiB + MiB + 3 * MiB,
        `held back only at ${firstWaitAt} ${at}`,
      );
      ok(firstWaitAt! > 8 * MiB, `held back at ${firstWaitAt} already ${at}`);
      strictEqual((await job.finish()).digest, expected);
    });
  }
});

Deno.test("startSha384: an aborted worker job fails; the pool goes on", async (t) => {
  await t.step("aborted midway", async () => {
    const job = await startSha384({ hashing: "worker" });
    await feed(job, randomChunks(randomBytes(5 * MiB)));
    job.abort();
    await rejects(job.finish(), /aborted/);
    throws(() => job.update(new Uint8Array(1)), /aborted/);
    job.abort(); // again: nothing happens
    await rejects(job.finish(), /aborted/);
  });

  await t.step("aborted before any data, and a resumable one", async () => {
    for (const resume of [undefined, null]) {
      const job = await startSha384({ hashing: "worker", resume });
      job.abort();
      await rejects(job.finish(), /aborted/);
    }
  });

  await t.step("aborted while the sender waits: the wait ends", async () => {
    const job = await startSha384({ hashing: "worker" });
    let wait: void | Promise<void> = undefined;
    for (let i = 0; !wait; i = (i + 1) % 16) {
      wait = job.update(POOL.subarray(i * MiB, (i + 1) * MiB));
    }
    job.abort();
    await wait;
    await rejects(job.finish(), /aborted/);
  });

  await t.step("aborted after its finish: the result stands", async () => {
    const data = randomBytes(2 * MiB);
    const job = await startSha384({ hashing: "worker" });
    await feed(job, randomChunks(data));
    const result = await job.finish();
    job.abort();
    deepStrictEqual(await job.finish(), result);
    strictEqual(result.digest, nodeSha384(data));
  });

  await t.step("later jobs, several at once beside aborted ones", async () => {
    const before = stats();
    const datas = Array.from(
      { length: 6 },
      () => randomBytes(between(0, 4 * MiB)),
    );
    const results = await Promise.all(datas.map(async (data, i) => {
      const job = await startSha384({
        hashing: "worker",
        resume: i % 2 ? null : undefined,
      });
      const doomed = await startSha384({ hashing: "worker" });
      const chunks = randomChunks(data);
      await feed(doomed, chunks.slice(0, 3));
      doomed.abort();
      await feed(job, chunks);
      return (await job.finish()).digest;
    }));
    deepStrictEqual(results, datas.map((data) => nodeSha384(data)), at);
    strictEqual(stats().worker, before.worker + 12);
  });
});

/** A stream of `chunks`, counting what is pulled and why it is cancelled. */
function source(chunks: Iterable<Uint8Array>) {
  const it = chunks[Symbol.iterator]();
  const seen = { pulls: 0, cancelled: undefined as unknown };
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      seen.pulls++;
      const next = it.next();
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    cancel(reason) {
      seen.cancelled = reason;
    },
  }, { highWaterMark: 0 });
  return { stream, seen };
}

async function bytesOf(
  stream: ReadableStream<Uint8Array>,
): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

Deno.test("VerifyStream with worker hashing", async (t) => {
  const data = randomBytes(3 * MiB + 17);
  const hash = nodeSha384(data);
  const size = data.byteLength;
  const worker = { hashing: "worker" } as const;

  await t.step("passes matching content through, on a worker", async () => {
    const before = stats();
    const verify = new VerifyStream(size, hash, worker);
    const out = await bytesOf(
      source(randomChunks(data)).stream.pipeThrough(verify),
    );
    ok(Buffer.compare(out, data) === 0, "the same bytes");
    strictEqual(stats().worker, before.worker + 1);
    strictEqual(stats().inline, before.inline);
  });

  await t.step("a wrong hash is a HashMismatchError", async () => {
    const wrong = nodeSha384(data.subarray(1));
    const verify = new VerifyStream(size, wrong, worker);
    await rejects(
      bytesOf(source(randomChunks(data)).stream.pipeThrough(verify)),
      (err) =>
        err instanceof HashMismatchError && err.expected === wrong &&
        err.actual === hash,
    );
  });

  await t.step("a short body is a SizeMismatchError", async () => {
    const verify = new VerifyStream(size, hash, worker);
    await rejects(
      bytesOf(
        source(randomChunks(data.subarray(0, size - 1))).stream.pipeThrough(
          verify,
        ),
      ),
      (err) =>
        err instanceof SizeMismatchError && err.expected === size &&
        err.actual === size - 1,
    );
  });

  await t.step(
    "a long body errors as the excess arrives, before it passes",
    async () => {
      // An endless body: only an error on the excess ends this.
      function* endless() {
        for (let i = 0;; i = (i + 1) % 16) {
          yield POOL.subarray(
            i * MiB,
            (i + 1) * MiB,
          );
        }
      }
      const { stream, seen } = source(endless());
      let passed = 0;
      const limit = 3 * MiB + 5;
      await rejects(
        stream.pipeThrough(new VerifyStream(limit, hash, worker)).pipeTo(
          new WritableStream({
            write: (chunk) => void (passed += chunk.byteLength),
          }),
        ),
        (err) =>
          err instanceof SizeMismatchError && err.expected === limit &&
          err.actual === 4 * MiB,
      );
      strictEqual(passed, 3 * MiB, "the chunk with the excess did not pass");
      ok(seen.pulls <= 6, `pulled ${seen.pulls} chunks`);
      ok(seen.cancelled instanceof SizeMismatchError, "the body was cancelled");
    },
  );

  await t.step(
    "resumed: the state after the body, fresh or resumed",
    async () => {
      const fresh = new VerifyStream(size, hash, { ...worker, resume: null });
      await bytesOf(source(randomChunks(data)).stream.pipeThrough(fresh));
      const state = await fresh.resumed;
      strictEqual(state.byteLength, STATE_SIZE);
      strictEqual((await ResumableSha384.create(state)).digest(), hash);

      // Resumed from a prefix's state, inline; the plain hash is the body's.
      const prefix = randomBytes(between(0, 2 * MiB));
      const prefixState = (await ResumableSha384.create()).update(prefix)
        .save();
      const before = stats();
      const resumed = new VerifyStream(size, hash, {
        ...worker,
        resume: prefixState,
      });
      await bytesOf(source(randomChunks(data)).stream.pipeThrough(resumed));
      strictEqual(stats().worker, before.worker + 2, "both hashes on workers");
      const after = await ResumableSha384.create(await resumed.resumed);
      strictEqual(after.digest(), nodeSha384(prefix, data), at);
    },
  );

  await t.step("resumed rejects when the stream fails", async () => {
    const resume = { ...worker, resume: null };
    const wrong = new VerifyStream(size, nodeSha384(data.subarray(1)), resume);
    await rejects(bytesOf(source([data]).stream.pipeThrough(wrong)));
    await rejects(wrong.resumed, HashMismatchError);

    const short = new VerifyStream(size, hash, resume);
    await rejects(
      bytesOf(source([data.subarray(1)]).stream.pipeThrough(short)),
    );
    await rejects(short.resumed, SizeMismatchError);

    const long = new VerifyStream(size - 1, hash, resume);
    await rejects(bytesOf(source([data]).stream.pipeThrough(long)));
    await rejects(long.resumed, SizeMismatchError);

    const cancelled = new VerifyStream(size, hash, resume);
    const reader = source([data.subarray(0, MiB), data.subarray(MiB)]).stream
      .pipeThrough(cancelled).getReader();
    await reader.read();
    await reader.cancel(new Error("client went away"));
    await rejects(cancelled.resumed, /client went away/);

    const broken = new VerifyStream(size, hash, resume);
    const failing = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(data.subarray(0, 2 * MiB));
        controller.error(new Error("source broke"));
      },
    });
    await rejects(bytesOf(failing.pipeThrough(broken)), /source broke/);
    await rejects(broken.resumed, /source broke/);
  });

  await t.step(
    "verified() passes a VerifyStream's own output as is",
    async () => {
      const verify = new VerifyStream(size, hash, worker);
      const out = source(randomChunks(data)).stream.pipeThrough(verify);
      strictEqual(verified(out, size, hash), out);
      ok(Buffer.compare(await bytesOf(verified(out, size, hash)), data) === 0);
    },
  );

  await t.step("verified() wraps anything else", async () => {
    const plain = source([data]).stream;
    const wrapped = verified(plain, size, hash);
    notStrictEqual(wrapped, plain);
    ok(Buffer.compare(await bytesOf(wrapped), data) === 0);

    const bad = new Uint8Array(data);
    bad[12345] ^= 1;
    await rejects(
      bytesOf(verified(source([bad]).stream, size, hash)),
      HashMismatchError,
    );

    // The output of a VerifyStream that checks another size, another hash.
    const otherSize = source([data]).stream.pipeThrough(
      new VerifyStream(size, hash, worker),
    );
    const forLess = verified(otherSize, size - 1, hash);
    notStrictEqual(forLess, otherSize);
    await rejects(bytesOf(forLess), SizeMismatchError);

    const wrong = nodeSha384(data.subarray(1));
    const otherHash = source([data]).stream.pipeThrough(
      new VerifyStream(size, hash, worker),
    );
    const forWrong = verified(otherHash, size, wrong);
    notStrictEqual(forWrong, otherHash);
    await rejects(bytesOf(forWrong), HashMismatchError);
  });
});

/**
 * A script that hashes `size` bytes (i * 7) on a worker, `rounds` times
 * with a pause between (long enough for the worker to end idle), then
 * fails two VerifyStreams on workers (a body that breaks, a reader that
 * cancels), prints what it got and when it was done, and falls off its end.
 */
function script(prelude: string, rounds: number, size: number): string {
  const module = new URL("./hashing.ts", import.meta.url).href;
  const verify = new URL("./verify.ts", import.meta.url).href;
  return `${prelude}
const { hashingStats, startSha384 } = await import(${JSON.stringify(module)});
const { VerifyStream } = await import(${JSON.stringify(verify)});
const data = new Uint8Array(${size}).map((_, i) => i * 7);
const results = [];
for (let round = 0; round < ${rounds}; round++) {
  if (round > 0) await new Promise((resolve) => setTimeout(resolve, 500));
  const job = await startSha384({ hashing: "worker" });
  for (let at = 0; at < data.length; at += 65536) {
    await job.update(data.subarray(at, at + 65536));
  }
  results.push({ where: job.where, digest: (await job.finish()).digest });
}
const options = { hashing: "worker", resume: null };
const broken = new VerifyStream(2 * data.length, "0".repeat(96), options);
const body = new ReadableStream({
  start(controller) {
    controller.enqueue(data);
    controller.error(new Error("broke"));
  },
});
await new Response(body.pipeThrough(broken)).arrayBuffer().catch(() => {});
const dropped = new VerifyStream(2 * data.length, "0".repeat(96), options);
const reader = new Blob([data, data]).stream().pipeThrough(dropped).getReader();
await reader.read();
await reader.cancel();
console.log(JSON.stringify({ results, stats: hashingStats(), done: Date.now() }));
`;
}

Deno.test("startSha384: idle workers never keep a process alive", async (t) => {
  const cases = [
    ["Web Worker", "", 8 * MiB],
    // Without Web Workers (as on Node), node:worker_threads. Deno's
    // emulation of it moves bytes slowly: less data.
    [
      "node:worker_threads",
      "delete (globalThis as { Worker?: unknown }).Worker;",
      MiB + 1,
    ],
  ] as const;
  for (const [name, prelude, size] of cases) {
    await t.step(name, async () => {
      const digest = nodeSha384(new Uint8Array(size).map((_, i) => i * 7));
      // Two jobs with a pause between: the first worker ends idle (and
      // that is no failure: the second job runs on a new one).
      const run = await runScript(script(prelude, 2, size), 10_000);
      strictEqual(run.status, 0, `exit status; stderr: ${run.stderr}`);
      const { results, stats, done } = JSON.parse(run.stdout);
      deepStrictEqual(results, [
        { where: "worker", digest },
        { where: "worker", digest },
      ]);
      deepStrictEqual(stats, { worker: 6, inline: 0 }, "no unavailable");
      // The idle worker ends after 200 ms, and the process with it.
      const lingered = run.exitedAt - done;
      ok(lingered < 3000, `exited ${lingered} ms after its last job`);
    });
  }
});
