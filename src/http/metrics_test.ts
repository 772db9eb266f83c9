import assert from "node:assert";
import {
  countRequests,
  DURATION_BUCKETS,
  escapeLabelValue,
  Metrics,
  METRICS_CONTENT_TYPE,
  metricsResponse,
} from "./metrics.ts";

const DURATION = "blobstore_http_request_duration_seconds";

/** The sample lines of `text` starting with `prefix`, without their names. */
function samples(text: string, prefix: string): string[] {
  return text.split("\n").filter((line) => line.startsWith(prefix)).map((
    line,
  ) => line.slice(prefix.length));
}

Deno.test("every family has HELP then TYPE before its samples, and the text ends with a line feed", () => {
  const metrics = new Metrics();
  metrics.recordRequest({
    route: "/",
    method: "GET",
    status: 200,
    seconds: 0.001,
  });
  metrics.recordGc({
    dryRun: false,
    released: 0,
    removed: 0,
    removedBytes: 0,
    kept: { count: 0, maxSize: 0, meanSize: 0 },
  });
  const text = metrics.exposition();
  assert(text.endsWith("\n") && !text.endsWith("\n\n"));
  const typed = new Map<string, string>();
  let help: string | undefined;
  for (const line of text.trimEnd().split("\n")) {
    const meta = line.match(/^# (HELP|TYPE) (\S+) (.*)$/);
    if (meta?.[1] === "HELP") {
      assert(!typed.has(meta[2]), `${meta[2]} described twice`);
      help = meta[2];
    } else if (meta) {
      assert.strictEqual(meta[2], help, `TYPE of ${meta[2]} without HELP`);
      assert(["counter", "gauge", "histogram"].includes(meta[3]));
      typed.set(meta[2], meta[3]);
    } else {
      const name = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/)?.[1];
      assert(name, `malformed sample ${line}`);
      const family = name.replace(/_(bucket|sum|count)$/, "");
      const owner = typed.has(name) ? name : family;
      assert(typed.has(owner), `${name} sampled before its TYPE`);
      assert.match(line, / (\d+(\.\d+)?(e[+-]\d+)?|\+Inf|NaN)$/);
    }
  }
  assert.deepStrictEqual([...typed], [
    ["blobstore_http_requests_total", "counter"],
    ["blobstore_http_request_bytes_total", "counter"],
    ["blobstore_http_response_bytes_total", "counter"],
    [DURATION, "histogram"],
    ["blobstore_uploads_in_flight", "gauge"],
    ["blobstore_gc_last_kept_blobs", "gauge"],
    ["blobstore_gc_last_kept_max_bytes", "gauge"],
    ["blobstore_gc_last_kept_mean_bytes", "gauge"],
    ["blobstore_gc_last_removed_blobs", "gauge"],
    ["blobstore_gc_last_timestamp_seconds", "gauge"],
  ]);
});

Deno.test("requests are counted by route, method and status; unknown methods are other", () => {
  const metrics = new Metrics();
  for (const [method, status] of [["GET", 200], ["GET", 200], ["GET", 404]]) {
    metrics.recordRequest({
      route: "/blobs/{hash}",
      method: method as string,
      status: status as number,
      seconds: 0,
    });
  }
  metrics.recordRequest({
    route: "/blobs/{hash}",
    method: "BREW",
    status: 405,
    seconds: 0,
  });
  assert.deepStrictEqual(
    samples(metrics.exposition(), "blobstore_http_requests_total"),
    [
      '{route="/blobs/{hash}",method="GET",status="200"} 2',
      '{route="/blobs/{hash}",method="GET",status="404"} 1',
      '{route="/blobs/{hash}",method="other",status="405"} 1',
    ],
  );
});

