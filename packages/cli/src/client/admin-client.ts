/** Calls a node's admin HTTP API (docs/operations.md). */

export class AdminClientError extends Error {
  override readonly name = 'AdminClientError';
  readonly code: 'ADMIN_UNREACHABLE' | 'ADMIN_UNAUTHORIZED' | 'ADMIN_FAILED';
  readonly status: number | undefined;
  constructor(code: AdminClientError['code'], message: string, status?: number) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/** The node status document served at GET /status (fields every node provides). */
export interface NodeStatusDoc {
  nodeId: string;
  role: 'primary' | 'secondary' | 'fenced' | 'stopped' | string;
  state: string;
  mode: string;
  epoch: number;
  protected: boolean;
  /** Checkpointing into nothing (remus.blackhole): never protected. */
  blackhole?: boolean;
  peer?: string | null;
  service?: { host: string; port: number } | null;
  /** durationSeconds: trigger to completion; pauseSeconds: what the guest sees (the colo_checkpoint_duration_seconds histogram). */
  lastCheckpoint?: { seq: number; reason: string; at: string; durationSeconds: number; pauseSeconds?: number; pages: number; bytes: number } | null;
  checkpoints?: Record<string, number>;
  /** Why the node does not protect the guest now; null when it does. */
  reason?: string | null;
  [k: string]: unknown;
}

export function normaliseNodeUrl(u: string): string {
  const withScheme = /^https?:\/\//.test(u) ? u : `http://${u}`;
  return withScheme.replace(/\/+$/, '');
}

async function call(url: string, init: RequestInit & { timeoutMs?: number }): Promise<Response> {
  try {
    return await fetch(url, { ...init, signal: AbortSignal.timeout(init.timeoutMs ?? 5000) });
  } catch (e) {
    throw new AdminClientError('ADMIN_UNREACHABLE', `cannot reach ${url}: ${(e as Error).cause ? String((e as Error & { cause: Error }).cause.message ?? (e as Error).cause) : (e as Error).message}`);
  }
}

export async function getStatus(node: string, timeoutMs?: number): Promise<NodeStatusDoc> {
  const url = `${normaliseNodeUrl(node)}/status`;
  // One retry: a pooled keep-alive connection the node already closed fails at once ("other side closed")
  // when the caller's event loop was busy; a GET is safe to repeat.
  const res = await call(url, { timeoutMs }).catch(() => call(url, { timeoutMs }));
  if (!res.ok) throw new AdminClientError('ADMIN_FAILED', `${node}/status answered ${res.status}`, res.status);
  return (await res.json()) as NodeStatusDoc;
}

export async function postAction(node: string, action: 'checkpoint' | 'failover' | 'crash', token: string | undefined, timeoutMs = 30_000): Promise<unknown> {
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const res = await call(`${normaliseNodeUrl(node)}/${action}`, { method: 'POST', headers, timeoutMs });
  const body = await res.text();
  if (res.status === 401 || res.status === 403) {
    throw new AdminClientError('ADMIN_UNAUTHORIZED', `${node} refused ${action}: ${res.status} (give the admin token with --token-file or COLO_ADMIN_TOKEN)`, res.status);
  }
  if (!res.ok) throw new AdminClientError('ADMIN_FAILED', `${node} ${action} failed: ${res.status} ${body.trim()}`, res.status);
  try {
    return JSON.parse(body);
  } catch {
    return body;
  }
}
