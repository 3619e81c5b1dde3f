import { noop } from 'cockatiel';
import { NODE_DEFAULTS } from '../defaults.js';
import {
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdPermissionDeniedError,
  EtcdUserNotFoundError,
  GRPCUnauthenticatedError,
  type IOptions,
} from 'etcd3';
import { type Arbiter, type EpochExpectation, type EpochRecord, type SwapResult } from './arbiter.js';
import { ArbiterError, ArbiterErrorCode } from './errors.js';
import { parseRecord } from './record.js';

/**
 * The `etcd` arbiter: the pair's record is two keys in an etcd cluster both hosts reach,
 * `<prefix>/pairs/<pair>/epoch` (the number) and `.../holder` (a node id, or `pair`). A compare-and-swap is one
 * etcd transaction: if the epoch key holds the expected epoch (and the holder key the expected holder, when one
 * is expected; or, expecting no record, the epoch key was never created), write both keys; otherwise read
 * them back. etcd applies transactions one at a time, so of two nodes asking from the same epoch exactly one
 * succeeds, whatever their clocks say or however long either paused; and a decision costs one round trip. The
 * keys carry no lease: they must never expire, or a stale former primary could register again.
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
  timeoutMs?: number;
}

const PAIR_NAME = /^[A-Za-z0-9._-]{1,128}$/;

export class EtcdArbiter implements Arbiter {
  readonly kind = 'etcd';
  readonly where: string;
  /** The pair's keys: its epoch and who holds it. */
  readonly epochKey: string;
  readonly holderKey: string;
  private readonly base: string;
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
    this.base = `${(options.prefix ?? '/colo').replace(/\/+$/, '')}/pairs/${options.pair}/`;
    this.epochKey = `${this.base}epoch`;
    this.holderKey = `${this.base}holder`;
    this.where = `${options.endpoints.join(',')} ${this.base}`;
    const timeoutMs = options.timeoutMs ?? NODE_DEFAULTS.arbiter.timeoutMs;
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
    const res = await this.call(() => this.client.getAll().prefix(this.base).exec());
    return this.recordOf(res.kvs);
  }

  async compareAndSwap(expect: EpochExpectation, next: EpochRecord): Promise<SwapResult> {
    let txn =
      expect === null ? this.client.if(this.epochKey, 'Create', '==', 0) : this.client.if(this.epochKey, 'Value', '==', String(expect.epoch));
    if (expect?.holder !== undefined) txn = txn.and(this.holderKey, 'Value', '==', expect.holder);
    const result = await this.call(() =>
      txn
        .then(this.client.put(this.epochKey).value(String(next.epoch)), this.client.put(this.holderKey).value(next.holder))
        .else(this.client.getAll().prefix(this.base))
        .commit(),
    );
    if (result.succeeded) return { swapped: true, current: { epoch: next.epoch, holder: next.holder } };
    return { swapped: false, current: this.recordOf(result.responses[0]?.response_range?.kvs ?? []) };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
  }

  /** The record the two keys hold; none when neither exists; CORRUPT_RECORD for anything colo did not write. */
  private recordOf(kvs: { key: Buffer; value: Buffer }[]): EpochRecord | null {
    const value = (key: string) => kvs.find((kv) => kv.key.toString('utf8') === key)?.value.toString('utf8');
    const [epoch, holder] = [value(this.epochKey), value(this.holderKey)];
    if (epoch === undefined && holder === undefined) return null;
    if (epoch === undefined || !/^\d{1,15}$/.test(epoch)) {
      throw new ArbiterError(ArbiterErrorCode.CORRUPT_RECORD, `${this.epochKey} holds ${JSON.stringify(epoch?.slice(0, 100) ?? null)}, not an epoch colo wrote`);
    }
    return parseRecord({ epoch: Number(epoch), holder }, this.base);
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
  // gRPC reports a TLS handshake that failed on a certificate (ours refused by the member, or the member's not
  // signed by arbiter.tls_ca) as UNAVAILABLE; it is a credentials problem, which retrying does not fix.
  if (/bad certificate|certificate (unknown|required|revoked|expired)|unable to verify|self[- ]signed|unknown ca/i.test(err?.message ?? '')) {
    return new ArbiterError(ArbiterErrorCode.AUTH, `TLS with etcd at ${where} failed on a certificate: ${err.message.split('\n')[0]}; check arbiter.tls_ca, tls_cert and tls_key`, { cause: e });
  }
  return new ArbiterError(ArbiterErrorCode.UNREACHABLE, `etcd at ${where} did not answer: ${err?.message ?? String(e)}`, { cause: e });
}
