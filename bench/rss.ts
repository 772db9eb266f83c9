/**
 * Peak RSS growth during a large put and open through any backend: the
 * bytes stream through, so memory must stay flat whatever the size (at
 * most 64 MiB of growth), except in a backend that holds the bytes itself.
 *
 * @module
 */

import type { Backend } from "../src/backend.ts";
import type { BenchCase } from "./harness.ts";
import { drain, hashOfSize, streamOf } from "./data.ts";

/** The most RSS growth a streamed put or open may cause, in MiB. */
export const MAX_RSS_GROWTH_MIB = 64;

/**
 * Two cases: a put of `size` bytes into `backend` and an open reading it
 * back, one round each, with their peak RSS growth checked against
 * {@linkcode MAX_RSS_GROWTH_MIB} (unless `holdsBytes`: then the growth is
 * the blob itself, and the row says the target does not apply).
 *
 * @example
 * ```ts ignore
 * import { MemoryBackend } from "../mod.ts";
 * import { rssCases } from "./rss.ts";
 *
 * const [put, open] = rssCases("MemoryBackend", new MemoryBackend(), 2 ** 30, { holdsBytes: true });
 * ```
 */
export function rssCases(
  label: string,
  backend: Backend,
  size: number,
  options: { holdsBytes?: boolean } = {},
): BenchCase[] {
  const hash = hashOfSize(size);
  let stored: string | undefined;
  const target = options.holdsBytes
    ? { targetText: `n/a (${label} holds the bytes in memory)` }
    : {
      targetText: `RSS growth ≤ ${MAX_RSS_GROWTH_MIB} MiB`,
      maxRssGrowthMiB: MAX_RSS_GROWTH_MIB,
    };
  const put = async () => {
    const name = `${hash}-${
      crypto.randomUUID().replaceAll("-", "").slice(0, 16)
    }`;
    await backend.put(name, streamOf(size), size, hash);
    stored = name;
  };
  const remove = async () => {
    if (stored) await backend.remove(stored);
    stored = undefined;
  };
  return [
    {
      name: `put into ${label}: peak RSS growth`,
      size,
      rounds: 1,
      ...target,
      beforeRound: remove,
      ours: put,
    },
    {
      name: `open from ${label}: peak RSS growth`,
      size,
      rounds: 1,
      ...target,
      async setup() {
        if (!stored) await put();
      },
      async ours() {
        const { body } = await backend.get(stored!);
        if (await drain(body) !== size) throw new Error("short read");
      },
      teardown: remove,
    },
  ];
}
