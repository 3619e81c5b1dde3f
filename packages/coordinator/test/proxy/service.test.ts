import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ProxyErrorCode, ServiceListener, type InputKind } from '../../src/proxy/index.js';

type Ev = { conn: number; kind: InputKind; text?: string };

const listeners: ServiceListener[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const l of listeners.splice(0)) await l.close();
});

async function start(opts: { maxPendingOutputBytes?: number; firstConnectionId?: number; guestCloseLingerMs?: number } = {}) {
  const events: Ev[] = [];
  const waiters: { pred: (e: Ev[]) => boolean; resolve: () => void }[] = [];
  const service = new ServiceListener({
    ...opts,
    onEvent: (conn, kind, bytes) => {
      events.push(bytes ? { conn, kind, text: Buffer.from(bytes).toString() } : { conn, kind });
      for (const w of waiters.splice(0)) if (w.pred(events)) w.resolve();
        else waiters.push(w);
    },
  });
  listeners.push(service);
  const address = await service.listen();
  const until = (pred: (e: Ev[]) => boolean) =>
    pred(events) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ pred, resolve }));
  return { service, address, events, until };
}

async function client(port: number): Promise<Socket> {
  const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  sockets.push(s);
  await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
  return s;
}

function received(s: Socket): { text: () => string; ended: Promise<void> } {
  let text = '';
  s.on('data', (d: Buffer) => (text += d.toString()));
  const ended = new Promise<void>((resolve) => s.once('end', resolve));
  return { text: () => text, ended };
}

const dataOf = (events: Ev[], conn: number) => events.filter((e) => e.conn === conn && e.kind === 'data').map((e) => e.text).join('');

