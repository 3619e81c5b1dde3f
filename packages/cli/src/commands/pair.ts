import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ExitCode, UsageError, type Command } from '../command.js';
import { usageErrors } from '../args.js';
import { PairInUseError, PairSupervisor } from '../pair/supervisor.js';
import { formatSync } from '../client/sync-progress.js';
import type { NodeStatusDoc } from '../client/admin-client.js';

const help = `Usage: colo pair [options]

Runs both nodes of a pair on this machine as two separate processes (the embedded default; \`npm start\`):
node A starts as primary with an empty simulated guest, node B as its secondary. Shows the initial
synchronisation, then the service address, the metrics and status URLs and commands to try. If a node process
dies (e.g. \`colo drill\` crashes the primary), it is started again as a secondary of the surviving primary.
Ctrl-C stops both.

Options:
  --mode colo|remus     replication mode (default colo)
  --arbiter local|etcd|none
                        who decides which node acts alone when they lose each other (default local: this
                        process, over a unix socket in DIR; etcd: the etcd at --etcd; none: nobody, a
                        frozen primary may serve beside the promoted secondary and lose acknowledged writes)
  --etcd URLS           with --arbiter etcd: the client URLs of an etcd you started, comma separated
                        (e.g. http://127.0.0.1:2379); the pair's key is /colo/pairs/colo-pair-<random>/epoch
  --memory SIZE         guest memory (default 64MiB; 128MiB with --guest qemu)
  --guest simulated|qemu
                        the guest: the embedded simulated one (default), or a QEMU virtual machine with
                        Linux and redis-server inside (Remus mode only; npm run tools builds it into
                        .tools/guest). Its service is forwarded to 127.0.0.1:16379 and :16380 for the nodes.
  --kernel FILE, --initrd FILE
                        with --guest qemu: the guest to boot (default .tools/guest/vmlinuz, initramfs.img)
  --accel kvm|tcg       with --guest qemu: the accelerator (default kvm; tcg where KVM cannot run)
  --blackhole           with --mode remus: node A alone, checkpointing into nothing (Xen's \`xl remus -b\`):
                        every checkpoint's cost, and output held and released as in a pair, without a
                        second node. NOT protected: for measuring what protection would cost a workload
  --dirty-rate N        background pages dirtied per second by the guest (default 0)
  --host ADDR           address every port binds to (default 127.0.0.1)
  --service-port N      node A's client service port; node B uses N+1 (default 6380)
  --admin-port N        node A's admin/metrics port; node B uses N+1 (default 9464)
  --replication-port N  node A's replication port; node B uses N+1 (default 7800)
  --dir DIR             where configs, key, token and logs go (default .colo-pair)
  --log-level LEVEL     node log level (default info; logs go to DIR/node-*.log)
  --json                print the ready banner as one JSON line (for scripts)

Exit codes: 0 stopped by Ctrl-C/SIGTERM, 1 the pair failed to start, 2 bad usage, 3 another pair runs in --dir or a
port it needs is taken (nothing is written then: the running pair's key and token stay).
`;

function port(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65534) throw new UsageError(`--${name} must be a port number, not ${JSON.stringify(v)}`);
  return n;
}

