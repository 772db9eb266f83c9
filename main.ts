/**
 * The `blobstore` command-line tool and server.
 *
 * ```sh
 * deno task start                                    # serve on 127.0.0.1:8000, data in ./data
 * deno run -A --unstable-kv main.ts put FILE…       # store files, print their hashes
 * deno run -A --unstable-kv main.ts get HASH -o FILE
 * deno install -g -A --unstable-kv -n blobstore main.ts   # then: blobstore --help
 * ```
 *
 * @module
 */

import { main } from "./src/cli/main.ts";

export { main };

if (import.meta.main) Deno.exit(await main(Deno.args));
