import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert";
import { ServiceError } from "./errors.ts";
import {
  type FetchFn,
  HttpClient,
  type HttpOptions,
  isConnectionFailure,
  type ServiceHook,
} from "./request.ts";

/** The errors of the test service: the layer's arguments, readable. */
class TestError extends ServiceError {
  constructor(
    readonly operation: string,
    status: number,
    readonly text: string,
    options?: ErrorOptions,
  ) {
    super(`test: ${operation} failed (${status}): ${text}`, status, options);
  }
}

const TEST: ServiceHook<TestError> = {
  name: "Test",
  error: (operation, status, text, options) =>
    new TestError(operation, status, text, options),
};

function client(fetchFn: FetchFn, options: HttpOptions = {}) {
  return new HttpClient(TEST, { fetch: fetchFn, retryDelayMs: 1, ...options });
}

/** A fetch answering each call with the next of `answers` (a status, or "refuse"). */
function scripted(answers: (number | "refuse")[]) {
  const calls: string[] = [];
  const fetchFn: FetchFn = (_input, init) => {
    calls.push(init?.method ?? "GET");
    const answer = answers.shift() ?? 200;
    if (answer === "refuse") {
      return Promise.reject(new TypeError("connection refused"));
    }
    const body = answer === 204 ? null : `answer ${answer}`;
    return Promise.resolve(new Response(body, { status: answer }));
  };
  return { fetchFn, calls };
}

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

const AT = "http://127.0.0.1:1/x";

// ---- retries ----

Deno.test("request: GET retries 5xx and refused connections, then succeeds", async () => {
  const { fetchFn, calls } = scripted([503, "refuse", 200]);
  const res = await client(fetchFn).request("GET x", AT, { method: "GET" });
  strictEqual(res.status, 200);
  strictEqual(await res.text(), "answer 200");
  strictEqual(calls.length, 3);
});

Deno.test("request: retries are bounded; the last answer is returned", async () => {
  const { fetchFn, calls } = scripted([503, 503, 503, 503]);
  const res = await client(fetchFn, { retries: 2 }).request("GET x", AT, {});
  strictEqual(res.status, 503);
  strictEqual(await res.text(), "answer 503");
  strictEqual(calls.length, 3);
});

Deno.test("request: the last connection failure is thrown, a ServiceError with status 0", async () => {
  const { fetchFn, calls } = scripted(["refuse", "refuse"]);
  const err = await client(fetchFn, { retries: 1 })
    .request("GET x", AT, {}).catch((e) => e);
  ok(err instanceof TestError, String(err));
  strictEqual(err.status, 0);
  ok(err.cause instanceof TypeError);
  ok(isConnectionFailure(err));
  strictEqual(calls.length, 2);
});

Deno.test("request: 501, 505 and 4xx are not retried", async () => {
  for (const status of [501, 505, 403, 404]) {
    const { fetchFn, calls } = scripted([status, 200]);
    const res = await client(fetchFn).request("GET x", AT, {});
    strictEqual(res.status, status);
    await res.body?.cancel();
    strictEqual(calls.length, 1);
  }
});

Deno.test("request: HEAD and DELETE retry; PUT and POST do not, unless idempotent", async () => {
  for (const method of ["HEAD", "DELETE"]) {
    const { fetchFn, calls } = scripted([502, 204]);
    strictEqual(
      (await client(fetchFn).request("x", AT, { method })).status,
      204,
    );
    strictEqual(calls.length, 2);
  }
  for (const method of ["PUT", "POST"]) {
    const { fetchFn, calls } = scripted([503, "refuse", 201]);
    const res = await client(fetchFn).request("x", AT, { method, body: "b" });
    strictEqual(res.status, 503);
    await res.body?.cancel();
    strictEqual(calls.length, 1);
    await rejects(
      client(fetchFn).request("x", AT, { method, body: "b" }),
      (err) => isConnectionFailure(err),
    );
  }
  const { fetchFn, calls } = scripted([503, 201]);
  const res = await client(fetchFn).request(
    "POST token",
    AT,
    { method: "POST", body: "{}" },
    { idempotent: true },
  );
  strictEqual(res.status, 201);
  deepStrictEqual(calls, ["POST", "POST"]);
});

