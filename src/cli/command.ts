/**
 * What every CLI command is: a name, a usage line, its options, and a run
 * function over the opened seams.
 *
 * @module
 */

import type { MultipartBlobs } from "../multipart_blobs.ts";
import type { Seams } from "../server/seams.ts";
import type { OptionSpecs, ParsedArgs } from "./args.ts";

/**
 * What every command runs with.
 */
export interface CommandContext {
  /** The data directory (`--data`, `BLOBSTORE_DATA`, default `./data`). */
  data: string;
  /**
   * The most parts an upload may have, from `--max-parts`; unset, the
   * seams take `BLOBSTORE_MAX_PARTS`, else 400.
   */
  maxParts?: number;
  /** Writes a line of results to standard output. */
  print(line: string): void;
  /** Writes a line of diagnostics to standard error. */
  warn(line: string): void;
}

/**
 * What a command that works on the store runs with: the seams of the data
 * directory, opened for it and closed after it.
 */
export interface StoreContext extends CommandContext {
  /** The catalog, backend, registry and store of the data directory. */
  seams: Seams;
  /** Blobs by hash, single or multipart, as the HTTP service serves them. */
  blobs: MultipartBlobs;
}

/**
 * A CLI command: one that works on the store (given its seams), or one
 * that opens them itself (`serve`, which keeps them for its lifetime).
 */
export type Command = StoreCommand | SelfOpeningCommand;

interface CommandBase {
  /** The word that selects it. */
  name: string;
  /** Its arguments and options, as shown in help. */
  usage: string;
  /** One line on what it does. */
  summary: string;
  /** The options it accepts besides the global ones. */
  options: OptionSpecs;
}

/**
 * A command run on the store of the data directory.
 */
export interface StoreCommand extends CommandBase {
  /** Not set: the CLI opens the seams for it. */
  opensSeams?: false;
  /** Runs it; resolves to the exit code. */
  run(context: StoreContext, args: ParsedArgs): Promise<number>;
  /**
   * When these arguments need no data directory (`upload --tus`, which
   * talks to a server), what runs instead of {@linkcode run}, without
   * seams; `undefined` otherwise.
   */
  remote?(
    args: ParsedArgs,
  ): ((context: CommandContext) => Promise<number>) | undefined;
}

/**
 * A command that opens the seams itself.
 */
export interface SelfOpeningCommand extends CommandBase {
  /** Set: the CLI gives it no seams. */
  opensSeams: true;
  /** Runs it; resolves to the exit code. */
  run(context: CommandContext, args: ParsedArgs): Promise<number>;
}
