/**
 * A backend that keeps the bytes of blobs as files under a root directory.
 *
 * Layout: the object `name` lives at `<root>/<n0n1>/<n2n3>/<name>`, fanned
 * out by the first four characters of its name (the start of its hash, so
 * evenly spread), which keeps every directory small. A put writes
 * `.tmp-<name>-<random>` beside its final place and renames it there once
 * the content is synced and verified: a crash or a mismatch never leaves a
 * visible partial object, only a temporary file that
 * {@linkcode FileBackend.sweep} deletes once it is older than a grace
 * period (`collect` calls it; listing never deletes anything).
 *
 * @module
 */

import { join } from "node:path";
import type {
  Backend,
  BackendObject,
  ByteRange,
  OpenedBlob,
  StagedObject,
} from "../backend.ts";
import { BadParamsError, CorruptBlobError, NotFoundError } from "../errors.ts";
import { randomHex } from "../names.ts";
import { resolveRange } from "../range.ts";
import { DEFAULT_GRACE_MS } from "../sweep.ts";
import { verified } from "../verify.ts";

/** How many fan-out directories a backend remembers making (of 65,536). */
const MAX_KNOWN_DIRS = 4096;

/** The prefix of temporary files; names may not start with a dot. */
const TEMP_PREFIX = ".tmp-";

/**
 * Names are plain file names: letters, digits, `_`, `-` and `.`, not
 * starting with a dot (those are temporary files), at most 200 characters
 * (so the temporary name fits the usual 255-byte limit).
 */
const NAME_PATTERN = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/;

/**
 * The size of the chunks a read hands out, each a fresh buffer (the
 * consumer may keep it). 1 MiB: each read is an operation on another
 * thread costing ~45 µs whatever its size, so 64 KiB reads run at half
 * the speed. V8 frees dropped buffers once 64 MiB of them are young,
 * whatever their size; 64 KiB reads only lower that peak because their
 * own bookkeeping makes it collect sooner (see the README's performance
 * section).
 */
const READ_SIZE = 1024 * 1024;

/**
 * How many bytes a put writes before it starts flushing them to disk in
 * the background (and again each time as many more are written while no
 * flush runs). The put's final fsync, which it waits for before it
 * succeeds, then only has the tail to write. Measured on 8 MiB parts
 * arriving in 1 MiB chunks: from the body's end to the put's success
 * ~16 ms without, ~12 ms with 4 MiB (~11 ms with 1 MiB), each part ~5 ms
 * sooner; the 8 MiB threshold gained little. A 256 MiB put's tail drops
 * from ~137 ms to ~15 ms, but the put as a whole took as long: the disk
 * does the same work earlier, beside the writes. 4 MiB rather than 1 MiB
 * for nearly the same gain with a quarter of the flushes (each one a
 * journal commit and a disk cache flush). Bodies below this size never
 * open the second handle.
 */
const FLUSH_AHEAD_BYTES = 4 * 1024 * 1024;

/**
 * How many files a batch removal unlinks at once: enough to keep the
 * file system busy (each unlink runs off the main thread), few enough not
 * to flood Deno's blocking thread pool.
 */
const REMOVES_IN_FLIGHT = 16;

/** Options for a {@linkcode FileBackend}. */
export interface FileBackendOptions {
  /**
   * How long (ms) a temporary file may go unmodified before a sweep treats
   * its put as crashed and deletes it. Default: `DEFAULT_GRACE_MS` (one
   * hour).
   */
  graceMs?: number;
}

