/**
 * Reading an environment variable on any runtime: `Deno.env` where the
 * `Deno` global exists (asking `Deno.permissions` first, so it never
 * prompts), `process.env` on Node and Bun. A variable the process may not
 * read is told apart from one that is unset, so that a caller guarding
 * something (a token) can fail closed.
 *
 * @module
 */

/** What {@linkcode readEnv} returns for a variable the process may not read. */
export const UNREADABLE: unique symbol = Symbol("unreadable");

/**
 * The value of the environment variable `name`, `undefined` when it is
 * unset, or {@linkcode UNREADABLE} when the process lacks the permission to
 * read it (Deno without `--allow-env`).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { readEnv, UNREADABLE } from "./env.ts";
 *
 * const value = readEnv("BLOBSTORE_SURELY_UNSET_VARIABLE");
 * assert(value === undefined || value === UNREADABLE);
 * ```
 */
export function readEnv(name: string): string | undefined | typeof UNREADABLE {
  const deno = (globalThis as { Deno?: typeof Deno }).Deno;
  if (!deno) {
    const process = (globalThis as {
      process?: { env?: Record<string, string | undefined> };
    }).process;
    return process?.env?.[name];
  }
  try {
    const permission = deno.permissions?.querySync?.({
      name: "env",
      variable: name,
    });
    if (permission && permission.state !== "granted") return UNREADABLE;
    return deno.env.get(name);
  } catch {
    return UNREADABLE; // NotCapable (Deno 2) or PermissionDenied
  }
}
