import type { WebSocket } from 'ws';
import { LinkError, LinkErrorCode } from './errors.js';
import { CHANNELS, isLinkRefusal, parseHello, PROTOCOL_VERSION, type Channel, type Hello, type LinkRefusal } from './hello.js';
import type { HandshakeReader } from './handshake-reader.js';
import { decodeMessage, encodeMessage } from './messages.js';
import { newNonce, proofMatches, pskProof } from './psk.js';

/**
 * The two halves of the link handshake: mutual pre-shared-key authentication, then the hello exchange.
 * Nothing else moves until both are done, so an unauthenticated peer never sees a stream byte and never gets
 * one accepted. See docs/transport.md for the message sequence.
 */
export interface HandshakeResult {
  localHello: Hello;
  peerHello: Hello;
  /** Stream frames that arrived right behind the last handshake message. */
  early: Buffer[];
}

export interface ListenerHandshakeOptions {
  psk: Uint8Array | undefined;
  /** Deadline of each phase (authentication, hello). */
  timeoutMs: number;
  hello: (peer: Hello) => Hello | LinkRefusal;
}

export async function listenerHandshake(
  ws: WebSocket,
  reader: HandshakeReader,
  opts: ListenerHandshakeOptions,
): Promise<HandshakeResult> {
  const serverNonce = newNonce();
  ws.send(encodeMessage({ t: 'challenge', v: PROTOCOL_VERSION, nonce: serverNonce.toString('hex'), psk: !!opts.psk }));

  const auth = decodeMessage(await reader.next(opts.timeoutMs, 'authentication'), 'auth');
  if (!CHANNELS.includes(auth.channel as Channel)) {
    throw new LinkError(LinkErrorCode.PROTOCOL, `the peer asked for an unknown channel ${JSON.stringify(auth.channel)}`);
  }
  const channel = auth.channel as Channel;
  const clientNonce = Buffer.from(auth.nonce, 'hex');
  let serverProof: string | null = null;
  if (opts.psk) {
    if (auth.proof === null) {
      throw new LinkError(
        LinkErrorCode.AUTH_MISSING,
        'the peer has no pre-shared key but this node requires one; configure the same key on both nodes',
      );
    }
    const expected = pskProof(opts.psk, 'client', channel, serverNonce, clientNonce);
    if (!proofMatches(expected, Buffer.from(auth.proof, 'hex'))) {
      throw new LinkError(
        LinkErrorCode.AUTH_FAILED,
        'the peer proved a different pre-shared key; configure the same key on both nodes',
      );
    }
    serverProof = pskProof(opts.psk, 'server', channel, serverNonce, clientNonce).toString('hex');
  }
  ws.send(encodeMessage({ t: 'auth-ok', proof: serverProof }));

  const peerHello = parseHello(decodeMessage(await reader.next(opts.timeoutMs, 'hello'), 'hello').hello);
  if (peerHello.channel !== channel) {
    throw new LinkError(LinkErrorCode.PROTOCOL, `the peer authenticated for '${channel}' but said hello for '${peerHello.channel}'`);
  }
  let answer: Hello | LinkRefusal;
  try {
    answer = opts.hello(peerHello);
  } catch (e) {
    throw new LinkError(LinkErrorCode.REFUSED, `the hello callback failed: ${(e as Error).message}`, { cause: e });
  }
  if (isLinkRefusal(answer)) throw new LinkError(answer.code, answer.refuse);
  ws.send(encodeMessage({ t: 'hello', hello: answer }));
  return { localHello: answer, peerHello, early: reader.detach() };
}

export interface DialerHandshakeOptions {
  psk: Uint8Array | undefined;
  /** True when TLS verified the listener's certificate against our CA: then the listener need not prove a key. */
  tlsVerifiedListener: boolean;
  hello: Hello;
  /** When the whole handshake must be done (Date.now() scale). */
  deadline: number;
}

export async function dialerHandshake(
  ws: WebSocket,
  reader: HandshakeReader,
  opts: DialerHandshakeOptions,
): Promise<HandshakeResult> {
  const left = () => Math.max(1, opts.deadline - Date.now());
  const challenge = decodeMessage(await reader.next(left(), 'challenge'), 'challenge');
  if (challenge.v !== PROTOCOL_VERSION) {
    throw new LinkError(
      LinkErrorCode.VERSION_MISMATCH,
      `the listener speaks colo link protocol ${challenge.v}, this node speaks ${PROTOCOL_VERSION}; run the same colo release on both nodes`,
    );
  }
  const serverNonce = Buffer.from(challenge.nonce, 'hex');
  const clientNonce = newNonce();
  const channel = opts.hello.channel;
  const proof = opts.psk ? pskProof(opts.psk, 'client', channel, serverNonce, clientNonce).toString('hex') : null;
  ws.send(encodeMessage({ t: 'auth', channel, nonce: clientNonce.toString('hex'), proof }));

  const ok = decodeMessage(await reader.next(left(), 'authentication'), 'auth-ok');
  if (opts.psk) {
    if (ok.proof === null) {
      throw new LinkError(
        LinkErrorCode.AUTH_MISSING,
        'the listener has no pre-shared key and so cannot prove it knows ours; configure the same key on both nodes',
      );
    }
    const expected = pskProof(opts.psk, 'server', channel, serverNonce, clientNonce);
    if (!proofMatches(expected, Buffer.from(ok.proof, 'hex'))) {
      throw new LinkError(
        LinkErrorCode.AUTH_FAILED,
        'the listener proved a different pre-shared key; configure the same key on both nodes',
      );
    }
  } else if (!opts.tlsVerifiedListener) {
    throw new LinkError(
      LinkErrorCode.AUTH_MISSING,
      'nothing authenticates the listener: configure a pre-shared key, or mutual TLS with a CA',
    );
  }

  ws.send(encodeMessage({ t: 'hello', hello: opts.hello }));
  const peerHello = parseHello(decodeMessage(await reader.next(left(), 'hello'), 'hello').hello);
  if (peerHello.channel !== channel) {
    throw new LinkError(LinkErrorCode.PROTOCOL, `asked for channel '${channel}', the listener answered for '${peerHello.channel}'`);
  }
  return { localHello: opts.hello, peerHello, early: reader.detach() };
}