describe('ServiceListener (real sockets on loopback)', { timeout: 10_000 }, () => {
  it('gives each client a new id, in accept order, never reusing one, and reports open, data in order, close', async () => {
    const { address, events, until } = await start({ firstConnectionId: 10 });
    const a = await client(address.port);
    await until((e) => e.some((x) => x.conn === 10 && x.kind === 'open'));
    const b = await client(address.port);
    await until((e) => e.some((x) => x.conn === 11 && x.kind === 'open'));
    for (let i = 0; i < 50; i++) a.write(`a${i};`);
    b.write('hello');
    const expectedA = Array.from({ length: 50 }, (_, i) => `a${i};`).join('');
    await until((e) => dataOf(e, 10) === expectedA && dataOf(e, 11) === 'hello');
    a.destroy();
    await until((e) => e.some((x) => x.conn === 10 && x.kind === 'close'));
    const c = await client(address.port);
    await until((e) => e.some((x) => x.conn === 12 && x.kind === 'open'));
    c.end();
    b.end();
    await until((e) => e.filter((x) => x.kind === 'close').length === 3);
    for (const conn of [10, 11, 12]) {
      const kinds = events.filter((e) => e.conn === conn).map((e) => e.kind);
      expect(kinds[0]).toBe('open');
      expect(kinds.at(-1)).toBe('close');
      expect(kinds.filter((k) => k === 'open' || k === 'close').length).toBe(2);
    }
  });

  it('writes output to the right client and ends it when the guest closes the connection', async () => {
    const { service, address, until } = await start();
    const a = await client(address.port);
    const b = await client(address.port);
    const ra = received(a);
    const rb = received(b);
    await until((e) => e.filter((x) => x.kind === 'open').length === 2);
    service.write(1, Buffer.from('+for-a\r\n'));
    service.write(2, Buffer.from('+for-b\r\n'));
    service.write(1, null);
    await ra.ended;
    expect(ra.text()).toBe('+for-a\r\n');
    a.end(); // the client closes its side in turn
    await until((e) => e.some((x) => x.conn === 1 && x.kind === 'close'));
    service.write(2, Buffer.from('+more\r\n'));
    await new Promise<void>((r) => setTimeout(r, 20));
    expect(rb.text()).toBe('+for-b\r\n+more\r\n');
    // Output for a client that is gone is dropped, not an error.
    service.write(1, Buffer.from('late'));
    expect(service.counters.outputToGoneClient).toBeGreaterThanOrEqual(1);
    void rb;
  });

  it('a client that half-closes after its request still gets the reply written later', async () => {
    const { service, address, until } = await start();
    const a = await client(address.port);
    const ra = received(a);
    a.end('PING\r\n');
    await until((e) => e.some((x) => x.kind === 'close'));
    service.write(1, Buffer.from('+PONG\r\n'));
    service.write(1, null);
    await ra.ended;
    expect(ra.text()).toBe('+PONG\r\n');
  });

  it('a client that never closes after the guest closed is cut off after the linger time', async () => {
    const { service, address, until } = await start({ guestCloseLingerMs: 50 });
    const a = await client(address.port);
    const ra = received(a);
    await until((e) => e.length === 1);
    service.write(1, null);
    await ra.ended;
    // The client keeps its side open (allowHalfOpen); the service gives up on it and reports the close.
    await until((e) => e.some((x) => x.kind === 'close'));
    expect(service.connectionCount).toBe(0);
  });

  it('a reset client is reported closed exactly once', async () => {
    const { address, events, until } = await start();
    const a = await client(address.port);
    await until((e) => e.length === 1);
    a.resetAndDestroy();
    await until((e) => e.some((x) => x.kind === 'close'));
    await new Promise<void>((r) => setTimeout(r, 20));
    expect(events.filter((e) => e.kind === 'close').length).toBe(1);
  });

  it('stops reading a slow client whose replies pile up, and resumes once it reads them', async () => {
    const { service, address, until, events } = await start({ maxPendingOutputBytes: 64 * 1024 });
    const slow = await client(address.port);
    slow.pause();
    await until((e) => e.length === 1);
    const chunk = Buffer.alloc(64 * 1024, 'x');
    // Loopback kernel buffers can absorb several MiB before the socket's own buffer grows: write up to 64 MiB.
    for (let i = 0; i < 1024 && !service.isPausedForOutput(1); i++) {
      service.write(1, chunk);
      await new Promise<void>((r) => setImmediate(r));
    }
    expect(service.isPausedForOutput(1)).toBe(true);
    expect(service.counters.outputBackpressurePauses).toBe(1);
    slow.write('request while paused');
    await new Promise<void>((r) => setTimeout(r, 50));
    expect(dataOf(events, 1)).toBe('');
    // Reading the replies drains the socket: the client's request is read at last.
    slow.resume();
    await until((e) => dataOf(e, 1) === 'request while paused');
    expect(service.isPausedForOutput(1)).toBe(false);
  });

  it('close() closes every client and stops accepting', async () => {
    const { service, address, until, events } = await start();
    const a = await client(address.port);
    const ra = received(a);
    await until((e) => e.length === 1);
    await service.close();
    await ra.ended;
    expect(service.connectionCount).toBe(0);
    const refused = connect({ port: address.port, host: '127.0.0.1' });
    sockets.push(refused);
    const err = await new Promise<NodeJS.ErrnoException>((r) => refused.once('error', r));
    expect(err.code).toBe('ECONNREFUSED');
    expect(events.length).toBe(1); // no events reported after close()
  });

  it('an event handler that throws disconnects that client only, and the listener keeps serving', async () => {
    const errors: number[] = [];
    const service = new ServiceListener({
      onEvent: (_conn, kind, bytes) => {
        if (kind === 'data' && Buffer.from(bytes!).toString() === 'boom') throw new Error('guest refused');
      },
      onEventError: (conn) => errors.push(conn),
    });
    listeners.push(service);
    const { port } = await service.listen();
    const bad = await client(port);
    const good = await client(port);
    const closed = new Promise<void>((r) => bad.once('end', () => r()));
    bad.write('boom');
    await closed;
    expect(errors).toEqual([1]);
    expect(service.counters.eventErrors).toBe(1);
    good.write('fine');
    await new Promise<void>((r) => setTimeout(r, 20));
    expect(service.connectionCount).toBe(1);
  });

  it('refuses to listen on an address in use with a typed error', async () => {
    const { address } = await start();
    const second = new ServiceListener({ port: address.port, onEvent: () => {} });
    await expect(second.listen()).rejects.toMatchObject({ code: ProxyErrorCode.LISTEN_FAILED });
  });
});
