import { LinkError, LinkErrorCode } from './errors.js';

/**
 * Classifies an error emitted by a ws socket. TLS verification failures (our own or the peer's alert) become
 * LINK_TLS_FAILED, ws's frame parser errors (oversize frame, bad opcode, bad UTF-8) become LINK_PROTOCOL, the
 * rest (refused, reset, unreachable) LINK_SOCKET_ERROR.
 */
export function errorFromSocket(err: Error & { code?: string }): LinkError {
  const code = err.code ?? '';
  if (code.startsWith('WS_ERR_')) {
    return new LinkError(LinkErrorCode.PROTOCOL, `the peer broke the WebSocket protocol: ${err.message}`, {
      cause: err,
    });
  }
  if (
    code.startsWith('ERR_SSL_') ||
    code.startsWith('ERR_TLS_') ||
    /CERT|UNABLE_TO_VERIFY|SELF_SIGNED|DEPTH_ZERO|UNABLE_TO_GET_ISSUER/.test(code) ||
    /alert|certificate|ssl/i.test(err.message)
  ) {
    return new LinkError(
      LinkErrorCode.TLS_FAILED,
      `TLS with the peer failed (${err.message}); check that both nodes' certificates are signed by the CA the other trusts`,
      { cause: err },
    );
  }
  return new LinkError(LinkErrorCode.SOCKET_ERROR, `the connection to the peer failed: ${err.message}`, {
    cause: err,
  });
}
