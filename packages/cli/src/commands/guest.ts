import { parseArgs } from 'node:util';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { SimulatedGuest, saveImage, DEFAULT_MEMORY_BYTES } from '@colo/domain';
import { ExitCode, UsageError, type Command, type CommandIo } from '../command.js';
import { parseBytes, parseHostPort } from '../config/units.js';

const help = `Usage: colo guest --listen HOST:PORT [--memory SIZE] [--dirty-rate N] [--control HOST:PORT] [--name NAME]

Runs an unprotected simulated guest: a TCP server whose clients talk RESP (redis-cli, redis-benchmark, any
Redis library) to the guest's key-value service, which lives in the guest's memory pages.

Options:
  --listen HOST:PORT    where clients connect (required; port 0 picks a free port, printed on start).
  --memory SIZE         guest memory, e.g. 64MiB, 1GiB (a multiple of 4 KiB, 64 KiB .. 4 GiB). Default 256MiB.
  --dirty-rate N        pages per second the guest's background activity dirties. Default 0.
  --control HOST:PORT   also serve the control API over HTTP:
                          GET /image   a plain libxl v2 save image of the guest (it is paused while saving)
                          GET /status  JSON: name, uuid, pages, state, keys, open connections
  --name NAME           guest name (stored in the image). Default colo-guest.

Prints "guest NAME listening on HOST:PORT" (and "control API on http://HOST:PORT") once ready.
Stops cleanly on SIGINT or SIGTERM.

Exit codes: 0 stopped by a signal, 2 bad usage, 3 cannot listen (address in use, permission).
`;

/** Options shared by `colo guest` and `colo restore` for serving a guest. */
export interface ServeOptions {
  listen: { host: string; port: number };
  control?: { host: string; port: number } | undefined;
}

/** Runs a node:util parseArgs call, turning its errors into UsageError (exit 2, with a pointer to --help). */
export function usage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

export function parseListen(v: string | undefined, flag: string, required: true): { host: string; port: number };
export function parseListen(v: string | undefined, flag: string, required: false): { host: string; port: number } | undefined;
export function parseListen(v: string | undefined, flag: string, required: boolean) {
  if (v === undefined) {
    if (required) throw new UsageError(`${flag} HOST:PORT is required`);
    return undefined;
  }
  const hp = parseHostPort(v);
  if (!hp) throw new UsageError(`${flag} must be HOST:PORT (IPv6 as [::1]:PORT), got '${v}'`);
  return hp;
}

export function parseDirtyRate(v: string | undefined): number {
  if (v === undefined) return 0;
  const n = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v) || !Number.isFinite(n)) throw new UsageError(`--dirty-rate must be a number of pages per second >= 0, got '${v}'`);
  return n;
}

export function parseMemory(v: string | undefined): number {
  if (v === undefined) return DEFAULT_MEMORY_BYTES;
  const n = parseBytes(v);
  if (n === undefined || n % 4096 !== 0 || n < 64 * 1024 || n > 4 * 1024 ** 3) {
    throw new UsageError(`--memory must be a size that is a multiple of 4 KiB between 64KiB and 4GiB (e.g. 256MiB), got '${v}'`);
  }
  return n;
}

