/**
 * Every failure of a QEMU guest that a caller can act on is a QemuError with a stable `code`: the process would
 * not start, it exited, its QMP monitor did not connect, answer, or refused a command, or the guest's service
 * did not come up in time. Nothing here hangs: every wait has a bound, and its expiry is one of these errors.
 */
export const QemuErrorCode = {
  /** The settings cannot start a guest (missing kernel, bad memory size, unknown accelerator). */
  BAD_CONFIG: 'QEMU_BAD_CONFIG',
  /** The QEMU process could not be started (binary missing, not executable) or died before its monitor came up. */
  START_FAILED: 'QEMU_START_FAILED',
  /** The QEMU process exited (crashed, killed, quit): the guest is gone. */
  EXITED: 'QEMU_EXITED',
  /** The QMP monitor's socket did not accept a connection in time. */
  QMP_CONNECT: 'QEMU_QMP_CONNECT',
  /** QEMU did not answer a QMP command in time (a hung or stopped process). */
  QMP_TIMEOUT: 'QEMU_QMP_TIMEOUT',
  /** QEMU answered a QMP command with an error (its class and description are in the message). */
  QMP_COMMAND: 'QEMU_QMP_COMMAND',
  /** QEMU sent something that is not QMP (not JSON, no greeting, an answer to no question). */
  QMP_PROTOCOL: 'QEMU_QMP_PROTOCOL',
  /** QEMU's migration of the device state (a checkpoint's, or into a restoring machine) failed. */
  MIGRATE_FAILED: 'QEMU_MIGRATE_FAILED',
  /** The guest's service did not answer within the time allowed after boot. */
  GUEST_NOT_READY: 'QEMU_GUEST_NOT_READY',
} as const;
export type QemuErrorCode = (typeof QemuErrorCode)[keyof typeof QemuErrorCode];

export class QemuError extends Error {
  override readonly name = 'QemuError';
  readonly code: QemuErrorCode;
  constructor(code: QemuErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${message} (${code})`, options);
    this.code = code;
  }
}