/**
 * A {@linkcode Backend} on the local filesystem. A put streams through
 * `VerifyStream` into a temporary file in the object's directory (flushed
 * to disk in the background as it grows), syncs it, and renames it into
 * place only once the content was verified; the
 * directory is synced too, so the rename survives a power cut. Ranged
 * reads seek to their start.
 *
 * Names that could leave the root (separators, `..`, NUL, a leading dot)
 * are refused with `BadParamsError`.
 *
 * @example
 * ```ts
 * import { sha384 } from "@blobstore/blobstore";
 * import { FileBackend } from "@blobstore/blobstore/fs";
 *
 * const root = await Deno.makeTempDir();
 * const backend = new FileBackend(root);
 * const bytes = new TextEncoder().encode("hello");
 * await backend.put("greeting", new Blob([bytes]).stream(), 5, await sha384(bytes));
 * const { size, body } = await backend.get("greeting", { start: 1 });
 * console.assert(size === 5 && (await new Response(body).text()) === "ello");
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export class FileBackend implements Backend {
  /** The directory holding every object. */
  readonly root: string;
  #graceMs: number;
  /** Fan-out directories known to exist (see `#ensureDir`). */
  #dirs = new Set<string>();

  /** Stores objects under `root`, which is created on the first put. */
  constructor(root: string, options?: FileBackendOptions) {
    this.root = root;
    this.#graceMs = options?.graceMs ?? DEFAULT_GRACE_MS;
  }

  /** See {@linkcode Backend.get}. */
  async get(name: string, range?: ByteRange): Promise<OpenedBlob> {
    const path = this.#path(name);
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) {
        throw new NotFoundError(`object "${name}" not found`);
      }
      throw err;
    }
    try {
      // The size of the file opened, not of a path that may change since.
      const { size } = await file.stat();
      const { start, end } = resolveRange(range, size);
      if (start > 0) await file.seek(start, Deno.SeekMode.Start);
      return { size, body: readFile(file, name, end - start) };
    } catch (err) {
      file.close();
      throw err;
    }
  }

  /** See {@linkcode Backend.put}. */
  async put(
    name: string,
    body: ReadableStream<Uint8Array>,
    size: number,
    hash: string,
  ): Promise<void> {
    const path = this.#path(name);
    const dir = this.#dir(name);
    const temp = join(dir, `${TEMP_PREFIX}${name}-${randomHex(8)}`);
    await this.#writeTemp(temp, name, verified(body, size, hash));
    try {
      await Deno.rename(temp, path);
    } catch (err) {
      await Deno.remove(temp).catch(() => {}); // else the next sweep does it
      throw err;
    }
    await syncDir(dir);
  }

  /**
   * See {@linkcode Backend.stage}: the file is written and synced as a
   * temporary file in a fan-out directory picked at random (its name, and
   * so its own directory, is not known yet), and `commit` renames it into
   * place. Never committed, it is a temporary file for `sweep`.
   */
  async stage(body: ReadableStream<Uint8Array>): Promise<StagedObject> {
    const spot = randomHex(2);
    const temp = join(
      this.#dir(spot),
      `${TEMP_PREFIX}staged-${randomHex(8)}`,
    );
    await this.#writeTemp(temp, spot, body);
    let settled = false;
    const settle = () => {
      if (settled) {
        throw new Error("staged object already committed or discarded");
      }
      settled = true;
    };
    return {
      commit: async (name) => {
        settle();
        const path = this.#path(name);
        try {
          await this.#ensureDir(name);
          await Deno.rename(temp, path);
        } catch (err) {
          await Deno.remove(temp).catch(() => {});
          throw err;
        }
        await syncDir(this.#dir(name));
      },
      discard: async () => {
        if (settled) return;
        settled = true;
        await Deno.remove(temp).catch(() => {});
      },
    };
  }

  /**
   * Writes `body` to the new file `temp` in the fan-out directory of
   * `name` and syncs it; on any failure, removes it and throws.
   */
  async #writeTemp(
    temp: string,
    name: string,
    body: ReadableStream<Uint8Array>,
  ): Promise<void> {
    await this.#ensureDir(name);
    const file = await Deno.open(temp, { write: true, createNew: true })
      .catch(async (err) => {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
        // Removed behind our back since we made it: make it again.
        this.#dirs.clear();
        await this.#ensureDir(name);
        return await Deno.open(temp, { write: true, createNew: true });
      });
    let open = true;
    const flush = new BackgroundFlush(temp);
    // One write in flight while the next chunk is read and hashed: the
    // write runs off the main thread, so hashing overlaps it.
    let writing = Promise.resolve();
    let inFlight = 0;
    try {
      for await (const chunk of inWrites(body)) {
        await writing;
        flush.wrote(inFlight);
        writing = writeAll(file, chunk);
        inFlight = chunk.byteLength;
        // Handled here so a failure while the next chunk is awaited is not
        // reported as unhandled; the next `await writing` still throws it.
        writing.catch(() => {});
      }
      await writing;
      await flush.finish();
      // The put's durability rests on this fsync alone, as before: the
      // background flushes only leave it less to write.
      await file.sync();
      file.close();
      open = false;
    } catch (err) {
      await writing.catch(() => {}); // never close under a pending write
      await flush.finish().catch(() => {});
      if (open) file.close();
      await Deno.remove(temp).catch(() => {}); // else the next sweep does it
      throw err;
    }
  }

  /** See {@linkcode Backend.remove}. */
  async remove(name: string): Promise<void> {
    await removeIfExists(this.#path(name));
  }

  /**
   * See {@linkcode Backend.removeMany}: every name is checked first (a bad
   * one removes nothing), then the files are unlinked
   * {@linkcode REMOVES_IN_FLIGHT} at a time; absent ones are not an error.
   */
  async removeMany(names: readonly string[]): Promise<void> {
    const paths = names.map((name) => this.#path(name));
    let next = 0;
    let failed = false;
    // After a failure the other workers stop at their next file, and the
    // call returns once they have: nothing is left removing behind it.
    const worker = async () => {
      while (!failed && next < paths.length) {
        try {
          await removeIfExists(paths[next++]);
        } catch (err) {
          failed = true;
          throw err;
        }
      }
    };
    const results = await Promise.allSettled(
      Array.from(
        { length: Math.min(REMOVES_IN_FLIGHT, paths.length) },
        worker,
      ),
    );
    for (const result of results) {
      if (result.status === "rejected") throw result.reason;
    }
  }

  /**
   * Lists every complete object; temporary files are skipped, and left to
   * {@linkcode FileBackend.sweep}. See {@linkcode Backend.list}.
   */
  async *list(): AsyncIterable<BackendObject> {
    for await (const file of this.#files()) {
      if (!NAME_PATTERN.test(file.name) || file.name.includes("..")) continue;
      let info: Deno.FileInfo;
      try {
        info = await Deno.stat(file.path);
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) continue; // removed meanwhile
        throw err;
      }
      yield {
        name: file.name,
        size: info.size,
        modified: info.mtime ?? new Date(0),
      };
    }
  }

  /**
   * Deletes the temporary files not modified for `graceMs` (by default the
   * grace period given at construction): puts that crashed, or are so
   * stalled that their rename will fail. Returns how many it deleted. See
   * {@linkcode Backend.sweep}.
   *
   * @example
   * ```ts
   * import { FileBackend } from "@blobstore/blobstore/fs";
   *
   * const root = await Deno.makeTempDir();
   * console.assert(await new FileBackend(root).sweep(0) === 0);
   * await Deno.remove(root);
   * ```
   */
  async sweep(graceMs: number = this.#graceMs): Promise<number> {
    const cutoff = Date.now() - graceMs;
    let swept = 0;
    for await (const file of this.#files()) {
      if (
        file.name.startsWith(TEMP_PREFIX) &&
        await removeIfStale(file.path, cutoff)
      ) {
        swept++;
      }
    }
    return swept;
  }

  /** Every file two directory levels under the root. */
  async *#files(): AsyncGenerator<{ name: string; path: string }> {
    for await (const first of readDirIfExists(this.root)) {
      if (!first.isDirectory) continue;
      const firstPath = join(this.root, first.name);
      for await (const second of readDirIfExists(firstPath)) {
        if (!second.isDirectory) continue;
        const secondPath = join(firstPath, second.name);
        for await (const entry of readDirIfExists(secondPath)) {
          if (!entry.isFile) continue;
          yield { name: entry.name, path: join(secondPath, entry.name) };
        }
      }
    }
  }

  /**
   * Makes the fan-out directories of `name`, each one's entry made durable
   * in its parent when it is created (a put's own directory sync covers
   * the file, not the directory that holds it). Directories known to exist
   * are not asked for again: one `mkdir` per put was most of a small
   * put's file-system work.
   */
  async #ensureDir(name: string): Promise<void> {
    const dir = this.#dir(name);
    if (this.#dirs.has(dir)) return;
    if (this.#dirs.size === 0) await Deno.mkdir(this.root, { recursive: true });
    const padded = name.padEnd(4, "_");
    const first = join(this.root, padded.slice(0, 2));
    if (await makeDir(first)) await syncDir(this.root);
    if (await makeDir(dir)) await syncDir(first);
    if (this.#dirs.size >= MAX_KNOWN_DIRS) this.#dirs.clear();
    this.#dirs.add(dir);
  }

  #dir(name: string): string {
    checkName(name);
    const padded = name.padEnd(4, "_");
    return join(this.root, padded.slice(0, 2), padded.slice(2, 4));
  }

  #path(name: string): string {
    return join(this.#dir(name), name);
  }
}

