/**
 * `serve`: the HTTP service on the data directory.
 *
 * @module
 */

import { collect } from "../../collect.ts";
import {
  corsFromEnv,
  type CorsOptions,
  parseOrigins,
} from "../../http/cors.ts";
import { createHandler } from "../../http/handler.ts";
import { Metrics } from "../../http/metrics.ts";
import {
  DEFAULT_TUS_PREFIX,
  type TusOptions,
  tusPathSegments,
} from "../../tus/handler.ts";
import { openSeams } from "../../server/config.ts";
import { Drain, DRAIN_TIMEOUT_MS } from "../../server/drain.ts";
import { UsageError } from "../args.ts";
import type { SelfOpeningCommand } from "../command.ts";
import { STOP_SIGNALS, stopSignalHandler } from "../stop_signals.ts";

/** How often the server reaps expired uploads. */
const REAP_INTERVAL_MS = 60 * 60 * 1000;

/**
 * The `serve` command: listens on 127.0.0.1:8000 by default (`--port` or
 * `PORT`, `--hostname`), with the seams of `--data` / `BLOBSTORE_DATA` or
 * the environment's MongoDB and Swift settings; prints where it listens and
 * where the data lives; removes expired uploads every hour (through the
 * core's `collect`, collecting no blob: what to keep is the `gc` command's
 * to say, and the sweeps, which walk the whole backend, are left to it
 * too); stops cleanly on SIGINT or SIGTERM: new requests get a 503, open
 * ones (uploads included) run to their response for up to 30 s, then it
 * shuts down (a second signal more than a second after the first exits at
 * once). Browsers may call it from the
 * origins of `--cors-origin` (comma-separated, or `*`), else of
 * `BLOBSTORE_CORS_ORIGINS`; from none by default. With `--redirect` (or
 * `BLOBSTORE_REDIRECT=1`), GETs of single blobs are 307s to URLs the
 * storage serves directly, valid 5 minutes (S3; Swift with
 * `SWIFT_TEMP_URL_KEY`); other backends stream as without it. With
 * `--metrics` (or `BLOBSTORE_METRICS=1`), `GET /metrics` answers in the
 * Prometheus text format, the hourly reaper's results included. Uploads
 * may have up to `--max-parts` parts (a global option; or
 * `BLOBSTORE_MAX_PARTS`; 400 by default, 10,000 at most), said at start
 * when not the default. Resumable uploads speak tus 1.0.0 under `/tus/`,
 * or the path of `--tus-prefix` (else `BLOBSTORE_TUS_PREFIX`); `off`
 * turns them off; the endpoint is said at start.
 */
