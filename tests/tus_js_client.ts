/**
 * tus-js-client for the tests (the version deno.json pins): its Node build,
 * loaded once, and its browser build's text. When it cannot be loaded (a
 * laptop offline with an empty cache), its suites skip saying so; in CI
 * (`CI=true`) that is a failure.
 *
 * @module
 */

import type * as Tus from "tus-js-client";
import { serviceAvailable } from "./services.ts";

export type { Tus };

let loaded: typeof Tus | undefined;

/** Whether tus-js-client loaded: use as `ignore: !tusAvailable`. */
export const tusAvailable = await serviceAvailable(
  "tus-js-client (npm, pinned in deno.json)",
  async () => {
    loaded = await import("tus-js-client");
  },
);

/** The Node build, run by Deno on `node:http` (only when {@linkcode tusAvailable}). */
export const tus = loaded as typeof Tus;

/** The browser build (`dist/tus.min.js`, a UMD script that sets `globalThis.tus`). */
export async function tusBrowserBuild(): Promise<string> {
  return await Deno.readTextFile(
    new URL(import.meta.resolve("tus-js-client/dist/tus.min.js")),
  );
}