/**
 * Refuses every name that is not a plain file name, so that no name can
 * reach outside the root or clash with a temporary file.
 */
function checkName(name: string): void {
  if (
    typeof name !== "string" || !NAME_PATTERN.test(name) || name.includes("..")
  ) {
    throw new BadParamsError(
      `invalid object name (expected 1 to 200 of [A-Za-z0-9._-], not starting with "." nor holding "..", got ${
        JSON.stringify(String(name).slice(0, 250))
      })`,
    );
  }
}

/**
 * A stream of the next `length` bytes of `file`, read in 1 MiB steps into
 * fresh buffers (the reader keeps them), one step ahead of the reader so
 * the disk and the consumer overlap. Each buffer is filled before it is
 * handed out, so a short read never leaves a chunk that is a small view
 * keeping a whole 1 MiB buffer alive. The file is closed at the end, on
 * an error and on cancel.
 */
function readFile(
  file: Deno.FsFile,
  name: string,
  length: number,
): ReadableStream<Uint8Array> {
  let remaining = length;
  let closed = false;
  const close = () => {
    if (!closed) {
      closed = true;
      file.close();
    }
  };
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (remaining === 0) {
        close();
        controller.close();
      }
    },
    async pull(controller) {
      try {
        const buffer = new Uint8Array(Math.min(READ_SIZE, remaining));
        for (let filled = 0; filled < buffer.length;) {
          const n = await file.read(buffer.subarray(filled));
          if (n === null) {
            throw new CorruptBlobError(
              `object "${name}" is shorter than its size (expected ${
                remaining - filled
              } more bytes, got end of file)`,
            );
          }
          filled += n;
        }
        remaining -= buffer.length;
        controller.enqueue(buffer);
        if (remaining === 0) {
          close();
          controller.close();
        }
      } catch (err) {
        close();
        throw err;
      }
    },
    cancel() {
      close();
    },
  }, { highWaterMark: 1 });
}

