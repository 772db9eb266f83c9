import assert from "node:assert";
import { SwiftError } from "./error.ts";
import { idleTimeout } from "./http.ts";

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

Deno.test("idleTimeout: a body cut by the network is a SwiftError keeping the cause", async () => {
  const cut = new TypeError("error reading a body from connection");
  const body = idleTimeout(cutBody(new Uint8Array(10), cut), 10_000, "GET x");
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

Deno.test("idleTimeout: a silent body is a SwiftError naming the timeout", async () => {
  const silent = new ReadableStream<Uint8Array>({
    pull: () => new Promise(() => {}),
  });
  const err = await new Response(idleTimeout(silent, 20, "GET y")).arrayBuffer()
    .then(() => undefined, (e) => e);
  assert(err instanceof SwiftError, `expected a SwiftError, got ${err}`);
  assert.match(err.message, /no bytes from Swift for 20 ms/);
});
