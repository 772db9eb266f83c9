/**
 * `stat HASH`: whether a blob exists, its size, and its parts.
 *
 * @module
 */

import { hashArgument } from "../args.ts";
import type { StoreCommand } from "../command.ts";
import { formatBytes } from "../format.ts";

/**
 * The `stat` command: prints `hash`, `size` and `kind` lines (or one JSON
 * object with `--json`); exit code 1 with a message when the blob does not
 * exist.
 */
export const statCommand: StoreCommand = {
  name: "stat",
  usage: "stat HASH [--json]",
  summary: "show a blob's size and whether it is made of parts",
  options: { json: { type: "boolean" } },
  async run(context, { positionals, options }) {
    const hash = hashArgument("stat", positionals);
    const found = await context.blobs.stat(hash);
    const parts = found.index?.sizes.length;
    if (options.json) {
      context.print(
        JSON.stringify({
          hash,
          size: found.size,
          ...(parts === undefined ? {} : { parts }),
        }),
      );
      return 0;
    }
    context.print(`hash  ${hash}`);
    context.print(`size  ${found.size} (${formatBytes(found.size)})`);
    context.print(
      `kind  ${parts === undefined ? "single" : `multipart, ${parts} parts`}`,
    );
    return 0;
  },
};
