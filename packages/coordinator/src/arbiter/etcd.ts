import { noop } from 'cockatiel';
import {
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdPermissionDeniedError,
  EtcdUserNotFoundError,
  GRPCUnauthenticatedError,
  type IOptions,
} from 'etcd3';
import { matchesExpectation, type Arbiter, type EpochExpectation, type EpochRecord, type SwapResult } from './arbiter.js';
import { ArbiterError, ArbiterErrorCode } from './errors.js';
import { parseRecord } from './record.js';

/**
 * The `etcd` arbiter: the pair's record is one key in an etcd cluster both hosts reach
 * (`<prefix>/pairs/<pair>/epoch`, a JSON {epoch, holder}). A compare-and-swap reads the key and its revision,
 * checks the expectation, and writes in a transaction guarded by that revision (or by the key's absence): etcd
 * applies it only if nobody wrote in between, so of two nodes asking from the same epoch exactly one succeeds,
 * whatever their clocks say or however long either paused. The key carries no lease: it must never expire, or a
 * stale former primary could register again.
 */
export interface EtcdArbiterOptions {
  /** Client URLs of the cluster's members, e.g. ['https://10.0.0.1:2379', ...]. */
  endpoints: string[];
  /** The pair's name in the key space (letters, digits, '.', '_', '-'). */
  pair: string;
  /** Key prefix. Default '/colo'. */
  prefix?: string;
  /** TLS: the CA that signed the members' certificates; cert and key for client-certificate authentication. */
  tls?: { ca: Buffer; cert?: Buffer; key?: Buffer };
  /** etcd's own users (`etcdctl user add`). */
  auth?: { username: string; password: string };
  /** Longest wait for one request; past it the request counts as unanswered and the node asks again. Default 2 s. */
  requestTimeoutMs?: number;
}

const PAIR_NAME = /^[A-Za-z0-9._-]{1,128}$/;
/** Writers racing on the key make a swap read again; a bound keeps a pathological race from spinning forever. */
const MAX_RACES = 32;

export class EtcdArbiter implements Arbiter {
  readonly kind = 'etcd';
  readonly where: string;
  /** The pair's key. */
  readonly key: string;
  private readonly client: Etcd3;
  private closed = false;

  constructor(options: EtcdArbiterOptions) {
    if (options.endpoints.length === 0) throw new ArbiterError(ArbiterErrorCode.BAD_CONFIG, 'the etcd arbiter needs at least one endpoint (http(s)://host:2379)');
    for (const e of options.endpoints) {
      if (!/^https?:\/\/[^\s/]+(:\d+)?\/?$/.test(e)) throw new ArbiterError(ArbiterErrorCode.BAD_CONFIG, `${JSON.stringify(e)} is not an etcd client URL (http(s)://host:port)`);
    }
    const tls = options.tls !== undefined;
    if (options.endpoints.some((e) => e.startsWith('https:') !== tls)) {
      throw new ArbiterError(ArbiterErrorCode.BAD_CONFIG, tls ? 'with TLS settings every endpoint must be https://' : 'https:// endpoints need the TLS settings (the CA at least)');
    }
    if (!PAIR_NAME.test(options.pair)) throw new ArbiterError(ArbiterErrorCode.BAD_CONFIG, `pair name ${JSON.stringify(options.pair)}: use letters, digits, '.', '_' or '-'`);
    this.key = `${(options.prefix ?? '/colo').replace(/\/+$/, '')}/pairs/${options.pair}/epoch`;
    this.where = `${options.endpoints.join(',')} ${this.key}`;
    const timeoutMs = options.requestTimeoutMs ?? 2000;
    const clientOptions: IOptions = {
      hosts: options.endpoints,
      dialTimeout: timeoutMs,
      // Every request has a deadline: an unreachable cluster is an answer the node acts on (it holds and asks
      // again), never a hang.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeoutMs }),
      // The node's Arbitration retries; the client's own retries and circuit breaker would only add delay (a
      // breaker refuses calls for seconds after the cluster is back).
      faultHandling: { host: () => noop, global: noop },
    };
    if (options.tls) clientOptions.credentials = { rootCertificate: options.tls.ca, certChain: options.tls.cert, privateKey: options.tls.key };
    if (options.auth) clientOptions.auth = { ...options.auth, callOptions: () => ({ deadline: Date.now() + timeoutMs }) };
    this.client = new Etcd3(clientOptions);
  }

  async read(): Promise<EpochRecord | null> {
    return (await this.readRevision()).record;
  }

  async compareAndSwap(expect: EpochExpectation, next: EpochRecord): Promise<SwapResult> {
    const value = JSON.stringify({ epoch: next.epoch, holder: next.holder });
    for (let race = 0; race < MAX_RACES; race++) {
      const { record, modRevision } = await this.readRevision();
      if (!matchesExpectation(record, expect)) return { swapped: false, current: record };
      const guard = modRevision === null ? this.client.if(this.key, 'Create', '==', 0) : this.client.if(this.key, 'Mod', '==', modRevision);
      const result = await this.call(() => guard.then(this.client.put(this.key).value(value)).commit());
      if (result.succeeded) return { swapped: true, current: { epoch: next.epoch, holder: next.holder } };
      // Someone wrote the key between the read and the transaction: look again (the expectation may still hold,
      // e.g. the same epoch recorded for the pair).
    }
    throw new ArbiterError(ArbiterErrorCode.UNREACHABLE, `the pair's key ${this.key} changed under ${MAX_RACES} attempts in a row`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
  }

  private async readRevision(): Promise<{ record: EpochRecord | null; modRevision: string | null }> {
    const res = await this.call(() => this.client.get(this.key).exec());
    const kv = res.kvs[0];
    if (!kv) return { record: null, modRevision: null };
    let parsed: unknown;
    try {
      parsed = JSON.parse(kv.value.toString('utf8'));
    } catch (e) {
      throw new ArbiterError(ArbiterErrorCode.CORRUPT_RECORD, `${this.key} does not hold JSON: ${kv.value.toString('utf8').slice(0, 100)}`, { cause: e });
    }
    return { record: parseRecord(parsed, this.key), modRevision: kv.mod_revision };
  }

  private async call<T>(request: () => Promise<T>): Promise<T> {
    if (this.closed) throw new ArbiterError(ArbiterErrorCode.CLOSED, 'the etcd arbiter client was closed');
    try {
      return await request();
    } catch (e) {
      throw asArbiterError(e, this.where);
    }
  }
}

/** etcd's failures as the arbiter's: credentials refused are AUTH; everything else is an unanswered request. */
function asArbiterError(e: unknown, where: string): ArbiterError {
  if (e instanceof ArbiterError) return e;
  const err = e as Error;
  if (
    e instanceof EtcdAuthenticationFailedError ||
    e instanceof EtcdInvalidAuthTokenError ||
    e instanceof EtcdPermissionDeniedError ||
    e instanceof EtcdUserNotFoundError ||
    e instanceof GRPCUnauthenticatedError
  ) {
    return new ArbiterError(ArbiterErrorCode.AUTH, `etcd at ${where} refused this node's credentials: ${err.message}; check arbiter.username/password and the user's role`, { cause: e });
  }
  return new ArbiterError(ArbiterErrorCode.UNREACHABLE, `etcd at ${where} did not answer: ${err?.message ?? String(e)}`, { cause: e });
}
