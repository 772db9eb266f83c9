/**
 * `upload FILE --part-size N`: a multipart upload that resumes where it
 * stopped; `upload --tus URL FILE`: the same to a server, over tus.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { basename, join, resolve } from "node:path";
import { NotFoundError } from "../../errors.ts";
import type { UploadInfo } from "../../multipart.ts";
import { onlyPositional, type ParsedArgs, UsageError } from "../args.ts";
import type { CommandContext, StoreCommand, StoreContext } from "../command.ts";
import { fileStream, hashFile, statFile } from "../files.ts";
import { formatBytes, parseSize } from "../format.ts";
import { Progress } from "../progress.ts";
import {
  defaultTusStatePath,
  findEndpoint,
  type TusClientOptions,
  TusError,
  TusStateFile,
  tusUpload,
} from "../tus.ts";

/** How long an upload started by the CLI may wait to be resumed. */
const UPLOAD_TTL_MS = 7 * 24 * 60 * 60 * 1000;

/** Where, under the data directory, the CLI remembers its uploads. */
const STATE_DIR = "cli-uploads";

interface UploadState {
  uploadId: string;
  path: string;
  size: number;
  modified: number;
  partSize: number;
}

/**
 * The `upload` command. The upload id is remembered under
 * `<data>/cli-uploads/`, keyed by the file's absolute path, size,
 * modification time and the part size; running the same command again
 * skips the parts already complete and goes on from there. A
 * `--part-size` outside the store's limits (5 MiB to just under 4 GiB by
 * default) is a usage error, found before anything is started. Once finished,
 * the blob is registered like one finished over HTTP (readable by its
 * hash), its hash printed, and the state forgotten.
 *
 * With `--tus URL` the file goes to a server instead, over the tus 1.0.0
 * resumable upload protocol (see {@linkcode uploadOverTus}); no data
 * directory is opened.
 */
export const uploadCommand: StoreCommand = {
  name: "upload",
  usage: "upload FILE [--part-size N | --tus URL [--chunk-size N]]",
  summary:
    "store a large file in parts, or send it to a server over tus (resumable: run it again)",
  options: {
    "part-size": { type: "string" },
    verbose: { type: "boolean", short: "v" },
    tus: { type: "string" },
    "chunk-size": { type: "string" },
    "tus-state": { type: "string" },
  },
  remote(args) {
    const { tus } = args.options;
    if (typeof tus === "string") {
      return (context) => uploadOverTus(context, tus, args);
    }
    for (const name of ["chunk-size", "tus-state"]) {
      if (args.options[name] !== undefined) {
        throw new UsageError(`--${name} needs --tus URL`);
      }
    }
    return undefined;
  },
  async run(context, { positionals, options }) {
    const file = onlyPositional("upload", "FILE", positionals);
    const { store } = context.seams;
    const requested = options["part-size"];
    const chosen = typeof requested === "string"
      ? checkPartSize(requested, parseSize(requested), store)
      : undefined;
    const path = resolve(file);
    const info = await statFile(file);
    const partSize = chosen ??
      defaultPartSize(info.size, store.minPartSize, store.maxParts);
    const count = Math.ceil(info.size / partSize);
    if (count > store.maxParts) {
      throw new UsageError(
        `too many parts (at most ${store.maxParts}, got ${count}); use a --part-size of at least ${
          formatBytes(Math.ceil(info.size / store.maxParts))
        }`,
      );
    }
    const state: UploadState = {
      uploadId: "",
      path,
      size: info.size,
      modified: info.mtime?.getTime() ?? 0,
      partSize,
    };
    const statePath = await stateFile(context.data, state);
    const { uploadId, upload } = await resume(context, statePath, state);
    const hashes = await uploadParts(context, uploadId, upload, path, {
      size: info.size,
      partSize,
      count,
      verbose: options.verbose === true,
    });
    const { hash } = await context.blobs.finish(
      uploadId,
      hashes.map((h) => ({ hash: h })),
    );
    await Deno.remove(statePath).catch(() => {});
    context.print(hash);
    return 0;
  },
};

/**
 * `size`, the `--part-size` given as `text`, if the store takes parts of
 * that size (every part but the last is exactly that long); otherwise a
 * {@linkcode UsageError} naming the limit and what was given, before
 * anything is started.
 */
