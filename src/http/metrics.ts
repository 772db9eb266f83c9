/**
 * Metrics of the HTTP service in the Prometheus text format (0.0.4), kept
 * in memory with no dependency: requests by route, method and status,
 * bytes in and out, how long requests take to their response headers,
 * the uploads in flight, and what the last garbage collection found.
 *
 * @module
 */

import type { CollectResult } from "../collect.ts";

/** The `Content-Type` of {@linkcode Metrics.exposition}'s text. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/**
 * The upper bounds, in seconds, of the request duration histogram's
 * buckets (Prometheus's defaults; `+Inf` comes on top).
 */
export const DURATION_BUCKETS: readonly number[] = [
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];

/**
 * The methods counted under their own name; any other is `other`, so that
 * a client cannot make up series.
 */
const METHODS = new Set([
  "GET",
  "HEAD",
  "PUT",
  "POST",
  "DELETE",
  "OPTIONS",
  "PATCH",
]);

type Labels = Record<string, string>;

interface HistogramSeries {
  labels: Labels;
  /** How many observations fell in each bucket alone (not cumulated). */
  buckets: number[];
  sum: number;
  count: number;
}

interface GcGauges {
  timestamp: number;
  removed: number;
  kept?: { count: number; maxSize: number; meanSize: number };
}

/**
 * The metrics of one HTTP service, served by `createHandler(store, {
 * metrics })` at `GET /metrics`. Pass an instance you made to record what
 * happens outside the handler, such as a garbage collection
 * ({@linkcode Metrics.recordGc}).
 *
 * | metric | type | labels |
 * |---|---|---|
 * | `blobstore_http_requests_total` | counter | `route`, `method`, `status` |
 * | `blobstore_http_request_bytes_total` | counter | |
 * | `blobstore_http_response_bytes_total` | counter | |
 * | `blobstore_http_request_duration_seconds` | histogram | `route`, `method` |
 * | `blobstore_uploads_in_flight` | gauge | |
 * | `blobstore_gc_last_kept_blobs`, `_kept_max_bytes`, `_kept_mean_bytes` | gauge | |
 * | `blobstore_gc_last_removed_blobs`, `_timestamp_seconds` | gauge | |
 *
 * `route` is the route's pattern (`/blobs/{hash}`, without the handler's
 * prefix), never the path; `other` for a path no route serves. Methods
 * other than `GET`, `HEAD`, `PUT`, `POST`, `DELETE`, `OPTIONS` and `PATCH`
 * count as `other`.
 *
 * @example Counting requests and reading the exposition
 * ```ts
 * import assert from "node:assert";
 * import { MemoryBackend, MemoryCatalog, Store } from "@blobstore/blobstore";
 * import { createHandler, Metrics } from "@blobstore/blobstore/http";
 *
 * const store = new Store({ catalog: new MemoryCatalog(), backend: new MemoryBackend() });
 * const metrics = new Metrics();
 * const handler = createHandler(store, { authorize: false, metrics });
 * await handler(new Request(`http://127.0.0.1/blobs/${"0".repeat(96)}`));
 * const text = metrics.exposition();
 * assert(text.includes(
 *   'blobstore_http_requests_total{route="/blobs/{hash}",method="GET",status="404"} 1',
 * ));
 * const res = await handler(new Request("http://127.0.0.1/metrics"));
 * assert(res.headers.get("content-type")?.startsWith("text/plain; version=0.0.4"));
 * ```
 */
export class Metrics {
  #requests = new Map<string, { labels: Labels; value: number }>();
  #durations = new Map<string, HistogramSeries>();
  #requestBytes = 0;
  #responseBytes = 0;
  #uploadsInFlight = 0;
  #gc?: GcGauges;

  /**
   * Counts one answered request: `route` (a pattern), `method`, `status`,
   * `seconds` until its response headers, and the bytes of its request
   * and response bodies (default 0).
   */
  recordRequest(request: {
    route: string;
    method: string;
    status: number;
    seconds: number;
    requestBytes?: number;
    responseBytes?: number;
  }): void {
    const method = METHODS.has(request.method) ? request.method : "other";
    const status = String(request.status);
    const counted = { route: request.route, method, status };
    const key = labelText(counted);
    const series = this.#requests.get(key);
    if (series) series.value++;
    else this.#requests.set(key, { labels: counted, value: 1 });

    const timed = { route: request.route, method };
    const timedKey = labelText(timed);
    let histogram = this.#durations.get(timedKey);
    if (!histogram) {
      histogram = {
        labels: timed,
        buckets: new Array(DURATION_BUCKETS.length + 1).fill(0),
        sum: 0,
        count: 0,
      };
      this.#durations.set(timedKey, histogram);
    }
    const bucket = DURATION_BUCKETS.findIndex((le) => request.seconds <= le);
    histogram.buckets[bucket === -1 ? DURATION_BUCKETS.length : bucket]++;
    histogram.sum += request.seconds;
    histogram.count++;

    this.#requestBytes += nonNegative(request.requestBytes);
    this.#responseBytes += nonNegative(request.responseBytes);
  }

