/**
 * `put FILE…`: stores files as blobs and prints their hashes.
 *
 * @module
 */

import { basename } from "node:path";
import type { Store } from "../../store.ts";
import { UsageError } from "../args.ts";
import type { StoreCommand } from "../command.ts";
import { fileStream, hashFile, statFile } from "../files.ts";
import { Progress } from "../progress.ts";

/**
 * The `put` command. Each file is read twice, once to hash it (the store
 * needs the hash before it takes the bytes, to verify them as they
 * stream) and once to store it. One hash per line is printed, in the order
 * of the arguments; a file that fails is reported and the others still go,
 * with exit code 1 at the end.
 */
export const putCommand: StoreCommand = {
  name: "put",
  usage: "put FILE…",
  summary: "store files as blobs; prints each SHA-384 hash",
  options: {},
  async run(context, { positionals }) {
    if (positionals.length === 0) throw new UsageError("put needs a FILE");
    let code = 0;
    for (const path of positionals) {
      try {
        context.print(await putFile(context.seams.store, path));
      } catch (err) {
        const message = describe(err);
        context.warn(
          `blobstore: ${
            message.startsWith(path) ? message : `${path}: ${message}`
          }`,
        );
        code = 1;
      }
    }
    return code;
  },
};

async function putFile(
  store: Store,
  path: string,
): Promise<string> {
  const info = await statFile(path);
  const name = basename(path);
  const hashing = new Progress(`hashing ${name}`, info.size);
  const hash = await hashFile(path, 0, Infinity, (n) => hashing.add(n));
  hashing.done();
  const storing = new Progress(`storing ${name}`, info.size);
  await store.put(
    fileStream(path).pipeThrough(storing.counter()),
    hash,
    info.size,
  );
  storing.done();
  return hash;
}

function describe(err: unknown): string {
  if (err instanceof Error && err.name === "HashMismatchError") {
    return `file changed while it was stored (${err.message})`;
  }
  return err instanceof Error ? err.message : String(err);
}
