/**
 * A TCP proxy on 127.0.0.1 for tests of resumable uploads: it forwards
 * every connection to a target port (which may change while it runs, when
 * the server behind it is restarted on another port), counts the bytes
 * clients send, and drops a connection after a given number of them, the
 * way a real network drops one mid-body: the client's request fails, and
 * the server sees its request body end short.
 *
 * @example
 * ```ts ignore
 * const proxy = new CuttingProxy(serverPort);
 * proxy.cutAfter(5 * 1024 * 1024); // the connection carrying byte 5 MiB + 1 is cut
 * await fetch(`${proxy.url}/tus/…`, …); // fails
 * ```
 *
 * @module
 */

/** What {@linkcode CuttingProxy.cutAfter} does once its bytes have gone through. */
export type CutMode = "close" | "hold";

interface Pending {
  /** Client bytes still to forward before the cut. */
  budget: number;
  mode: CutMode;
  resolve(): void;
}

interface Link {
  client: Deno.TcpConn;
  server?: Deno.TcpConn;
  closed: boolean;
  /** Whether the server has sent anything on it. */
  answered: boolean;
}

/** How a {@linkcode CuttingProxy} listens and counts. */
export interface ProxyOptions {
  /** The port of 127.0.0.1 to listen on (default: any free one). */
  port?: number;
  /**
   * Leave out of the count (and never cut) the client bytes a connection
   * carries once the server has answered on it. For clients that send one
   * request a connection, those are the rest of a body the server did not
   * read (a 423 or 409 answered at once), so cuts land in bodies the
   * server takes. Default `false`: every client byte counts.
   */
  skipAnswered?: boolean;
}

/**
 * Forwards connections on a port of 127.0.0.1 to {@linkcode target},
 * cutting them on request.
 */
export class CuttingProxy {
  /** The port of 127.0.0.1 the server behind listens on. */
  target: number;
  /** Client bytes forwarded to the server, over every connection. */
  upstreamBytes = 0;
  /**
   * The client bytes counted toward cuts: all of them, or with
   * `skipAnswered` those sent before the server answered.
   */
  countedBytes = 0;
  /** Connections cut so far by {@linkcode cutAfter}. */
  cuts = 0;
  /** The connections accepted so far. */
  connections = 0;
  #listener: Deno.TcpListener;
  #links = new Set<Link>();
  #pending?: Pending;
  #held: Link[] = [];
  #accepting: Promise<void>;
  #pumps = new Set<Promise<void>>();
  #skipAnswered: boolean;

  /** Listens on 127.0.0.1, forwarding to port `target` of 127.0.0.1. */
  constructor(target: number, options: ProxyOptions = {}) {
    this.target = target;
    this.#skipAnswered = options.skipAnswered ?? false;
    this.#listener = Deno.listen({
      hostname: "127.0.0.1",
      port: options.port ?? 0,
    });
    this.#accepting = this.#accept();
  }

  /** The port clients connect to. */
  get port(): number {
    return this.#listener.addr.port;
  }

  /** `http://127.0.0.1:<port>`. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /**
   * Arms a cut: once `bytes` more client bytes have been counted (on any
   * connection), the connection carrying the next one is cut. With
   * `"close"` both of its sides are closed at once; with `"hold"` it stays
   * open and silent (nothing more forwarded either way) until
   * {@linkcode dropHeld}, so a test can act (kill a process) while the
   * request hangs. Resolves when the cut happens; `bytes` below 0 count
   * as 0 (the next byte is cut).
   */
  cutAfter(bytes: number, mode: CutMode = "close"): Promise<void> {
    if (this.#pending) throw new Error("a cut is already armed");
    return new Promise((resolve) => {
      this.#pending = { budget: Math.max(0, bytes), mode, resolve };
    });
  }

  /** Whether a cut is armed and has not happened yet. */
  get armed(): boolean {
    return this.#pending !== undefined;
  }

  /** Closes the connections a `"hold"` cut kept open. */
  dropHeld(): void {
    for (const link of this.#held.splice(0)) this.#close(link);
  }

  /** Stops listening and closes every connection. */
  async close(): Promise<void> {
    try {
      this.#listener.close();
    } catch {
      // closed already
    }
    await this.#accepting;
    this.#held = [];
    for (const link of this.#links) this.#close(link);
    await Promise.all(this.#pumps);
  }

  async #accept(): Promise<void> {
    for (;;) {
      let client: Deno.TcpConn;
      try {
        client = await this.#listener.accept();
      } catch {
        return; // closed
      }
      this.connections++;
      const link: Link = { client, closed: false, answered: false };
      this.#links.add(link);
      const pump = this.#serve(link).finally(() => this.#pumps.delete(pump));
      this.#pumps.add(pump);
    }
  }

  async #serve(link: Link): Promise<void> {
    try {
      link.server = await Deno.connect({
        hostname: "127.0.0.1",
        port: this.target,
      });
    } catch {
      this.#close(link); // nothing listens there (a server restarting)
      return;
    }
    if (link.closed) {
      link.server.close();
      return;
    }
    await Promise.all([this.#upstream(link), this.#downstream(link)]);
    this.#close(link);
  }

  /** Client to server: counted, and cut when a cut is due. */
  async #upstream(link: Link): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    for (;;) {
      let n: number | null;
      try {
        n = await link.client.read(buffer);
      } catch {
        n = null;
      }
      if (n === null || link.closed) break;
      let chunk = buffer.subarray(0, n);
      const counted = !(this.#skipAnswered && link.answered);
      const pending = counted ? this.#pending : undefined;
      let cut = false;
      if (pending && chunk.length > pending.budget) {
        chunk = chunk.subarray(0, pending.budget);
        cut = true;
      } else if (pending) {
        pending.budget -= chunk.length;
      }
      if (chunk.length > 0 && !await writeAll(link.server!, chunk)) break;
      this.upstreamBytes += chunk.length;
      if (counted) this.countedBytes += chunk.length;
      if (cut) {
        this.#pending = undefined;
        this.cuts++;
        if (pending!.mode === "hold") {
          this.#held.push(link);
          pending!.resolve();
          return; // reads nothing more: the client's writes back up
        }
        this.#close(link);
        pending!.resolve();
        return;
      }
    }
    // The client finished sending (or went away): pass the half-close on.
    if (!link.closed) await link.server!.closeWrite().catch(() => {});
  }

  /** Server to client, as is, unless the link was cut. */
  async #downstream(link: Link): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    for (;;) {
      let n: number | null;
      try {
        n = await link.server!.read(buffer);
      } catch {
        n = null;
      }
      if (n === null || link.closed) break;
      link.answered = true;
      if (this.#held.includes(link)) continue; // silent until dropped
      if (!await writeAll(link.client, buffer.subarray(0, n))) break;
    }
    if (!link.closed && !this.#held.includes(link)) this.#close(link);
  }

  #close(link: Link): void {
    if (link.closed) return;
    link.closed = true;
    this.#links.delete(link);
    for (const conn of [link.client, link.server]) {
      try {
        conn?.close();
      } catch {
        // closed already
      }
    }
  }
}

/** Writes all of `bytes`; `false` when the connection failed. */
async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<boolean> {
  try {
    for (let at = 0; at < bytes.length;) {
      at += await conn.write(bytes.subarray(at));
    }
    return true;
  } catch {
    return false;
  }
}
