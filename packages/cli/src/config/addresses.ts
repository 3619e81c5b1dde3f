import { isIP } from 'node:net';

/**
 * Whether a host (an address or a name) is this machine's loopback: 127.0.0.0/8, ::1, or `localhost`. Any other
 * name counts as another host, since a name may resolve anywhere; 0.0.0.0 and :: listen on every interface.
 */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1';
  return false;
}