  /**
   * Counts one upload in flight until `release` is called: returns the
   * function that calls `release` and counts it out (only the first call
   * does anything).
   */
  trackUpload(release: () => void = () => {}): () => void {
    this.#uploadsInFlight++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#uploadsInFlight--;
      release();
    };
  }

  /** How many uploads are in flight now. */
  get uploadsInFlight(): number {
    return this.#uploadsInFlight;
  }

  /**
   * Records what a garbage collection (`collect`) did, at `at` (default
   * now): how many blobs it removed, and, when it examined blobs
   * (`result.kept`), how many it kept, the largest and their mean size.
   * A collection that examined none (one that only removed expired
   * uploads) leaves the kept gauges as the last one that did set them. A
   * dry run changed nothing and is not recorded.
   *
   * @example
   * ```ts
   * import assert from "node:assert";
   * import { Metrics } from "@blobstore/blobstore/http";
   *
   * const metrics = new Metrics();
   * metrics.recordGc(
   *   { dryRun: false, released: 0, removed: 2, removedBytes: 30, kept: { count: 1, maxSize: 10, meanSize: 10 } },
   *   new Date(1_700_000_000_000),
   * );
   * const text = metrics.exposition();
   * assert(text.includes("blobstore_gc_last_kept_blobs 1\n"));
   * assert(text.includes("blobstore_gc_last_removed_blobs 2\n"));
   * assert(text.includes("blobstore_gc_last_timestamp_seconds 1700000000\n"));
   * ```
   */
  recordGc(result: CollectResult, at: Date = new Date()): void {
    if (result.dryRun) return;
    this.#gc = {
      timestamp: at.getTime() / 1000,
      removed: result.removed,
      kept: result.kept ? { ...result.kept } : this.#gc?.kept,
    };
  }

  /**
   * Every metric in the Prometheus text format 0.0.4 (the body of
   * `GET /metrics`, of type {@linkcode METRICS_CONTENT_TYPE}). The GC
   * gauges appear once a collection was recorded.
   */
  exposition(): string {
    const out: string[] = [];
    const family = (name: string, type: string, help: string) => {
      out.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
    };
    const sample = (name: string, labels: Labels, value: number) => {
      out.push(`${name}${labelText(labels)} ${formatValue(value)}`);
    };

    family(
      "blobstore_http_requests_total",
      "counter",
      "HTTP requests answered, by route pattern, method and status.",
    );
    for (const { labels, value } of sorted(this.#requests)) {
      sample("blobstore_http_requests_total", labels, value);
    }
    family(
      "blobstore_http_request_bytes_total",
      "counter",
      "Declared Content-Length of the request bodies of requests answered 2xx.",
    );
    sample("blobstore_http_request_bytes_total", {}, this.#requestBytes);
    family(
      "blobstore_http_response_bytes_total",
      "counter",
      "Declared Content-Length of the response bodies sent (not to HEAD).",
    );
    sample("blobstore_http_response_bytes_total", {}, this.#responseBytes);

    const duration = "blobstore_http_request_duration_seconds";
    family(
      duration,
      "histogram",
      "Time from a request to its response headers, by route pattern and method.",
    );
    for (const series of sorted(this.#durations)) {
      let cumulated = 0;
      DURATION_BUCKETS.forEach((le, i) => {
        cumulated += series.buckets[i];
        sample(`${duration}_bucket`, {
          ...series.labels,
          le: formatValue(le),
        }, cumulated);
      });
      sample(
        `${duration}_bucket`,
        { ...series.labels, le: "+Inf" },
        series.count,
      );
      sample(`${duration}_sum`, series.labels, series.sum);
      sample(`${duration}_count`, series.labels, series.count);
    }

    family(
      "blobstore_uploads_in_flight",
      "gauge",
      "Requests carrying a body (blob and part uploads, upload posts) in progress.",
    );
    sample("blobstore_uploads_in_flight", {}, this.#uploadsInFlight);

    const gc = this.#gc;
    if (gc?.kept) {
      family(
        "blobstore_gc_last_kept_blobs",
        "gauge",
        "Blobs the last garbage collection that examined blobs kept.",
      );
      sample("blobstore_gc_last_kept_blobs", {}, gc.kept.count);
      family(
        "blobstore_gc_last_kept_max_bytes",
        "gauge",
        "Size of the largest blob the last garbage collection kept.",
      );
      sample("blobstore_gc_last_kept_max_bytes", {}, gc.kept.maxSize);
      family(
        "blobstore_gc_last_kept_mean_bytes",
        "gauge",
        "Mean size of the blobs the last garbage collection kept.",
      );
      sample("blobstore_gc_last_kept_mean_bytes", {}, gc.kept.meanSize);
    }
    if (gc) {
      family(
        "blobstore_gc_last_removed_blobs",
        "gauge",
        "Blobs the last garbage collection removed.",
      );
      sample("blobstore_gc_last_removed_blobs", {}, gc.removed);
      family(
        "blobstore_gc_last_timestamp_seconds",
        "gauge",
        "When the last garbage collection was recorded, in Unix seconds.",
      );
      sample("blobstore_gc_last_timestamp_seconds", {}, gc.timestamp);
    }
    return out.join("\n") + "\n";
  }
}

/**
 * The answer to `GET /metrics`: `metrics`' exposition, never cached.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { Metrics, metricsResponse } from "./metrics.ts";
 *
 * const res = metricsResponse(new Metrics());
 * assert((await res.text()).includes("# TYPE blobstore_uploads_in_flight gauge"));
 * ```
 */
export function metricsResponse(metrics: Metrics): Response {
  const bytes = new TextEncoder().encode(metrics.exposition());
  return new Response(bytes, {
    headers: {
      "content-type": METRICS_CONTENT_TYPE,
      "content-length": String(bytes.byteLength),
      "cache-control": "no-store",
    },
  });
}

/**
 * `handler` counted into `metrics`: every answer, errors included, by the
 * route `routeOf` names, with its status, the time until `handler`
 * returned it, the declared `Content-Length` of its request body when the
 * answer is a 2xx, and of its response body unless it answers a `HEAD`.
 * Bodies are not wrapped: a body cut short still counts whole.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { countRequests, Metrics } from "./metrics.ts";
 *
 * const metrics = new Metrics();
 * const handler = countRequests(metrics, () => "/", () => Promise.resolve(new Response("hi")));
 * await handler(new Request("http://x/"));
 * assert(metrics.exposition().includes('{route="/",method="GET",status="200"} 1'));
 * ```
 */
export function countRequests<A extends unknown[]>(
  metrics: Metrics,
  routeOf: (req: Request) => string,
  handler: (req: Request, ...rest: A) => Promise<Response>,
): (req: Request, ...rest: A) => Promise<Response> {
  return async (req, ...rest) => {
    const start = performance.now();
    const record = (status: number, res?: Response) => {
      const ok = status >= 200 && status < 300;
      metrics.recordRequest({
        route: routeOf(req),
        method: req.method,
        status,
        seconds: (performance.now() - start) / 1000,
        requestBytes: ok && req.body !== null ? contentLength(req.headers) : 0,
        responseBytes: res && req.method !== "HEAD" && res.body !== null
          ? contentLength(res.headers)
          : 0,
      });
    };
    let res: Response;
    try {
      res = await handler(req, ...rest);
    } catch (err) {
      // The server answers 500 to a handler that throws.
      record(500);
      throw err;
    }
    record(res.status, res);
    return res;
  };
}

/** The `Content-Length` of `headers` as a number, 0 when absent or malformed. */
function contentLength(headers: Headers): number {
  const text = headers.get("content-length");
  return text !== null && /^\d+$/.test(text) ? Number(text) : 0;
}

function nonNegative(value: number | undefined): number {
  return value !== undefined && value > 0 ? value : 0;
}

/** The values of `map` by key order, so that the exposition is stable. */
function sorted<T>(map: Map<string, T>): T[] {
  return [...map.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, value]) => value);
}

/** `{a="1",b="2"}`, values escaped; empty for no labels. */
function labelText(labels: Labels): string {
  const pairs = Object.entries(labels).map(([name, value]) =>
    `${name}="${escapeLabelValue(value)}"`
  );
  return pairs.length === 0 ? "" : `{${pairs.join(",")}}`;
}

/**
 * A label value escaped for the text format: backslash, double quote and
 * line feed.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { escapeLabelValue } from "./metrics.ts";
 *
 * assert(escapeLabelValue('a\\b"c\nd') === 'a\\\\b\\"c\\nd');
 * ```
 */
export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`);
}

/** A `# HELP` text escaped: backslash and line feed. */
function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => c === "\n" ? "\\n" : "\\\\");
}

/** A sample value as the text format writes it (`+Inf`, `-Inf`, `NaN`). */
function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}
