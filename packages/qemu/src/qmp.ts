import { connect, type Socket } from 'node:net';
import { QemuError, QemuErrorCode } from './errors.js';

/**
 * A client of QEMU's machine protocol (QMP) on a unix socket: JSON objects, one per line. QEMU greets first
 * ({"QMP": ...}); the client enters command mode with qmp_capabilities; each command carries an id and gets
 * {"return": ...} or {"error": {"class", "desc"}} with the same id; {"event": ...} messages come any time.
 * Commands have a deadline (QMP_TIMEOUT), answers that match no command are a protocol error, and a closed
 * socket fails every waiting command.
 */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

/** Longest line accepted from QEMU: query answers are small; a runaway line is a protocol error, not memory. */
const MAX_LINE = 4 * 1024 * 1024;

export class QmpClient {
  private readonly socket: Socket;
  private buffer = '';
  private nextId = 1;
  private readonly waiting = new Map<string, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout; command: string }>();
  private readonly eventListeners = new Set<(e: QmpEvent) => void>();
  private failure: QemuError | undefined;
  private greeted: { resolve: () => void; reject: (e: Error) => void } | undefined;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (e) => this.fail(new QemuError(QemuErrorCode.EXITED, `the QMP connection failed: ${e.message}`, { cause: e })));
    socket.on('close', () => this.fail(new QemuError(QemuErrorCode.EXITED, 'QEMU closed its QMP connection')));
  }

  /**
   * Connects to the monitor at `path`, retrying while the socket does not exist yet (QEMU creates it as it
   * starts), reads the greeting and enters command mode. `alive` is asked between attempts: a process that
   * died stops the wait at once.
   */
  static async connect(path: string, o: { timeoutMs: number; commandTimeoutMs: number; alive?: () => boolean }): Promise<QmpClient> {
    const deadline = Date.now() + o.timeoutMs;
    for (;;) {
      const socket = await new Promise<Socket | Error>((resolve) => {
        const s = connect(path);
        s.once('connect', () => resolve(s));
        s.once('error', (e) => resolve(e));
      });
      if (!(socket instanceof Error)) {
        const client = new QmpClient(socket);
        try {
          await client.handshake(Math.max(100, deadline - Date.now()), o.commandTimeoutMs);
          return client;
        } catch (e) {
          client.close();
          throw e;
        }
      }
      if (o.alive && !o.alive()) throw new QemuError(QemuErrorCode.START_FAILED, `QEMU exited before its QMP monitor at ${path} came up`);
      if (Date.now() > deadline) throw new QemuError(QemuErrorCode.QMP_CONNECT, `no QMP monitor at ${path} within ${o.timeoutMs} ms: ${socket.message}`, { cause: socket });
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private async handshake(greetingTimeoutMs: number, commandTimeoutMs: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new QemuError(QemuErrorCode.QMP_TIMEOUT, `no QMP greeting within ${greetingTimeoutMs} ms`)), greetingTimeoutMs);
      this.greeted = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
    await this.execute('qmp_capabilities', undefined, commandTimeoutMs);
  }

  /** Runs a QMP command; resolves with its `return`, rejects with a QemuError. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 5000): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    const id = `colo-${this.nextId++}`;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new QemuError(QemuErrorCode.QMP_TIMEOUT, `QEMU did not answer ${command} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject, timer, command });
      this.socket.write(JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id }) + '\n');
    });
  }

  /** Every QMP event QEMU sends (STOP, RESUME, SHUTDOWN, MIGRATION, ...). Returns an unsubscribe function. */
  onEvent(cb: (e: QmpEvent) => void): () => void {
    this.eventListeners.add(cb);
    return () => this.eventListeners.delete(cb);
  }

  close(): void {
    this.fail(new QemuError(QemuErrorCode.EXITED, 'the QMP client was closed'));
    this.socket.destroy();
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    for (let nl = this.buffer.indexOf('\n'); nl >= 0; nl = this.buffer.indexOf('\n')) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line) this.onMessage(line);
    }
    if (this.buffer.length > MAX_LINE) this.protocolError(`a QMP line longer than ${MAX_LINE} bytes`);
  }

  private onMessage(line: string): void {
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return this.protocolError(`not JSON: ${line.slice(0, 200)}`);
    }
    if (typeof m !== 'object' || m === null) return this.protocolError(`not a QMP message: ${line.slice(0, 200)}`);
    if ('QMP' in m) {
      this.greeted?.resolve();
      this.greeted = undefined;
      return;
    }
    if (typeof m.event === 'string') {
      for (const cb of this.eventListeners) cb(m as unknown as QmpEvent);
      return;
    }
    const id = typeof m.id === 'string' ? m.id : undefined;
    const w = id === undefined ? undefined : this.waiting.get(id);
    if (!w) {
      // An answer after its command timed out is expected; one to no command at all is not.
      if (id?.startsWith('colo-')) return;
      return this.protocolError(`an answer to no command: ${line.slice(0, 200)}`);
    }
    this.waiting.delete(id!);
    clearTimeout(w.timer);
    if ('return' in m) w.resolve(m.return);
    else if (typeof m.error === 'object' && m.error !== null) {
      const e = m.error as { class?: string; desc?: string };
      w.reject(new QemuError(QemuErrorCode.QMP_COMMAND, `QEMU refused ${w.command}: ${e.class ?? 'Error'}: ${e.desc ?? 'no description'}`));
    } else w.reject(new QemuError(QemuErrorCode.QMP_PROTOCOL, `an answer to ${w.command} with neither return nor error: ${line.slice(0, 200)}`));
  }

  private protocolError(what: string): void {
    this.fail(new QemuError(QemuErrorCode.QMP_PROTOCOL, `QEMU sent ${what}`));
    this.socket.destroy();
  }

  private fail(e: QemuError): void {
    if (this.failure) return;
    this.failure = e;
    this.greeted?.reject(e);
    this.greeted = undefined;
    for (const w of this.waiting.values()) {
      clearTimeout(w.timer);
      w.reject(e);
    }
    this.waiting.clear();
  }
}