function formatAddress(a: AddressInfo): string {
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** Client bytes buffered towards a socket above which the guest stops reading that client (backpressure). */
const OUTPUT_HIGH_WATER = 4 * 1024 * 1024;

/**
 * Serves `guest` until SIGINT/SIGTERM: client sockets map to the guest's connections, and the optional control
 * API streams save images. Resolves with the exit code.
 */
export async function serveGuest(guest: SimulatedGuest, opts: ServeOptions, io: CommandIo): Promise<number> {
  const sockets = new Map<number, Socket>();
  // Connection ids continue after any the guest already has (a restored guest's device state carries ids).
  let nextId = Math.max(0, ...guest.openConnections) + 1;
  guest.onOutput((id, bytes) => {
    const s = sockets.get(id);
    if (!s) return;
    if (bytes === null) {
      s.end();
      return;
    }
    if (!s.write(bytes) && s.writableLength > OUTPUT_HIGH_WATER) s.pause();
  });

  const server: Server = createServer((socket) => {
    const id = nextId++;
    sockets.set(id, socket);
    socket.setNoDelay(true);
    guest.openConnection(id);
    socket.on('data', (d) => guest.deliverInput(id, d));
    socket.on('drain', () => socket.resume());
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      sockets.delete(id);
      guest.closeConnection(id);
    });
  });

  let control: HttpServer | undefined;
  try {
    server.listen(opts.listen.port, opts.listen.host);
    await once(server, 'listening');
    if (opts.control) {
      control = createHttpServer((req, res) => void handleControl(guest, req, res, () => stopping));
      control.listen(opts.control.port, opts.control.host);
      await once(control, 'listening');
    }
  } catch (e) {
    server.close();
    control?.close();
    guest.destroy();
    io.stderr.write(`cannot listen: ${(e as Error).message}\n`);
    return ExitCode.IO;
  }
  io.stdout.write(`guest ${guest.name} listening on ${formatAddress(server.address() as AddressInfo)} (${guest.pageCount} pages, uuid ${guest.uuid})\n`);
  if (control) io.stdout.write(`control API on http://${formatAddress(control.address() as AddressInfo)}\n`);

  let stopping = false;
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const onSignal = (s: NodeJS.Signals) => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(s);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  stopping = true;
  io.stdout.write(`${signal}: stopping guest ${guest.name}\n`);
  for (const s of sockets.values()) s.destroy();
  control?.closeAllConnections();
  await Promise.all([new Promise((r) => server.close(r)), control ? new Promise((r) => control.close(r)) : undefined]);
  guest.destroy();
  return ExitCode.OK;
}

function drainedOrClosed(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** The control API: GET /image and GET /status. */
async function handleControl(guest: SimulatedGuest, req: IncomingMessage, res: ServerResponse, stopping: () => boolean): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method !== 'GET') {
    res.writeHead(405, { allow: 'GET', 'content-type': 'text/plain' }).end('only GET\n');
    return;
  }
  if (path === '/status') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(
      JSON.stringify({ name: guest.name, uuid: guest.uuid, pageCount: guest.pageCount, state: guest.state, keys: guest.keyCount, connections: guest.openConnections.length }) + '\n',
    );
    return;
  }
  if (path !== '/image') {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try GET /image or GET /status\n');
    return;
  }
  // A consistent image needs a paused guest: client input queues meanwhile and is processed on resume.
  const wasRunning = guest.state === 'running';
  if (wasRunning) await guest.suspend();
  try {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-disposition': `attachment; filename="${guest.name}.img"` });
    for await (const chunk of saveImage(guest)) {
      if (!res.write(chunk)) await drainedOrClosed(res);
      if (res.destroyed) break;
    }
    res.end();
  } catch (e) {
    res.destroy(e as Error);
  } finally {
    // The guest may have been destroyed by a shutdown meanwhile; resume only a live, still-paused guest.
    if (wasRunning && (guest.state as string) === 'suspended' && !stopping()) await guest.resume();
  }
}

const command: Command = {
  path: ['guest'],
  summary: 'run an unprotected simulated guest serving RESP clients',
  help,
  async run(argv, io) {
    const { values } = usage(() =>
      parseArgs({
        args: argv,
        strict: true,
        options: { listen: { type: 'string' }, memory: { type: 'string' }, 'dirty-rate': { type: 'string' }, control: { type: 'string' }, name: { type: 'string' } },
      }),
    );
    const listen = parseListen(values.listen, '--listen', true);
    const control = parseListen(values.control, '--control', false);
    const guest = new SimulatedGuest({
      memoryBytes: parseMemory(values.memory),
      backgroundDirtyPagesPerSecond: parseDirtyRate(values['dirty-rate']),
      ...(values.name !== undefined ? { name: values.name } : {}),
    });
    return serveGuest(guest, { listen, control }, io);
  },
};
export default command;
