/**
 * How the server answers the signals that ask it to stop.
 *
 * @module
 */

/** The signals that stop the server. */
export const STOP_SIGNALS = ["SIGINT", "SIGTERM"] as const;

/** One of {@linkcode STOP_SIGNALS}. */
export type StopSignal = typeof STOP_SIGNALS[number];

/**
 * How long after the first stop signal another one is taken as the same
 * request. `deno task` forwards each SIGINT it receives to its child twice
 * (once as Ctrl+C, once as a signal it forwards), and under load the two
 * arrive apart rather than merged into one.
 */
export const REPEAT_WINDOW_MS = 1000;

/** The exit code of a process stopped by `signal` (128 + its number). */
export function signalExitCode(signal: StopSignal): number {
  return 128 + (signal === "SIGINT" ? 2 : 15);
}

/** What {@linkcode stopSignalHandler} does on each kind of signal. */
export interface StopActions {
  /** Starts a graceful stop: open requests are finished first. */
  stop(): void | Promise<void>;
  /** Ends the process at once, with `code`. */
  exit(code: number): void;
  /** The time in milliseconds (for tests). */
  now?(): number;
}

/**
 * The listener for stop signals: the first starts a graceful stop; one
 * within {@linkcode REPEAT_WINDOW_MS} of it is the same request, ignored;
 * a later one (the user pressing Ctrl+C again while requests hold the
 * server open) exits at once with 128 + the signal's number.
 *
 * Keep it bound until the process has closed everything: a repeat that
 * found no listener would end the process with the signal's default
 * action, halfway through closing.
 */
export function stopSignalHandler(
  actions: StopActions,
): (signal: StopSignal) => void {
  const now = actions.now ?? Date.now;
  let firstAt: number | undefined;
  return (signal) => {
    if (firstAt === undefined) {
      firstAt = now();
      actions.stop();
    } else if (now() - firstAt > REPEAT_WINDOW_MS) {
      actions.exit(signalExitCode(signal));
    }
  };
}
