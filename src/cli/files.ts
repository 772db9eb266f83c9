/**
 * Reading local files as streams of byte ranges, and hashing them.
 *
 * @module
 */

import { createHash } from "node:crypto";

/** How much one read asks the file for. */
const READ_SIZE = 1024 * 1024;

/**
 * Streams the bytes `[start, end)` of the file at `path` (the whole file by
 * default), one fresh buffer per read, closing the file at the end or on
 * cancel.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { fileStream } from "./files.ts";
 *
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, "hello");
 * assert((await new Response(fileStream(path, 1, 4)).text()) === "ell");
 * await Deno.remove(path);
 * ```
 */
export function fileStream(
  path: string,
  start = 0,
  end = Infinity,
): ReadableStream<Uint8Array> {
  let file: Deno.FsFile | undefined;
  let position = start;
  const close = () => {
    file?.close();
    file = undefined;
  };
  return new ReadableStream<Uint8Array>({
    async start() {
      file = await Deno.open(path, { read: true });
      if (start > 0) await file.seek(start, Deno.SeekMode.Start);
    },
    async pull(controller) {
      const want = Math.min(READ_SIZE, end - position);
      const buffer = new Uint8Array(want);
      const n = want > 0 ? await file!.read(buffer) : null;
      if (n === null) {
        close();
        controller.close();
        return;
      }
      position += n;
      controller.enqueue(buffer.subarray(0, n));
    },
    cancel: close,
  }, { highWaterMark: 0 });
}

/**
 * Returns the SHA-384 of the bytes `[start, end)` of a file, reporting
 * progress to `onBytes`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { hashFile } from "./files.ts";
 *
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, "abc");
 * assert((await hashFile(path)).startsWith("cb00753f45a35e8b"));
 * await Deno.remove(path);
 * ```
 */
export async function hashFile(
  path: string,
  start = 0,
  end = Infinity,
  onBytes: (n: number) => void = () => {},
): Promise<string> {
  const hash = createHash("sha384");
  for await (const chunk of fileStream(path, start, end)) {
    hash.update(chunk);
    onBytes(chunk.byteLength);
  }
  return hash.digest("hex");
}

/**
 * Returns the `stat` of a regular file, with a message fit for a shell user
 * when it is missing, unreadable or not a regular file.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { statFile } from "./files.ts";
 *
 * await assert.rejects(statFile("no/such/file"), /no such file/);
 * ```
 */
export async function statFile(path: string): Promise<Deno.FileInfo> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new Error(`${path}: no such file`);
    }
    if (err instanceof Deno.errors.PermissionDenied) {
      throw new Error(`${path}: permission denied`);
    }
    throw err;
  }
  if (!info.isFile) throw new Error(`${path}: not a regular file`);
  return info;
}
