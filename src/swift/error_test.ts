import assert from "node:assert";
import { ServiceError } from "../errors.ts";
import { HttpClient, isConnectionFailure } from "../request.ts";
import { SWIFT, SwiftError } from "./error.ts";

/** A body that sends `first`, then fails as a connection cut mid-answer does. */
function cutBody(
  first: Uint8Array,
  failure: unknown,
): ReadableStream<Uint8Array> {
  let sent = false;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (!sent) {
        sent = true;
        controller.enqueue(first);
        return;
      }
      controller.error(failure);
    },
  });
}

Deno.test("SwiftError: a ServiceError with Swift's message format", () => {
  const err = new SwiftError('GET object "x"', 503, "  Service Unavailable\n");
  assert(err instanceof ServiceError);
  assert.strictEqual(err.name, "SwiftError");
  assert.strictEqual(err.status, 503);
  assert.strictEqual(
    err.message,
    'swift: GET object "x" failed (expected success, got HTTP 503): Service Unavailable',
  );
  assert.strictEqual(
    new SwiftError('HEAD container "c"', 0, "").message,
    'swift: HEAD container "c" failed',
  );
  assert.strictEqual(
    new SwiftError("GET", 500, "e".repeat(600)).message.length,
    "swift: GET failed (expected success, got HTTP 500): ".length + 500,
  );
});

Deno.test("SWIFT: a body cut by the network is a SwiftError keeping the cause", async () => {
  const cut = new TypeError("error reading a body from connection");
  const http = new HttpClient(SWIFT, { timeoutMs: 10_000 });
  const body = http.watch(
    new Response(cutBody(new Uint8Array(10), cut)),
    "GET x",
  );
  const reader = body.getReader();
  assert.strictEqual((await reader.read()).value?.length, 10);
  const err = await reader.read().then(() => undefined, (e) => e);
  assert(err instanceof SwiftError, `expected a SwiftError, got ${err}`);
  assert.strictEqual(err.cause, cut);
  assert.match(
    err.message,
    /GET x failed: reading the body failed: error reading a body/,
  );
});

Deno.test("SWIFT: a silent body is a SwiftError naming the timeout", async () => {
  const silent = new ReadableStream<Uint8Array>({
    pull: () => new Promise(() => {}),
  });
  const http = new HttpClient(SWIFT, { timeoutMs: 20 });
  const err = await new Response(http.watch(new Response(silent), "GET y"))
    .arrayBuffer()
    .then(() => undefined, (e) => e);
  assert(err instanceof SwiftError, `expected a SwiftError, got ${err}`);
  assert.match(err.message, /no bytes from Swift for 20 ms/);
});

Deno.test("SWIFT: a refused connection is a SwiftError the layer retries", async () => {
  let calls = 0;
  const http = new HttpClient(SWIFT, {
    fetch: () => {
      calls++;
      return Promise.reject(new TypeError("connection refused"));
    },
    retries: 1,
    retryDelayMs: 1,
  });
  const err = await http.request("GET z", "http://127.0.0.1:1/z", {})
    .catch((e) => e);
  assert(err instanceof SwiftError && isConnectionFailure(err), String(err));
  assert.strictEqual(err.message, "swift: GET z failed: connection refused");
  assert.strictEqual(calls, 2);
});
