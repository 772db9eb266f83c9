/**
 * `gc --keep FILE --before DURATION [--dry-run]`: deletes the blobs nothing
 * needs any more.
 *
 * @module
 */

import { collect } from "../../collect.ts";
import { isValidHash } from "../../digest.ts";
import { Refs } from "../../refs.ts";
import { UsageError } from "../args.ts";
import type { StoreCommand } from "../command.ts";
import { formatBytes, parseDuration } from "../format.ts";

/**
 * The `gc` command. `--keep` names a file of hashes to keep, one per line
 * (blank lines and `#` comments ignored; `-` reads standard input).
 * Everything put or finished more than `--before` ago that is not kept is
 * deleted, by the core's `collect`: multipart blobs are released first
 * (their upload records removed), expired uploads are removed, then the
 * store's GC deletes the unreferenced blobs, parts of uploads still alive
 * excepted, the backend clears the debris of puts killed midway, and the
 * orphan sweep deletes backend objects no reference names that are older
 * than `--before` and at least an hour. `--dry-run` lists the blobs that
 * would go (hash and size, one per line) and changes nothing.
 */
export const gcCommand: StoreCommand = {
  name: "gc",
  usage: "gc --keep FILE --before DURATION [--dry-run]",
  summary: "delete blobs not listed in FILE and older than DURATION",
  options: {
    keep: { type: "string" },
    before: { type: "string" },
    "dry-run": { type: "boolean", short: "n" },
  },
  async run(context, { positionals, options }) {
    if (positionals.length > 0) {
      throw new UsageError(
        `gc takes no arguments (got ${positionals.join(" ")})`,
      );
    }
    if (typeof options.keep !== "string") {
      throw new UsageError(
        "gc needs --keep FILE (a file of hashes to keep; may be empty)",
      );
    }
    if (typeof options.before !== "string") {
      throw new UsageError(
        "gc needs --before DURATION (like 24h: blobs newer than that are spared)",
      );
    }
    const now = new Date();
    const before = new Date(now.getTime() - parseDuration(options.before));
    const keep = await readKeepFile(options.keep);
    const dryRun = options["dry-run"] === true;
    const result = await collect(context.seams.store, {
      keep,
      before,
      now,
      dryRun,
      multipart: context.blobs,
      onRemove: dryRun
        ? (ref) => context.print(`${ref.hash}\t${ref.size}`)
        : undefined,
    });
    const { released, removed, removedBytes, swept } = result;
    if (dryRun) {
      context.warn(
        `blobstore: dry run: would release ${released} multipart blobs and remove ${removed} blobs (${
          formatBytes(removedBytes)
        })${swept ? `; would sweep ${swept.removed} orphaned objects` : ""}`,
      );
      return 0;
    }
    const kept = result.kept!;
    context.warn(
      `blobstore: released ${released} multipart blobs; removed ${removed} blobs; kept ${kept.count} (largest ${
        formatBytes(kept.maxSize)
      }, mean ${formatBytes(kept.meanSize)})${
        swept ? `; swept ${swept.removed} orphaned objects` : ""
      }`,
    );
    return 0;
  },
};

async function readKeepFile(path: string): Promise<Refs> {
  const text = path === "-"
    ? await new Response(Deno.stdin.readable).text()
    : await Deno.readTextFile(path);
  const refs = new Refs();
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/#.*/, "").trim();
    if (line === "") return;
    const hash = line.split(/\s+/)[0];
    if (!isValidHash(hash)) {
      throw new UsageError(
        `${path}:${
          i + 1
        }: invalid hash (expected 96 lowercase hex characters, got ${
          JSON.stringify(hash)
        })`,
      );
    }
    refs.add(hash);
  });
  return refs;
}