function checkPartSize(
  text: string,
  size: number,
  limits: { minPartSize: number; maxPartSize: number },
): number {
  const least = Math.max(1, limits.minPartSize);
  const most = limits.maxPartSize - 1;
  const bytes = (n: number, note = "") =>
    `${n} bytes (${formatBytes(n)}${note && `, ${note}`})`;
  if (size < least) {
    throw new UsageError(
      `--part-size ${text} is too small: expected at least ${
        bytes(least, "the store's minimum part size")
      }, got ${bytes(size)}`,
    );
  }
  if (size > most) {
    throw new UsageError(
      `--part-size ${text} is too large: expected at most ${
        bytes(most, "the store's maximum part size")
      }, got ${bytes(size)}`,
    );
  }
  return size;
}

/** The least part size, in whole MiB, that fits the file in `maxParts`. */
function defaultPartSize(size: number, minPartSize: number, maxParts: number) {
  const mib = 1024 * 1024;
  const needed = Math.ceil(size / maxParts / mib) * mib;
  return Math.max(minPartSize, needed);
}

async function stateFile(data: string, state: UploadState): Promise<string> {
  const key = createHash("sha256")
    .update(
      JSON.stringify([state.path, state.size, state.modified, state.partSize]),
    )
    .digest("hex");
  const dir = join(data, STATE_DIR);
  await Deno.mkdir(dir, { recursive: true });
  return join(dir, `${key}.json`);
}

/** Picks up the upload a previous run left, or starts a new one. */
async function resume(
  context: StoreContext,
  statePath: string,
  state: UploadState,
): Promise<{ uploadId: string; upload?: UploadInfo }> {
  const saved = await Deno.readTextFile(statePath)
    .then((text) => JSON.parse(text) as UploadState)
    .catch(() => undefined);
  if (saved?.uploadId) {
    try {
      const upload = await context.seams.store.uploadInfo(saved.uploadId);
      const complete = upload.parts.filter((p) => p?.complete).length;
      context.warn(
        `blobstore: resuming upload ${saved.uploadId}: ${complete} of ${
          Math.ceil(state.size / state.partSize)
        } parts already complete`,
      );
      return { uploadId: saved.uploadId, upload };
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      context.warn(
        `blobstore: upload ${saved.uploadId} expired; starting again`,
      );
    }
  }
  const uploadId = await context.seams.store.newUpload(
    new Date(Date.now() + UPLOAD_TTL_MS),
  );
  await Deno.writeTextFile(statePath, JSON.stringify({ ...state, uploadId }));
  return { uploadId };
}

/** Uploads every part not complete yet; returns the hash of each part. */
async function uploadParts(
  context: StoreContext,
  uploadId: string,
  upload: UploadInfo | undefined,
  path: string,
  layout: { size: number; partSize: number; count: number; verbose: boolean },
): Promise<string[]> {
  const { size, partSize, count, verbose } = layout;
  const progress = new Progress(`uploading ${basename(path)}`, size);
  const hashes: string[] = [];
  for (let part = 0; part < count; part++) {
    const start = part * partSize;
    const end = Math.min(start + partSize, size);
    const known = upload?.parts[part];
    if (
      known?.complete && known.offset === start && known.size === end - start
    ) {
      hashes.push(known.hash);
      progress.skip(end - start);
      continue;
    }
    const hash = await hashFile(path, start, end);
    await context.seams.store.putPart(
      uploadId,
      part,
      fileStream(path, start, end).pipeThrough(progress.counter()),
      end - start,
      start,
      hash,
    );
    hashes.push(hash);
    if (verbose) {
      context.warn(
        `blobstore: part ${part + 1} of ${count} stored (${
          formatBytes(end - start)
        })`,
      );
    }
  }
  progress.done();
  return hashes;
}

