/**
 * tus-js-client for the tests (the version deno.json pins): its Node build,
 * loaded once, and its browser build's text. When it cannot be loaded (a
 * laptop offline with an empty cache), its suites skip saying so; in CI
 * (`CI=true`) that is a failure.
 *
 * @module
 */

import type * as Tus from "tus-js-client";
import { IN_CI } from "./services.ts";

export type { Tus };

let loaded: typeof Tus | undefined;

/** Whether tus-js-client loaded: use as `ignore: !tusAvailable`. */
export const tusAvailable = await (async () => {
  try {
    loaded = await import("tus-js-client");
    return true;
  } catch (err) {
    const why =
      `the npm package tus-js-client (pinned in deno.json) cannot be loaded: ${
        err instanceof Error ? err.message : String(err)
      }`;
    if (IN_CI) throw new Error(`${why} (CI=true: suites never skip in CI)`);
    console.error(
      `%cskipping the tus-js-client suites: ${why}. Deno fetches it from the npm registry on first use (\`deno install\` while online).`,
      "color: yellow",
    );
    return false;
  }
})();

/** The Node build, run by Deno on `node:http` (only when {@linkcode tusAvailable}). */
export const tus = loaded as typeof Tus;

/** The browser build (`dist/tus.min.js`, a UMD script that sets `globalThis.tus`). */
export async function tusBrowserBuild(): Promise<string> {
  return await Deno.readTextFile(
    new URL(import.meta.resolve("tus-js-client/dist/tus.min.js")),
  );
}
