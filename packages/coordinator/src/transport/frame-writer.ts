/**
 * RFC 6455 frame headers as colo writes them. A server's frames go unmasked; a client's carry the mask bit and a
 * zero masking key, so the payload travels as it is and needs no copy (RFC 6455 masks client frames so that bytes
 * a script chooses cannot pose as HTTP to a transparent proxy's cache; both ends of a colo link are colo nodes
 * that authenticated each other, no HTTP intermediary takes part, and wss hides the bytes anyway).
 */
import type { FrameSender } from './frame-reader.js';

const FIN = 0x80;

/** The header of one final frame of `opcode` carrying `length` payload bytes, as `sender` writes it. */
export function frameHeader(opcode: number, length: number, sender: FrameSender): Buffer {
  const ext = length < 126 ? 0 : length < 0x10000 ? 2 : 8;
  const key = sender === 'client' ? 4 : 0;
  // Zeroed: the masking key, when there is one, is all zero.
  const h = Buffer.alloc(2 + ext + key);
  h[0] = FIN | opcode;
  h[1] = (key ? 0x80 : 0) | (ext === 0 ? length : ext === 2 ? 126 : 127);
  if (ext === 2) h.writeUInt16BE(length, 2);
  else if (ext === 8) {
    h.writeUInt32BE(Math.floor(length / 0x100000000), 2);
    h.writeUInt32BE(length >>> 0, 6);
  }
  return h;
}

/** A whole control frame (ping, pong, close: at most 125 payload bytes), header and payload in one buffer. */
export function controlFrame(opcode: number, payload: Buffer, sender: FrameSender): Buffer {
  return Buffer.concat([frameHeader(opcode, payload.length, sender), payload]);
}