Deno.test("label values escape backslash, double quote and line feed", () => {
  assert.strictEqual(escapeLabelValue("plain /x/{y}"), "plain /x/{y}");
  assert.strictEqual(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
  const metrics = new Metrics();
  metrics.recordRequest({
    route: 'we"ird\\\n',
    method: "GET",
    status: 200,
    seconds: 0,
  });
  const text = metrics.exposition();
  assert(
    text.includes(
      'blobstore_http_requests_total{route="we\\"ird\\\\\\n",method="GET",status="200"} 1\n',
    ),
  );
  // No sample is split over two lines.
  assert(text.split("\n").every((line) => line === "" || /^[#a-z]/.test(line)));
});

Deno.test("the duration histogram's buckets are cumulative, +Inf is the count, and the sum adds up", () => {
  const metrics = new Metrics();
  const seconds = [0.001, 0.005, 0.007, 0.3, 0.3, 9, 11, 60];
  for (const s of seconds) {
    metrics.recordRequest({
      route: "/",
      method: "PUT",
      status: 201,
      seconds: s,
    });
  }
  const lines = samples(metrics.exposition(), DURATION);
  const buckets = lines.filter((l) => l.startsWith("_bucket")).map((l) => {
    const [, le, value] = l.match(/le="([^"]+)"\} (\d+)$/)!;
    return [le, Number(value)] as const;
  });
  assert.deepStrictEqual(
    buckets.map(([le]) => le),
    [...DURATION_BUCKETS.map(String), "+Inf"],
  );
  // Each bucket counts the observations at or below its bound.
  for (const [le, value] of buckets) {
    const bound = le === "+Inf" ? Infinity : Number(le);
    assert.strictEqual(value, seconds.filter((s) => s <= bound).length, le);
  }
  assert.deepStrictEqual(buckets.slice(0, 3), [
    ["0.005", 2],
    ["0.01", 3],
    ["0.025", 3],
  ]);
  assert(lines.includes(`_count{route="/",method="PUT"} ${seconds.length}`));
  const sum = Number(lines.find((l) => l.startsWith("_sum"))!.split(" ")[1]);
  assert(Math.abs(sum - seconds.reduce((a, b) => a + b)) < 1e-9);
});

Deno.test("uploads in flight go up and down once per upload", () => {
  const metrics = new Metrics();
  let released = 0;
  const first = metrics.trackUpload(() => released++);
  const second = metrics.trackUpload();
  assert.strictEqual(metrics.uploadsInFlight, 2);
  first();
  first();
  assert.strictEqual(metrics.uploadsInFlight, 1);
  assert.strictEqual(released, 1);
  assert(metrics.exposition().includes("\nblobstore_uploads_in_flight 1\n"));
  second();
  assert(metrics.exposition().includes("\nblobstore_uploads_in_flight 0\n"));
});

Deno.test("recordGc: the gauges of the last run; a run that examined no blob keeps the kept gauges; dry runs are ignored", () => {
  const metrics = new Metrics();
  assert(!metrics.exposition().includes("blobstore_gc_"));
  metrics.recordGc(
    {
      dryRun: false,
      released: 0,
      removed: 3,
      removedBytes: 10,
      kept: { count: 4, maxSize: 100, meanSize: 40 },
    },
    new Date(1_000_500),
  );
  metrics.recordGc(
    { dryRun: true, released: 0, removed: 99, removedBytes: 1 },
    new Date(2_000_000),
  );
  let gauges = samples(metrics.exposition(), "blobstore_gc_last_");
  assert.deepStrictEqual(gauges, [
    "kept_blobs 4",
    "kept_max_bytes 100",
    "kept_mean_bytes 40",
    "removed_blobs 3",
    "timestamp_seconds 1000.5",
  ]);
  metrics.recordGc(
    { dryRun: false, released: 0, removed: 0, removedBytes: 0 },
    new Date(3_000_000),
  );
  gauges = samples(metrics.exposition(), "blobstore_gc_last_");
  assert.deepStrictEqual(gauges, [
    "kept_blobs 4",
    "kept_max_bytes 100",
    "kept_mean_bytes 40",
    "removed_blobs 0",
    "timestamp_seconds 3000",
  ]);
});

Deno.test("countRequests: declared bytes in for 2xx, out unless HEAD, and a throwing handler counts as 500", async () => {
  const metrics = new Metrics();
  const handler = countRequests(
    metrics,
    (req) => new URL(req.url).pathname,
    (req) => {
      if (req.headers.has("x-throw")) throw new Error("boom");
      const status = Number(req.headers.get("x-status") ?? 200);
      return Promise.resolve(
        new Response(status === 204 ? null : "12345", {
          status,
          headers: status === 204 ? {} : { "content-length": "5" },
        }),
      );
    },
  );
  const put = (status: number) =>
    handler(
      new Request("http://x/a", {
        method: "PUT",
        body: "abc",
        headers: { "content-length": "3", "x-status": String(status) },
      }),
    );
  await put(201); // in 3, out 5
  await put(413); // in 0 (refused), out 5
  await handler(new Request("http://x/a", { method: "HEAD" })); // out 0
  await handler(new Request("http://x/a", { headers: { "x-status": "204" } }));
  await assert.rejects(
    handler(new Request("http://x/b", { headers: { "x-throw": "1" } })),
    /boom/,
  );
  const text = metrics.exposition();
  assert(text.includes("\nblobstore_http_request_bytes_total 3\n"));
  assert(text.includes("\nblobstore_http_response_bytes_total 10\n"));
  assert(text.includes('{route="/b",method="GET",status="500"} 1\n'));
  assert(text.includes(`${DURATION}_count{route="/a",method="PUT"} 2\n`));
});

Deno.test("metricsResponse is the exposition as text/plain version 0.0.4, uncached", async () => {
  const metrics = new Metrics();
  const res = metricsResponse(metrics);
  assert.strictEqual(res.headers.get("content-type"), METRICS_CONTENT_TYPE);
  assert.strictEqual(
    METRICS_CONTENT_TYPE,
    "text/plain; version=0.0.4; charset=utf-8",
  );
  assert.strictEqual(res.headers.get("cache-control"), "no-store");
  const body = await res.text();
  assert.strictEqual(body, metrics.exposition());
  assert.strictEqual(
    res.headers.get("content-length"),
    String(new TextEncoder().encode(body).byteLength),
  );
});