Deno.test("request: retries: 0 never retries", async () => {
  const { fetchFn, calls } = scripted([503, 200]);
  const res = await client(fetchFn, { retries: 0 }).request("GET x", AT, {});
  strictEqual(res.status, 503);
  await res.body?.cancel();
  strictEqual(calls.length, 1);
});

// ---- deadlines ----

Deno.test("request: no answer within timeoutMs is the service's error, not retried", async () => {
  let calls = 0;
  const silent: FetchFn = (_input, init) => {
    calls++;
    return new Promise((_, reject) => {
      init?.signal?.addEventListener(
        "abort",
        () => reject(init.signal?.reason),
      );
    });
  };
  const err = await client(silent, { timeoutMs: 20 })
    .request("GET x", AT, {}).catch((e) => e);
  ok(err instanceof TestError, String(err));
  strictEqual(err.status, 0);
  strictEqual(err.text, "no answer within 20 ms (timeoutMs)");
  ok(!isConnectionFailure(err));
  strictEqual(calls, 1);
});

Deno.test("upload: the deadline starts only once the body is sent in full", async () => {
  const http = client(async (_input, init) => {
    // a slow producer: far longer than timeoutMs, which must not count
    await new Response(init?.body as ReadableStream).arrayBuffer();
    return await new Promise<Response>((resolve, reject) => {
      init?.signal?.addEventListener(
        "abort",
        () => reject(init.signal?.reason),
      );
      setTimeout(() => resolve(new Response(null, { status: 201 })), 5);
    });
  }, { timeoutMs: 30 });
  const deadline = http.deadline("PUT x");
  let chunks = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      if (++chunks < 4) return controller.enqueue(new Uint8Array(1));
      controller.close();
      deadline.start();
    },
  });
  const res = await http.upload(AT, { method: "PUT", body }, deadline);
  strictEqual(res.status, 201);
});

Deno.test("upload: aborting the deadline aborts the request with the body's failure", async () => {
  const http = client((_input, init) =>
    new Promise((_, reject) => {
      init?.signal?.addEventListener(
        "abort",
        () => reject(init.signal?.reason),
      );
    })
  );
  const deadline = http.deadline("PUT x");
  const failure = new Error("hash mismatch");
  const sending = http.upload(AT, { method: "PUT" }, deadline);
  deadline.abort(failure);
  strictEqual(await sending.catch((e) => e), failure);
});

// ---- errors ----

Deno.test("errorFrom: the status and the server's text, secrets redacted", async () => {
  const http = client(fetch, { secrets: () => ["hunter22", undefined, "ab"] });
  const err = await http.errorFrom(
    "GET x",
    new Response("bad password hunter22 (ab)", { status: 401 }),
  );
  ok(err instanceof TestError);
  strictEqual(err.status, 401);
  strictEqual(err.operation, "GET x");
  // secrets shorter than 4 characters would redact ordinary words: kept
  strictEqual(err.text, "bad password *** (ab)");
});

Deno.test("errorFrom: reads a bounded part of a huge body, never a cut secret", async () => {
  const secret = "s3cr3t-token-value";
  let pulled = 0;
  const chunk = new TextEncoder().encode("x".repeat(1000));
  const endless = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled++;
      // a secret cut in two by the 8 KiB bound: its first part in the
      // last chunk read, the rest in the next one
      if (pulled === 9) {
        return controller.enqueue(
          new TextEncoder().encode(`${"y".repeat(190)}${secret.slice(0, 6)}`),
        );
      }
      if (pulled === 10) {
        return controller.enqueue(new TextEncoder().encode(secret.slice(6)));
      }
      controller.enqueue(chunk);
    },
  }, { highWaterMark: 0 });
  const http = client(fetch, { secrets: () => [secret] });
  const err = await http.errorFrom(
    "GET x",
    new Response(endless, { status: 500 }),
  );
  ok(pulled <= 10, `read ${pulled} chunks of an endless body`);
  ok(!err.text.includes("s3cr"), "a part of the secret leaked");
  ok(err.text.startsWith("x".repeat(1000)) && err.text.length < 9000);
});