export const serveCommand: SelfOpeningCommand = {
  name: "serve",
  usage:
    "serve [--port N] [--hostname H] [--memory] [--cors-origin O,…] [--redirect] [--metrics] [--tus-prefix P|off]",
  summary: "serve the blob store over HTTP (default http://127.0.0.1:8000/)",
  options: {
    port: { type: "string", short: "p" },
    hostname: { type: "string" },
    memory: { type: "boolean" },
    "cors-origin": { type: "string" },
    redirect: { type: "boolean" },
    metrics: { type: "boolean" },
    "tus-prefix": { type: "string" },
  },
  opensSeams: true,
  async run(context, { positionals, options }) {
    if (positionals.length > 0) {
      throw new UsageError(
        `serve takes no arguments (got ${positionals.join(" ")})`,
      );
    }
    const portText = (options.port as string | undefined) ??
      Deno.env.get("PORT") ?? "8000";
    const port = Number(portText);
    if (!/^\d+$/.test(portText) || port > 65535) {
      throw new UsageError(
        `invalid port ${JSON.stringify(portText)} (expected 0 to 65535)`,
      );
    }
    const hostname = (options.hostname as string | undefined) ?? "127.0.0.1";
    const memory = options.memory === true;
    const cors = corsOption(options["cors-origin"]);
    const redirect = options.redirect === true ||
      booleanFromEnv("BLOBSTORE_REDIRECT");
    const metrics =
      (options.metrics === true || booleanFromEnv("BLOBSTORE_METRICS"))
        ? new Metrics()
        : undefined;
    const tus = tusOption(options["tus-prefix"]);
    const seams = await openSeams({
      data: context.data,
      memory,
      maxParts: context.maxParts,
    });
    const drain = new Drain();
    const handler = drain.wrap(createHandler(seams.store, {
      cors: cors ?? false,
      redirect,
      metrics,
      tus,
    }));
    const server = Deno.serve({
      hostname,
      port,
      onListen: (addr) => {
        const host = addr.hostname.includes(":")
          ? `[${addr.hostname}]`
          : addr.hostname;
        context.warn(`blobstore: listening on http://${host}:${addr.port}/`);
        const { catalog, backend, dataDir } = seams.description;
        context.warn(
          memory
            ? "blobstore: data in memory (lost when the server stops)"
            : `blobstore: data ${
              dataDir ? `in ${dataDir} ` : ""
            }(catalog: ${catalog}; blobs: ${backend})`,
        );
        if (Deno.env.get("BLOBSTORE_TOKEN")) {
          context.warn(
            "blobstore: writes need Authorization: Bearer $BLOBSTORE_TOKEN",
          );
        }
        if (redirect) {
          context.warn(
            seams.store.backend.signedUrl
              ? "blobstore: GETs of single blobs redirect to the storage (signed URLs valid 5 minutes)"
              : "blobstore: --redirect: this backend cannot sign URLs; blobs are streamed",
          );
        }
        if (metrics) {
          context.warn(
            `blobstore: metrics at http://${host}:${addr.port}/metrics`,
          );
        }
        if (tus) {
          context.warn(
            `blobstore: tus resumable uploads at http://${host}:${addr.port}/${
              tusPathSegments(tus.prefix!).join("/")
            }/`,
          );
        }
        if (seams.store.maxParts !== 400) {
          context.warn(
            `blobstore: uploads may have up to ${seams.store.maxParts} parts`,
          );
        }
        if (cors) {
          context.warn(
            `blobstore: browsers may call it from ${
              cors.origins === "*" ? "every origin" : cors.origins.join(", ")
            } (CORS)`,
          );
        }
      },
    }, handler);
    const reaper = setInterval(() => {
      collect(seams.store, { sweep: false }).then(
        (result) => metrics?.recordGc(result),
        (err) =>
          context.warn(`blobstore: removing expired uploads failed: ${err}`),
      );
    }, REAP_INTERVAL_MS);
    Deno.unrefTimer(reaper);
    const onSignal = stopSignalHandler({
      stop: async () => {
        const open = await drain.drain();
        if (open > 0) {
          context.warn(
            `blobstore: stopping with ${open} requests still open after ${
              DRAIN_TIMEOUT_MS / 1000
            } s`,
          );
        }
        await server.shutdown();
      },
      exit: (code) => {
        context.warn("blobstore: stopped without waiting for open requests");
        Deno.exit(code);
      },
    });
    const listeners = STOP_SIGNALS.map((signal) => {
      const listener = () => onSignal(signal);
      Deno.addSignalListener(signal, listener);
      return [signal, listener] as const;
    });
    await server.finished;
    clearInterval(reaper);
    await seams.close();
    context.warn("blobstore: stopped");
    // Only now: a repeated signal must find a listener until everything
    // is closed (see stopSignalHandler).
    for (const [signal, listener] of listeners) {
      Deno.removeSignalListener(signal, listener);
    }
    return 0;
  },
};

/**
 * Whether the variable `name` (`BLOBSTORE_REDIRECT`, `BLOBSTORE_METRICS`)
 * turns its feature on: `1` or `true` (`0`, `false` or empty: no);
 * anything else fails the start.
 */
function booleanFromEnv(name: string): boolean {
  const value = (Deno.env.get(name) ?? "").trim().toLowerCase();
  if (value === "1" || value === "true") return true;
  if (value === "" || value === "0" || value === "false") return false;
  throw new Error(
    `invalid ${name} ${JSON.stringify(value)} (expected 1, true, 0 or false)`,
  );
}

/**
 * The CORS of `--cors-origin` (comma-separated origins, or `*`), else of
 * `BLOBSTORE_CORS_ORIGINS`, else none. A bad flag is a usage error; a bad
 * variable fails the start with its message.
 */
function corsOption(
  flag: string | boolean | undefined,
): CorsOptions | undefined {
  if (typeof flag !== "string") return corsFromEnv();
  let origins: string[] | "*";
  try {
    origins = parseOrigins(flag);
  } catch (err) {
    throw new UsageError(`--cors-origin: ${(err as Error).message}`);
  }
  if (origins.length === 0) {
    throw new UsageError(
      "--cors-origin needs an origin, like https://app.example (or *)",
    );
  }
  return { origins };
}

/** The variable read when `--tus-prefix` is not given. */
const TUS_PREFIX_VARIABLE = "BLOBSTORE_TUS_PREFIX";

/**
 * The tus endpoint of `--tus-prefix` (a path like `/files/`, or `off`),
 * else of `BLOBSTORE_TUS_PREFIX` (the same), else `/tus/`: `false` when
 * off. A bad flag is a usage error; a bad variable fails the start with
 * its message.
 */
function tusOption(flag: string | boolean | undefined): TusOptions | false {
  const fromFlag = typeof flag === "string";
  const text = fromFlag ? flag : Deno.env.get(TUS_PREFIX_VARIABLE)?.trim();
  if (!text) {
    if (fromFlag) {
      throw new UsageError(
        "--tus-prefix needs a path like /files/ (or off)",
      );
    }
    return { prefix: DEFAULT_TUS_PREFIX };
  }
  if (text.toLowerCase() === "off") return false;
  try {
    return { prefix: `/${tusPathSegments(text).join("/")}/` };
  } catch (err) {
    const message = (err as Error).message;
    if (fromFlag) throw new UsageError(`--tus-prefix: ${message}`);
    throw new Error(`${TUS_PREFIX_VARIABLE}: ${message}`);
  }
}