const command: Command = {
  path: ['pair'],
  summary: 'run a primary/secondary pair on this machine (npm start)',
  help,
  async run(argv, io) {
    const { values } = usageErrors(() => parseArgs({ args: argv, strict: true, options: {
      mode: { type: 'string', default: 'colo' },
      arbiter: { type: 'string', default: 'local' },
      etcd: { type: 'string' },
      memory: { type: 'string' },
      guest: { type: 'string', default: 'simulated' },
      kernel: { type: 'string', default: '.tools/guest/vmlinuz' },
      initrd: { type: 'string', default: '.tools/guest/initramfs.img' },
      accel: { type: 'string', default: 'kvm' },
      'dirty-rate': { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      'service-port': { type: 'string', default: '6380' },
      'admin-port': { type: 'string', default: '9464' },
      'replication-port': { type: 'string', default: '7800' },
      dir: { type: 'string', default: '.colo-pair' },
      'log-level': { type: 'string', default: 'info' },
      'sync-timeout': { type: 'string', default: '120' },
      json: { type: 'boolean' },
      blackhole: { type: 'boolean' },
    } }));
    if (values.blackhole && values.mode !== 'remus') throw new UsageError('--blackhole is a Remus mode: add --mode remus');
    if (values.blackhole && values.arbiter !== 'local') throw new UsageError('--blackhole runs one node: there is nothing for an arbiter to decide');
    if (values.mode !== 'colo' && values.mode !== 'remus') throw new UsageError('--mode must be colo or remus');
    if (values.guest !== 'simulated' && values.guest !== 'qemu') throw new UsageError('--guest must be simulated or qemu');
    if (values.accel !== 'kvm' && values.accel !== 'tcg') throw new UsageError('--accel must be kvm or tcg');
    const qemu = values.guest === 'qemu';
    if (qemu && values.mode !== 'remus') throw new UsageError('--guest qemu runs in Remus mode only: add --mode remus (docs/domain.md says why)');
    if (qemu && (!existsSync(values.kernel) || !existsSync(values.initrd))) {
      throw new UsageError(`--guest qemu needs a kernel and an initramfs (${values.kernel}, ${values.initrd}): run \`npm run tools\`, or give --kernel and --initrd`);
    }
    if (values.arbiter !== 'local' && values.arbiter !== 'etcd' && values.arbiter !== 'none') throw new UsageError('--arbiter must be local, etcd or none');
    if (values.arbiter === 'etcd' && !values.etcd) throw new UsageError('--arbiter etcd needs --etcd URL (the client URL of an etcd you started, e.g. http://127.0.0.1:2379)');
    if (values.etcd && values.arbiter !== 'etcd') throw new UsageError('--etcd goes with --arbiter etcd');
    const sup = new PairSupervisor({
      dir: values.dir,
      mode: values.mode,
      arbiter: values.arbiter,
      etcd: values.etcd,
      memory: values.memory ?? (qemu ? '128MiB' : '64MiB'),
      qemu: qemu ? { kernel: resolve(values.kernel), initrd: resolve(values.initrd), accel: values.accel as 'kvm' | 'tcg', forwardPort: 16379 } : undefined,
      host: values.host,
      servicePort: port('service-port', values['service-port']),
      adminPort: port('admin-port', values['admin-port']),
      replicationPort: port('replication-port', values['replication-port']),
      dirtyRate: Number(values['dirty-rate']),
      extra: {},
      logLevel: values['log-level'],
      blackhole: values.blackhole,
    });
    const say = (line: string) => io.stderr.write(`colo pair: ${line}\n`);
    sup.onEvent = say;
    let stopped = false;
    const done = new Promise<void>((resolveDone) => {
      const stop = () => {
        if (stopped) return;
        stopped = true;
        say('stopping both nodes ...');
        void sup.stop().then(() => {
          say('stopped');
          resolveDone();
        });
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    try {
      await sup.start();
    } catch (e) {
      say(`could not start: ${(e as Error).message}`);
      await sup.stop();
      return e instanceof PairInUseError ? ExitCode.IO : ExitCode.FAILED;
    }

    // Initial synchronisation progress, then the banner.
    const deadline = Date.now() + Number(values['sync-timeout']) * 1000;
    let last = '';
    while (!stopped) {
      const [a, b] = await sup.statuses();
      const primary = [a, b].find((s) => s?.role === 'primary');
      // Blackhole: up once its checkpoints run (its first went nowhere); it never reports protected.
      const up = values.blackhole ? primary?.blackhole === true && primary.lastCheckpoint != null : primary?.protected === true;
      const line = up
        ? values.blackhole
          ? 'checkpointing into nothing'
          : 'protected'
        : values.blackhole
          ? `A: ${a ? `${a.role} ${a.state}` : 'starting'}`
          : `A: ${a ? `${a.role} ${a.state}${fmtSync(a)}` : 'starting'} | B: ${b ? `${b.role} ${b.state}${fmtSync(b)}` : 'starting'}`;
      if (line !== last) say(line);
      last = line;
      if (up && primary) {
        if (values.blackhole) blackholeBanner(io.stdout, sup, values.json ?? false);
        else banner(io.stdout, sup, primary.nodeId, values.json ?? false);
        break;
      }
      if (Date.now() > deadline) {
        say(`the pair did not become protected within ${values['sync-timeout']} s; see the logs in ${values.dir}/`);
        await sup.stop();
        return ExitCode.FAILED;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    await done;
    return ExitCode.OK;
  },
};

function blackholeBanner(out: NodeJS.WritableStream, sup: PairSupervisor, json: boolean): void {
  const a = sup.nodes[0];
  // One node: `colo status` alone would also ask for node B, which does not exist here.
  const nodes = ` --node ${a.adminUrl}`;
  if (json) {
    out.write(JSON.stringify({ ready: true, blackhole: true, protected: false, service: a.service, nodes: [{ id: a.id, admin: a.adminUrl, service: a.service }], tokenFile: sup.tokenFile }) + '\n');
    return;
  }
  out.write(`
colo pair is up in BLACKHOLE mode (${a.id} alone): NOT protected. Every checkpoint runs and goes nowhere;
output is held and released as in a pair. What it costs is in the metrics.

  service (RESP)  ${a.service.host}:${a.service.port}
  status          ${a.adminUrl}/status
  metrics         ${a.adminUrl}/metrics

Try:
  redis-benchmark -p ${a.service.port} -t set,get -n 20000 -q
  curl -s ${a.adminUrl}/metrics | grep colo_checkpoint_pause
  npx colo status${nodes}

Ctrl-C stops it.
`);
}

function fmtSync(s: NodeStatusDoc): string {
  const progress = formatSync(s.sync);
  return progress ? ` (${progress})` : '';
}

function banner(out: NodeJS.WritableStream, sup: PairSupervisor, primaryId: string, json: boolean): void {
  const [a, b] = sup.nodes;
  const primary = sup.nodes.find((n) => n.id === primaryId)!;
  // `colo status` and `colo drill` find `colo pair`'s nodes by themselves on the default ports only.
  const nodes = a.adminUrl === 'http://127.0.0.1:9464' && b.adminUrl === 'http://127.0.0.1:9465' ? '' : ` --node ${a.adminUrl} --node ${b.adminUrl}`;
  if (json) {
    out.write(JSON.stringify({ ready: true, service: primary.service, nodes: sup.nodes.map((n) => ({ id: n.id, admin: n.adminUrl, service: n.service })), tokenFile: sup.tokenFile }) + '\n');
    return;
  }
  out.write(`
colo pair is up and protected (primary ${primary.id}).

  service (RESP)  ${primary.service.host}:${primary.service.port}      after a failover: ${(primary === a ? b : a).service.host}:${(primary === a ? b : a).service.port}
  status          ${a.adminUrl}/status   ${b.adminUrl}/status
  metrics         ${a.adminUrl}/metrics  ${b.adminUrl}/metrics
  admin token     ${sup.tokenFile}

Try:
  redis-cli -p ${primary.service.port} SET greeting hello
  redis-cli -p ${primary.service.port} GET greeting
  curl -s ${primary.adminUrl}/metrics | grep colo_checkpoint
  npx colo status${nodes}
  COLO_ADMIN_TOKEN_FILE=${sup.tokenFile} npx colo checkpoint --node ${primary.adminUrl}
  COLO_ADMIN_TOKEN_FILE=${sup.tokenFile} npx colo drill${nodes}

Ctrl-C stops both nodes.
`);
}

export default command;