/**
 * `upload --tus URL FILE`: sends FILE to the tus endpoint at URL (the
 * server's base URL, whose endpoint is found under it at `tus/`, or the
 * endpoint itself) and prints the blob's hash.
 *
 * The file is hashed first; its SHA-384 goes along as `sha384` metadata,
 * which the blobstore server checks against what it received (a mismatch,
 * a file changed meanwhile, fails the upload), and the hash the server
 * names at the end must be it. The upload's URL is remembered in a JSON
 * file (`--tus-state FILE`, else `$BLOBSTORE_TUS_STATE`, else
 * `$XDG_CACHE_HOME/blobstore/tus.json` or `~/.cache/blobstore/tus.json`)
 * keyed by the endpoint and the file's absolute path, size and
 * modification time: a run killed midway is resumed by the next from the
 * server's offset, and forgotten once finished. Within a run, a failed
 * request (a dropped connection, a 5xx, 409 or 423) is retried from the
 * server's offset after asking it (`HEAD`), up to five times in a row
 * without progress. `--chunk-size N` sends at most N bytes a `PATCH`
 * (default: all that is left, in one). `BLOBSTORE_TOKEN`, when set, is
 * sent as `Authorization: Bearer`.
 */
export async function uploadOverTus(
  context: CommandContext,
  url: string,
  { positionals, options }: ParsedArgs,
): Promise<number> {
  const file = onlyPositional("upload", "FILE", positionals);
  if (options["part-size"] !== undefined) {
    throw new UsageError(
      "--part-size does not go with --tus (--chunk-size does)",
    );
  }
  let endpointUrl: URL;
  try {
    endpointUrl = new URL(url);
    if (!/^https?:$/.test(endpointUrl.protocol)) throw new TypeError();
  } catch {
    throw new UsageError(
      `--tus needs an http(s) URL (the server's, or its tus endpoint), got ${
        JSON.stringify(url)
      }`,
    );
  }
  const chunkText = options["chunk-size"];
  const chunkSize = typeof chunkText === "string"
    ? parseSize(chunkText)
    : undefined;
  if (chunkSize !== undefined && chunkSize < 1) {
    throw new UsageError(`--chunk-size must be at least 1 byte`);
  }
  const stateOption = options["tus-state"];
  const state = new TusStateFile(
    typeof stateOption === "string" ? stateOption : defaultTusStatePath(),
  );
  const token = Deno.env.get("BLOBSTORE_TOKEN");
  const client: TusClientOptions = {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  };

  const path = resolve(file);
  const info = await statFile(file);
  const fileKey = {
    path,
    size: info.size,
    modified: info.mtime?.getTime() ?? 0,
  };
  const endpoint = await findEndpoint(endpointUrl.href, client);
  const key = TusStateFile.key(endpoint, fileKey);
  const saved = await state.get(key);
  let sha384 = saved?.sha384;
  const name = basename(path);
  if (!sha384) {
    const hashing = new Progress(`hashing ${name}`, info.size);
    sha384 = await hashFile(path, 0, Infinity, (n) => hashing.add(n));
    hashing.done();
  }
  const progress = new Progress(`uploading ${name}`, info.size);
  let result;
  try {
    result = await tusUpload({
      ...client,
      endpoint,
      file: { path, size: info.size },
      metadata: { filename: name, sha384 },
      resume: saved?.url,
      chunkSize,
      async onCreated(url) {
        await state.set(key, {
          url,
          endpoint,
          ...fileKey,
          sha384: sha384!,
          created: new Date().toISOString(),
        });
      },
      onResumed(offset) {
        progress.skip(offset);
        context.warn(
          `blobstore: resuming ${
            saved!.url
          } at ${offset} of ${info.size} bytes`,
        );
      },
      onForgotten(why) {
        context.warn(
          `blobstore: cannot resume ${saved!.url} (${why}); starting again`,
        );
      },
      onRetry(err, delayMs) {
        context.warn(
          `blobstore: ${err.message}; asking the server where the upload stands in ${delayMs} ms`,
        );
      },
      onProgress: (delta) => progress.add(delta),
    });
  } catch (err) {
    if (err instanceof TusError && err.status === 422) {
      // The server refused the bytes it got (they do not hash to sha384)
      // and dropped the upload: nothing left to resume.
      await state.delete(key);
      throw new Error(
        `${file}: the server refused the upload, the bytes it got do not hash to the file's SHA-384 (did it change while it was sent?): ${err.message}`,
      );
    }
    throw err;
  }
  progress.done();
  await state.delete(key);
  if (result.hash !== sha384) {
    throw new Error(
      `${file}: the server stored ${result.hash}, but the file hashes to ${sha384}`,
    );
  }
  context.print(result.hash);
  return 0;
}
