import { connect, type Socket } from 'node:net';

/** A RESP2 reply: simple string, error, integer, bulk (null for nil), or array. */
export type RespReply = string | number | null | RespError | RespReply[];

export class RespError {
  readonly message: string;
  constructor(message: string) {
    this.message = message;
  }
}

export class RespClientError extends Error {
  override readonly name = 'RespClientError';
  readonly code: 'RESP_CONNECT' | 'RESP_CLOSED' | 'RESP_TIMEOUT' | 'RESP_PROTOCOL';
  constructor(code: RespClientError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

/**
 * A small RESP2 client for drills and tests: one socket, pipelined commands, replies matched in order.
 * A closed connection rejects every pending command (the drill counts those as unacknowledged).
 */
export class RespClient {
  private buf: Buffer = Buffer.alloc(0);
  private readonly pending: { resolve: (r: RespReply) => void; reject: (e: Error) => void }[] = [];
  private closed: Error | undefined;
  private readonly socket: Socket;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (d) => this.onData(d));
    socket.on('error', (e) => this.fail(new RespClientError('RESP_CLOSED', `connection error: ${e.message}`)));
    socket.on('close', () => this.fail(new RespClientError('RESP_CLOSED', 'connection closed by the server')));
  }

  static connect(host: string, port: number, timeoutMs = 2000): Promise<RespClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ host, port });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new RespClientError('RESP_TIMEOUT', `no connection to ${host}:${port} within ${timeoutMs} ms`));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        s.setNoDelay(true);
        resolve(new RespClient(s));
      });
      s.once('error', (e) => {
        clearTimeout(timer);
        reject(new RespClientError('RESP_CONNECT', `cannot connect to ${host}:${port}: ${e.message}`));
      });
    });
  }

  /** Sends one command; resolves with its reply (a RespError reply resolves, it does not reject). */
  command(...args: (string | number)[]): Promise<RespReply> {
    if (this.closed) return Promise.reject(this.closed);
    const parts = [`*${args.length}\r\n`];
    for (const a of args) {
      const s = String(a);
      parts.push(`$${Buffer.byteLength(s)}\r\n${s}\r\n`);
    }
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.socket.write(parts.join(''));
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private fail(e: Error): void {
    if (this.closed) return;
    this.closed = e;
    for (const p of this.pending.splice(0)) p.reject(e);
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    for (;;) {
      let parsed: { reply: RespReply; end: number } | undefined;
      try {
        parsed = parseReply(this.buf, 0);
      } catch (e) {
        this.fail(e as Error);
        this.socket.destroy();
        return;
      }
      if (!parsed) return;
      this.buf = this.buf.subarray(parsed.end);
      const p = this.pending.shift();
      if (!p) {
        this.fail(new RespClientError('RESP_PROTOCOL', 'reply without a command'));
        return;
      }
      p.resolve(parsed.reply);
    }
  }
}

/** Parses one reply at `at`; undefined when more bytes are needed. */
function parseReply(b: Buffer, at: number): { reply: RespReply; end: number } | undefined {
  if (at >= b.length) return undefined;
  const eol = b.indexOf('\r\n', at);
  if (eol < 0) return undefined;
  const line = b.toString('utf8', at + 1, eol);
  const next = eol + 2;
  switch (b[at]) {
    case 0x2b: return { reply: line, end: next }; // +
    case 0x2d: return { reply: new RespError(line), end: next }; // -
    case 0x3a: return { reply: Number(line), end: next }; // :
    case 0x24: { // $
      const n = Number(line);
      if (n < 0) return { reply: null, end: next };
      if (b.length < next + n + 2) return undefined;
      return { reply: b.toString('utf8', next, next + n), end: next + n + 2 };
    }
    case 0x2a: { // *
      const n = Number(line);
      if (n < 0) return { reply: null, end: next };
      const items: RespReply[] = [];
      let pos = next;
      for (let i = 0; i < n; i++) {
        const r = parseReply(b, pos);
        if (!r) return undefined;
        items.push(r.reply);
        pos = r.end;
      }
      return { reply: items, end: pos };
    }
    default:
      throw new RespClientError('RESP_PROTOCOL', `unexpected reply type byte 0x${b[at]!.toString(16)}`);
  }
}