/**
 * Flushes a file being written to disk in the background, so that the
 * writer's final fsync has little left to do. Once
 * {@linkcode FLUSH_AHEAD_BYTES} have been written it starts an fdatasync,
 * and each time as many more have been written by the time one ends, the
 * next: one at a time, so they batch themselves to the disk's pace.
 *
 * The flushes go through a handle of their own: Deno runs the operations
 * of one `FsFile` one after another, so an fdatasync on the writer's
 * handle would hold up its next write until the disk answered (a 1 MiB
 * write waited 20-57 ms behind a flush of 64 MiB; on another handle it
 * took 0.7-2 ms). It is opened for writing, which Windows needs to flush.
 * Should it fail to open, the writer's final fsync does all the work, as
 * without this. A failed flush fails the put: after an fdatasync error
 * the kernel may have dropped dirty pages, and a later fsync need not
 * report it again.
 */
class BackgroundFlush {
  #path: string;
  /** `null` once flushing is off: the handle could not be opened, or finished. */
  #handle: Deno.FsFile | undefined | null;
  #unflushed = 0;
  #flushing: Promise<void> | undefined;
  #failure: { error: unknown } | undefined;

  constructor(path: string) {
    this.#path = path;
  }

  /**
   * Counts `bytes` more whose write has completed, and starts a flush when
   * enough are unflushed and none is running. Throws the error of a flush
   * that failed.
   */
  wrote(bytes: number): void {
    if (this.#failure) throw this.#failure.error;
    this.#unflushed += bytes;
    if (
      this.#flushing || this.#handle === null ||
      this.#unflushed < FLUSH_AHEAD_BYTES
    ) {
      return;
    }
    this.#unflushed = 0;
    this.#flushing = this.#flush()
      .catch((error) => {
        this.#failure = { error };
      })
      .finally(() => {
        this.#flushing = undefined;
      });
  }

  /**
   * Waits for the running flush, closes the handle and throws the error
   * of a flush that failed. Flushing is over after it.
   */
  async finish(): Promise<void> {
    await this.#flushing;
    this.#handle?.close();
    this.#handle = null;
    if (this.#failure) throw this.#failure.error;
  }

  async #flush(): Promise<void> {
    if (this.#handle === undefined) {
      try {
        this.#handle = await Deno.open(this.#path, { write: true });
      } catch {
        this.#handle = null; // see the class comment
        return;
      }
    }
    await this.#handle?.syncData();
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    written += await file.write(bytes.subarray(written));
  }
}

/**
 * Syncs a directory so a rename in it is durable. Not every platform lets
 * a directory be opened (Windows does not), and there the rename is as
 * durable as the system makes it: skip.
 */
async function syncDir(dir: string): Promise<void> {
  let handle: Deno.FsFile | undefined;
  try {
    handle = await Deno.open(dir, { read: true });
    await handle.sync();
  } catch {
    // best effort, see above
  } finally {
    handle?.close();
  }
}

/**
 * The size of a put's writes: network chunks (64 KiB from Deno's server)
 * are gathered into pieces of this size, so that a put costs one write
 * operation per MiB, not sixteen (a quarter less CPU per byte here).
 */
const WRITE_SIZE = 1024 * 1024;

/** Yields the bytes of `chunks` in pieces of WRITE_SIZE (the last shorter). */
async function* inWrites(
  chunks: AsyncIterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  let piece: Uint8Array | undefined;
  let filled = 0;
  for await (const chunk of chunks) {
    if (filled === 0 && chunk.byteLength >= WRITE_SIZE) {
      yield chunk;
      continue;
    }
    let at = 0;
    while (at < chunk.byteLength) {
      // A fresh piece each time: the one yielded is still being written.
      piece ??= new Uint8Array(WRITE_SIZE);
      const n = Math.min(chunk.byteLength - at, WRITE_SIZE - filled);
      piece.set(chunk.subarray(at, at + n), filled);
      filled += n;
      at += n;
      if (filled === WRITE_SIZE) {
        yield piece;
        piece = undefined;
        filled = 0;
      }
    }
  }
  if (piece && filled > 0) yield piece.subarray(0, filled);
}

/** Makes directory `path`; returns whether it was created (not there). */
async function makeDir(path: string): Promise<boolean> {
  try {
    await Deno.mkdir(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) return false;
    throw err;
  }
}

async function removeIfExists(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

async function removeIfStale(path: string, cutoff: number): Promise<boolean> {
  try {
    const { mtime } = await Deno.stat(path);
    if (mtime && mtime.getTime() > cutoff) return false;
    await Deno.remove(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false; // renamed or gone
    throw err;
  }
}

async function* readDirIfExists(path: string): AsyncGenerator<Deno.DirEntry> {
  try {
    yield* Deno.readDir(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}
