import { ok, rejects, strictEqual } from "node:assert";
import { sha384 } from "../digest.ts";
import { SwiftBackend } from "./backend.ts";
import { SwiftError } from "./error.ts";
import type { FetchFn } from "../request.ts";

/**
 * A fake Swift (v1 auth) whose answers a test scripts: `fail(method)`
 * returns what to do with the next request of that method, or nothing to
 * answer normally.
 */
function fakeSwift(
  fail: (method: string, url: string) => "refuse" | number | undefined,
) {
  const calls: string[] = [];
  const fetchFn: FetchFn = async (input, init) => {
    const method = init?.method ?? "GET";
    const url = String(input);
    calls.push(`${method} ${new URL(url).pathname}`);
    const action = fail(method, url);
    if (action === "refuse") throw new TypeError("connection refused");
    if (typeof action === "number") {
      if (init?.body instanceof ReadableStream) await init.body.cancel();
      return new Response("unavailable", { status: action });
    }
    if (url.endsWith("/auth/v1.0")) {
      return new Response(null, {
        headers: {
          "X-Auth-Token": "tk_fake",
          "X-Storage-Url": "http://127.0.0.1:1/v1/AUTH_test",
        },
      });
    }
    if (init?.body instanceof ReadableStream) {
      await new Response(init.body).arrayBuffer();
    }
    if (method === "GET" && url.includes("format=json")) {
      return new Response("[]"); // an empty container listing
    }
    if (method === "GET") {
      return new Response("hello", { headers: { "Content-Length": "5" } });
    }
    return new Response(null, { status: method === "PUT" ? 201 : 204 });
  };
  return { fetchFn, calls };
}

function backend(fetchFn: FetchFn, retries = 3) {
  return new SwiftBackend({
    authURL: "http://127.0.0.1:1/auth/v1.0",
    username: "tester",
    tenant: "test",
    secret: "testing",
    bucket: "b",
    fetch: fetchFn,
    retries,
    retryDelayMs: 1,
  });
}

Deno.test("SwiftBackend: GET retries 5xx and refused connections, then succeeds", async () => {
  let failures = 0;
  const swift = fakeSwift((method, url) => {
    if (method !== "GET" || url.endsWith("/auth/v1.0")) return undefined;
    failures++;
    return failures === 1 ? 503 : failures === 2 ? "refuse" : undefined;
  });
  const { body } = await backend(swift.fetchFn).get("x");
  strictEqual(await new Response(body).text(), "hello");
  strictEqual(
    swift.calls.filter((c) => c === "GET /v1/AUTH_test/b/x").length,
    3,
  );
});

Deno.test("SwiftBackend: retries are bounded; the last answer is the error", async () => {
  const swift = fakeSwift((method, url) =>
    method === "GET" && !url.endsWith("/auth/v1.0") ? 503 : undefined
  );
  await rejects(
    backend(swift.fetchFn, 2).get("x"),
    (err) => err instanceof SwiftError && err.status === 503,
  );
  strictEqual(swift.calls.filter((c) => c.startsWith("GET /v1/")).length, 3);
});

Deno.test("SwiftBackend: 501 and 4xx are not retried", async () => {
  for (const status of [501, 403]) {
    const swift = fakeSwift((method, url) =>
      method === "GET" && !url.endsWith("/auth/v1.0") ? status : undefined
    );
    await rejects(backend(swift.fetchFn).get("x"), SwiftError);
    strictEqual(swift.calls.filter((c) => c.startsWith("GET /v1/")).length, 1);
  }
});

Deno.test("SwiftBackend: DELETE and the token fetch retry too", async () => {
  let auths = 0;
  let deletes = 0;
  const swift = fakeSwift((method, url) => {
    if (url.endsWith("/auth/v1.0")) return ++auths === 1 ? "refuse" : undefined;
    if (method === "DELETE") return ++deletes === 1 ? 502 : 404;
    return undefined;
  });
  await backend(swift.fetchFn).remove("x");
  strictEqual(auths, 2);
  strictEqual(deletes, 2);
});

Deno.test("SwiftBackend: a PUT is never retried", async () => {
  let puts = 0;
  const swift = fakeSwift((method, url) => {
    if (method === "PUT" && url.endsWith("/b/x")) return ++puts && 503;
    return undefined;
  });
  const bytes = new TextEncoder().encode("hello");
  const err = await backend(swift.fetchFn)
    .put("x", new Blob([bytes]).stream(), 5, await sha384(bytes))
    .catch((e) => e);
  ok(err instanceof SwiftError && err.status === 503, String(err));
  strictEqual(puts, 1);
});

Deno.test("SwiftBackend: a PUT whose connection is refused is not retried either", async () => {
  let puts = 0;
  const swift = fakeSwift((method, url) => {
    if (method === "PUT" && url.endsWith("/b/x")) {
      puts++;
      return "refuse";
    }
    return undefined;
  });
  const bytes = new TextEncoder().encode("hello");
  await rejects(
    backend(swift.fetchFn).put(
      "x",
      new Blob([bytes]).stream(),
      5,
      await sha384(bytes),
    ),
    (err) => err instanceof SwiftError && err.status === 0,
  );
  strictEqual(puts, 1);
});

Deno.test("SwiftBackend: a GET body that stalls fails after timeoutMs", async () => {
  const stalled: FetchFn = (input) => {
    if (String(input).endsWith("/auth/v1.0")) {
      return Promise.resolve(
        new Response(null, {
          headers: {
            "X-Auth-Token": "tk_fake",
            "X-Storage-Url": "http://127.0.0.1:1/v1/AUTH_test",
          },
        }),
      );
    }
    let sent = false;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent) return new Promise(() => {}); // never another byte
        sent = true;
        controller.enqueue(new Uint8Array(3));
      },
    });
    return Promise.resolve(
      new Response(body, { headers: { "Content-Length": "10" } }),
    );
  };
  const swift = new SwiftBackend({
    authURL: "http://127.0.0.1:1/auth/v1.0",
    username: "tester",
    secret: "testing",
    bucket: "b",
    fetch: stalled,
    timeoutMs: 50,
  });
  const { body } = await swift.get("x");
  await rejects(
    new Response(body).arrayBuffer(),
    (err) => err instanceof SwiftError && /timeoutMs/.test(err.message),
  );
});
