import { ok, rejects, strictEqual } from "node:assert";
import { BlobStoreError } from "./errors.ts";
import { backoffDelay, retry, TimeoutError, withTimeout } from "./retry.ts";

Deno.test("backoffDelay: doubles up to the cap, with full jitter", () => {
  const top = () => 0.999999;
  strictEqual(backoffDelay(0, 100, 2000, top), 99);
  strictEqual(backoffDelay(1, 100, 2000, top), 199);
  strictEqual(backoffDelay(4, 100, 2000, top), 1599);
  strictEqual(backoffDelay(5, 100, 2000, top), 1999);
  strictEqual(backoffDelay(50, 100, 2000, top), 1999);
  strictEqual(backoffDelay(3, 100, 2000, () => 0), 0);
});

Deno.test("retry: retries failures until one attempt succeeds", async () => {
  const seen: number[] = [];
  const result = await retry((attempt) => {
    seen.push(attempt);
    if (attempt < 2) return Promise.reject(new Error("reset"));
    return Promise.resolve("ok");
  }, { baseDelayMs: 1 });
  strictEqual(result, "ok");
  strictEqual(seen.join(), "0,1,2");
});

Deno.test("retry: gives up after `attempts`, with the last failure", async () => {
  let calls = 0;
  await rejects(
    retry(() => Promise.reject(new Error(`failure ${++calls}`)), {
      attempts: 3,
      baseDelayMs: 1,
    }),
    /failure 3/,
  );
  strictEqual(calls, 3);
});

Deno.test("retry: never retries what isRetryable refuses", async () => {
  let calls = 0;
  await rejects(
    retry(() => {
      calls++;
      return Promise.reject(new RangeError("permanent"));
    }, { baseDelayMs: 1, isRetryable: (e) => !(e instanceof RangeError) }),
    RangeError,
  );
  strictEqual(calls, 1);
});

Deno.test("retry: reports each backoff, and the delays stay under the cap", async () => {
  const delays: number[] = [];
  await rejects(
    retry(() => Promise.reject(new Error("down")), {
      attempts: 5,
      baseDelayMs: 2,
      maxDelayMs: 5,
      onRetry: (_err, _attempt, delay) => delays.push(delay),
    }),
  );
  strictEqual(delays.length, 4);
  ok(delays.every((d) => d >= 0 && d < 5), `delays ${delays}`);
});

Deno.test("retry: an aborted signal stops the retries", async () => {
  const controller = new AbortController();
  let calls = 0;
  await rejects(
    retry(() => {
      if (++calls === 2) controller.abort();
      return Promise.reject(new Error("down"));
    }, { attempts: 10, baseDelayMs: 1, signal: controller.signal }),
  );
  strictEqual(calls, 2);
});

Deno.test("withTimeout: resolves in time, else a TimeoutError and an aborted signal", async () => {
  strictEqual(await withTimeout(() => Promise.resolve(7), 1000, "quick"), 7);
  let signal: AbortSignal | undefined;
  const started = Date.now();
  await rejects(
    withTimeout(
      (s) => {
        signal = s;
        return new Promise(() => {});
      },
      20,
      "stuck step",
    ),
    (err) =>
      err instanceof TimeoutError && err instanceof BlobStoreError &&
      err.ms === 20 && /stuck step/.test(err.message),
  );
  ok(Date.now() - started < 1000);
  ok(signal?.aborted && signal.reason instanceof TimeoutError);
});

Deno.test("withTimeout: the operation's own failure passes through", async () => {
  await rejects(
    withTimeout(() => Promise.reject(new RangeError("bad")), 1000, "x"),
    RangeError,
  );
});
