/**
 * What the server's configuration hands out, shared by `config.ts` and the
 * technology-specific openers it loads on demand (so that they need not
 * import `config.ts` back).
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import type { Catalog } from "../catalog.ts";
import type { Store } from "../store.ts";

/**
 * The seams picked, the store over them, and how to let go of them.
 */
export interface Seams {
  /** The catalog of blob references and upload records. */
  catalog: Catalog;
  /** Where the bytes are. */
  backend: Backend;
  /** The store over `catalog` and `backend`. */
  store: Store;
  /**
   * Where each seam keeps its data, for people; `dataDir` is set when the
   * data directory holds any of it.
   */
  description: { catalog: string; backend: string; dataDir?: string };
  /** Closes the databases and clients opened. */
  close(): Promise<void>;
}

/**
 * The seams a catalog choice brings: the catalog, and the backend
 * that goes with them unless Swift is configured.
 */
export type CatalogSide = Omit<Seams, "store" | "close">;

/**
 * A URL without its credentials, fit to print.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { redact } from "./seams.ts";
 *
 * assert(redact("mongodb://user:pw@host/db") === "mongodb://host/db");
 * ```
 */
export function redact(url: string): string {
  return url.replace(/\/\/[^@/]*@/, "//");
}