Deno.test("errorFrom: a body that stalls or fails gives an empty text", async () => {
  const stalled = new ReadableStream<Uint8Array>({
    pull: () => new Promise(() => {}),
  });
  const http = client(fetch, { timeoutMs: 20 });
  const err = await http.errorFrom(
    "GET x",
    new Response(stalled, { status: 503 }),
  );
  strictEqual(err.status, 503);
  strictEqual(err.text, "");
  const cut = cutBody(new Uint8Array(0), new TypeError("reset"));
  strictEqual(
    (await http.errorFrom("GET x", new Response(cut, { status: 502 }))).text,
    "",
  );
});

Deno.test("request: a network error is redacted and keeps its cause", async () => {
  const cause = new TypeError(
    "error sending request for url (http://u:hunter22@h/)",
  );
  const http = client(() => Promise.reject(cause), {
    retries: 0,
    secrets: () => ["hunter22"],
  });
  const err = await http.request("GET x", AT, {}).catch((e) => e);
  ok(err instanceof TestError);
  strictEqual(err.cause, cause);
  strictEqual(err.text, "error sending request for url (http://u:***@h/)");
});

Deno.test("readText: a body that stalls is the service's error (status 0)", async () => {
  const stalled = new ReadableStream<Uint8Array>({
    pull: () => new Promise(() => {}),
  });
  const err = await client(fetch, { timeoutMs: 20 })
    .readText(new Response(stalled), "list").catch((e) => e);
  ok(err instanceof TestError, String(err));
  strictEqual(err.status, 0);
  strictEqual(err.text, "the answer's body stalled for 20 ms (timeoutMs)");
});

// ---- bodies (moved from the Swift backend's tests) ----

Deno.test("watch: a body cut by the network is the service's error keeping the cause", async () => {
  const cut = new TypeError("error reading a body from connection");
  const res = new Response(cutBody(new Uint8Array(10), cut));
  const body = client(fetch, { timeoutMs: 10_000 }).watch(res, "GET x");
  const reader = body.getReader();
  strictEqual((await reader.read()).value?.length, 10);
  const err = await reader.read().then(() => undefined, (e) => e);
  ok(err instanceof TestError, `expected a TestError, got ${err}`);
  strictEqual(err.cause, cut);
  strictEqual(err.status, 0);
  strictEqual(
    err.text,
    "reading the body failed: error reading a body from connection",
  );
});

Deno.test("watch: a silent body is the service's error naming the timeout", async () => {
  const silent = new ReadableStream<Uint8Array>({
    pull: () => new Promise(() => {}),
  });
  const body = client(fetch, { timeoutMs: 20 }).watch(
    new Response(silent),
    "GET y",
  );
  const err = await new Response(body).arrayBuffer().then(
    () => undefined,
    (e) => e,
  );
  ok(err instanceof TestError, `expected a TestError, got ${err}`);
  strictEqual(err.text, "no bytes from Test for 20 ms (timeoutMs)");
});

Deno.test("watch: a slow consumer is never timed out, and the bytes pass whole", async () => {
  const body = client(fetch, { timeoutMs: 20 }).watch(
    new Response("abc"),
    "GET z",
  );
  const reader = body.getReader();
  await new Promise((resolve) => setTimeout(resolve, 50));
  strictEqual(new TextDecoder().decode((await reader.read()).value), "abc");
  ok((await reader.read()).done);
  const empty = client(fetch).watch(new Response(null), "HEAD z");
  strictEqual((await new Response(empty).arrayBuffer()).byteLength, 0);
});

Deno.test("isConnectionFailure: any ServiceError with status 0 caused by a TypeError", () => {
  const refused = { cause: new TypeError("refused") };
  ok(isConnectionFailure(new ServiceError("refused", 0, refused)));
  ok(isConnectionFailure(new TestError("GET", 0, "refused", refused)));
  ok(!isConnectionFailure(new ServiceError("HTTP 503", 503, refused)));
  ok(!isConnectionFailure(new ServiceError("timeout", 0)));
  ok(!isConnectionFailure(new TypeError("refused")));
});
