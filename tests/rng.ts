/**
 * Seeded randomness for tests and fuzzers: the same sequence for the same
 * seed, so a failing run can be replayed from the seed it printed.
 *
 * @module
 */

/** mulberry32: a small seeded generator of floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    let t = (state = (state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** The fuzzers' choices, drawn from {@linkcode seededRandom}. */
export class Rng {
  /** A float in [0, 1). */
  readonly next: () => number;

  /** A generator for `seed`. */
  constructor(seed: number) {
    this.next = seededRandom(seed);
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** One of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** `n` random bytes, four from each draw. */
  bytes(n: number): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const word = (this.next() * 2 ** 32) >>> 0;
      for (let j = 0; j < 4 && i + j < n; j++) out[i + j] = word >>> (8 * j);
    }
    return out;
  }

  /** `n` lowercase hex digits. */
  hex(n: number): string {
    let s = "";
    for (let i = 0; i < n; i++) s += "0123456789abcdef"[this.int(16)];
    return s;
  }
}
