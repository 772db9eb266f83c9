/**
 * `get HASH [-o FILE] [--range a-b]`: writes a blob, or a range of it, to
 * standard output or a file.
 *
 * @module
 */

import { dirname, join } from "node:path";
import type { MultipartBlobs } from "../../multipart_blobs.ts";
import { parseRangeSpec, resolveRangeSpec } from "../../range.ts";
import { hashArgument, UsageError } from "../args.ts";
import type { StoreCommand } from "../command.ts";
import { Progress } from "../progress.ts";

/**
 * The `get` command. `--range` takes HTTP's byte-range syntax: `a-b`
 * (inclusive), `a-` or `-n` (the last n bytes). With `-o` the blob is
 * written to a temporary file beside FILE and renamed onto it once
 * complete, so FILE is never left half written.
 */
export const getCommand: StoreCommand = {
  name: "get",
  usage: "get HASH [-o FILE] [--range a-b]",
  summary: "write a blob (or a byte range of it) to stdout or FILE",
  options: {
    output: { type: "string", short: "o" },
    range: { type: "string" },
  },
  async run(context, { positionals, options }) {
    const hash = hashArgument("get", positionals);
    const found = await openRange(context.blobs, hash, options.range);
    const output = options.output as string | undefined;
    if (output === undefined || output === "-") {
      await found.body.pipeTo(Deno.stdout.writable, { preventClose: true });
      return 0;
    }
    const progress = new Progress(`getting ${hash.slice(0, 12)}`, found.length);
    await writeAtomically(output, found.body.pipeThrough(progress.counter()));
    progress.done();
    return 0;
  },
};

async function openRange(
  blobs: MultipartBlobs,
  hash: string,
  range: string | boolean | undefined,
): Promise<{ body: ReadableStream<Uint8Array>; length: number }> {
  if (typeof range !== "string") {
    const { size, body } = await blobs.open(hash);
    return { body, length: size };
  }
  const spec = parseRangeSpec(range);
  if (!spec) {
    throw new UsageError(
      `invalid range ${
        JSON.stringify(range)
      } (expected a-b, a- or -n, in bytes, b inclusive)`,
    );
  }
  const { size } = await blobs.stat(hash);
  const resolved = resolveRangeSpec(spec, size);
  if (!resolved) {
    throw new Error(`range ${range} not satisfiable (blob is ${size} bytes)`);
  }
  const { body } = await blobs.open(hash, resolved);
  return { body, length: resolved.end - resolved.start };
}

async function writeAtomically(
  path: string,
  body: ReadableStream<Uint8Array>,
): Promise<void> {
  const temp = join(
    dirname(path),
    `.blobstore-${crypto.randomUUID()}.tmp`,
  );
  try {
    const file = await Deno.open(temp, { write: true, createNew: true });
    await body.pipeTo(file.writable);
    await Deno.rename(temp, path);
  } catch (err) {
    await Deno.remove(temp).catch(() => {});
    throw err;
  }
}
