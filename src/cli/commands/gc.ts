/**
 * `gc --keep FILE --before DURATION [--dry-run]`: deletes the blobs nothing
 * needs any more.
 *
 * @module
 */

import type { Catalog } from "../../catalog.ts";
import { isValidHash } from "../../digest.ts";
import type { BlobStats } from "../../gc.ts";
import { Refs } from "../../refs.ts";
import { Store } from "../../store.ts";
import { UsageError } from "../args.ts";
import type { StoreCommand, StoreContext } from "../command.ts";
import { formatBytes, parseDuration } from "../format.ts";

/** The least age of an unrecorded backend object before gc deletes it. */
const ORPHAN_GRACE_MS = 60 * 60 * 1000;

/**
 * The `gc` command. `--keep` names a file of hashes to keep, one per line
 * (blank lines and `#` comments ignored; `-` reads standard input).
 * Everything put or finished more than `--before` ago that is not kept is
 * deleted: multipart blobs are released first (their upload records
 * removed), expired uploads are removed, then the store's GC deletes the
 * unreferenced blobs, parts of uploads still alive excepted, and the orphan
 * sweep deletes backend objects no reference names that are older than
 * `--before` and at least an hour. `--dry-run`
 * lists what would go (hash and size, one per line) and changes nothing.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { gcCommand } from "./gc.ts";
 *
 * assert(gcCommand.options["dry-run"].type === "boolean");
 * ```
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
    const refs = await readKeepFile(options.keep);
    const released = await multipartToRelease(context, refs, before);
    if (options["dry-run"]) {
      return await dryRun(context, refs, before, now, released);
    }

    for (const { hash, uploadId } of released) {
      await context.blobs.release(hash, uploadId);
    }
    await context.seams.store.removeExpiredUploads(now);
    const { stats, removed } = await collectCounting(
      context.seams.store,
      refs,
      before,
    );
    // Leftovers of puts that crashed between writing their bytes and
    // recording them: GC walks references and never sees them. The grace
    // period spares puts still running.
    const swept = context.seams.backend.list
      ? await context.seams.store.sweepOrphans({
        olderThan: Math.max(now.getTime() - before.getTime(), ORPHAN_GRACE_MS),
      })
      : undefined;
    context.warn(
      `blobstore: released ${released.length} multipart blobs; removed ${removed} blobs; kept ${stats.count} (largest ${
        formatBytes(stats.maxSize)
      }, mean ${formatBytes(stats.meanSize)})${
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

/** The registered multipart blobs neither kept nor finished after `before`. */
async function multipartToRelease(
  context: StoreContext,
  refs: Refs,
  before: Date,
): Promise<{ hash: string; uploadId: string }[]> {
  const released = [];
  for await (const entry of context.blobs.registry.entries()) {
    if (refs.has(entry.hash) || entry.finished.getTime() > before.getTime()) {
      continue;
    }
    released.push({ hash: entry.hash, uploadId: entry.uploadId });
  }
  return released;
}

/**
 * Lists what a real run would delete, by the store's own rule: references
 * put at or before `before`, held neither by `refs` nor by an upload
 * record that would survive.
 */
async function dryRun(
  context: StoreContext,
  refs: Refs,
  before: Date,
  now: Date,
  released: { hash: string; uploadId: string }[],
): Promise<number> {
  const { catalog } = context.seams;
  const releasedIds = new Set(released.map((r) => r.uploadId));
  const held = new Set<string>();
  for await (const upload of catalog.uploads()) {
    if (
      releasedIds.has(upload.id) || upload.expires.getTime() < now.getTime()
    ) {
      continue;
    }
    if (upload.hash) held.add(upload.hash);
    for (const part of upload.parts) if (part) held.add(part.hash);
  }
  let count = 0;
  let bytes = 0;
  for await (const ref of catalog.refsPutBefore(before)) {
    if (refs.has(ref.hash) || held.has(ref.hash)) continue;
    context.print(`${ref.hash}\t${ref.size}`);
    count++;
    bytes += ref.size;
  }
  context.warn(
    `blobstore: dry run: would release ${released.length} multipart blobs and remove ${count} blobs (${
      formatBytes(bytes)
    })`,
  );
  return 0;
}

/**
 * Runs the store's GC and counts the blobs it removed as it removes them:
 * the references its conditional removals report gone. (Counting the
 * references before and after instead is wrong beside a busy server: the
 * puts made meanwhile are subtracted from the removals, down to negative
 * counts.)
 */
async function collectCounting(
  store: Store,
  refs: Refs,
  before: Date,
): Promise<{ stats: BlobStats; removed: number }> {
  const counted = countingRemovals(store.catalog);
  const stats = await new Store({
    catalog: counted.catalog,
    backend: store.backend,
  }).gc(refs, before);
  return { stats, removed: counted.removed() };
}

/**
 * `catalog` as is, but counting the references that `removeRef` and
 * `removeRefs` report gone. `removeRefs` stays absent when `catalog` lacks
 * it, so that GC takes the same path through either.
 */
function countingRemovals(
  catalog: Catalog,
): { catalog: Catalog; removed: () => number } {
  let removed = 0;
  const overrides: Partial<Catalog> = {
    async removeRef(hash, putTime) {
      const gone = await catalog.removeRef(hash, putTime);
      if (gone) removed++;
      return gone;
    },
  };
  if (catalog.removeRefs) {
    overrides.removeRefs = async (refs) => {
      const gone = await catalog.removeRefs!(refs);
      removed += gone.size;
      return gone;
    };
  }
  const counting = new Proxy(catalog, {
    get(target, key) {
      if (Object.hasOwn(overrides, key)) {
        return overrides[key as keyof Catalog];
      }
      const value = Reflect.get(target, key, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { catalog: counting, removed: () => removed };
}
