import type { Domain } from '@colo/domain';
import type { ConnectionId } from './types.js';

/** The three Domain calls that hand a guest its clients' events. */
export interface GuestInput {
  open(conn: ConnectionId): void;
  deliver(conn: ConnectionId, bytes: Uint8Array): void;
  close(conn: ConnectionId): void;
}

/**
 * The guest's input methods, looked up once. The node gives the proxies a Domain wrapped in a JS Proxy (to hook
 * suspend/resume) whose every method lookup binds a new function; the proxies call these once per client event.
 */
export function guestInput(domain: Domain): GuestInput {
  const open = domain.openConnection;
  const deliver = domain.deliverInput;
  const close = domain.closeConnection;
  return {
    open: (conn) => open.call(domain, conn),
    deliver: (conn, bytes) => deliver.call(domain, conn, bytes),
    close: (conn) => close.call(domain, conn),
  };
}
