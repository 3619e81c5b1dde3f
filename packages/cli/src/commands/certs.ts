import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { usageErrors } from '../args.js';
import { ExitCode, UsageError, type Command } from '../command.js';

const help = `Usage: colo certs --dir DIR --node NAME=HOST[,HOST...] [--node ...] [--days N]

Makes what TLS between the nodes needs, with the openssl command: a certificate authority for the pair
(DIR/ca.crt, DIR/ca.key; kept and reused if DIR has one) and, for each --node, a key and a certificate signed
by it (DIR/NAME.crt, DIR/NAME.key) valid for each HOST given (an address or a DNS name: the ones the peer dials
and clients use). A node's certificate serves it both as a server (its listeners, the admin API) and as a client
(the links it dials). Keys are written mode 0600; ca.key signs new nodes only: keep it off the hosts.

  colo certs --dir ./pki --node host-a=10.0.0.1,host-a.example.net --node host-b=10.0.0.2,host-b.example.net

Then on host A: ca.crt, host-a.crt and host-a.key into /etc/colo/tls/ (owner colo), and in /etc/colo/colo.yaml
  replication: { tls_ca: /etc/colo/tls/ca.crt, tls_cert: /etc/colo/tls/host-a.crt, tls_key: /etc/colo/tls/host-a.key,
                 peer: wss://host-b.example.net:7800 }
  admin:       { tls_cert: /etc/colo/tls/host-a.crt, tls_key: /etc/colo/tls/host-a.key }
(docs/operations.md, "Two hosts from nothing").

Options:
  --dir DIR            where the files go (created if missing)
  --node NAME=HOSTS    a node and the addresses and names its certificate is valid for; repeat per node
  --days N             validity of the node certificates (default 825; the CA's: 10 years)

Exit codes: 0 written, 2 bad usage, 3 openssl missing or failed, or DIR not writable.
`;

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
    if (err.code === 'ENOENT') throw new CertsError('the openssl command is missing: install it (apt-get install openssl)');
    throw new CertsError(`openssl ${args[0]} failed: ${err.stderr?.toString().trim() || err.message}`);
  }
}

class CertsError extends Error {}

/** NAME=HOST[,HOST...] -> the name and its subjectAltName entries. */
function nodeSpec(spec: string): { name: string; hosts: string[] } {
  const m = /^([A-Za-z0-9][A-Za-z0-9._-]*)=(.+)$/.exec(spec);
  if (!m) throw new UsageError(`--node ${spec}: expected NAME=HOST[,HOST...], e.g. host-a=10.0.0.1,host-a.example.net`);
  const hosts = m[2]!.split(',').map((h) => h.trim()).filter(Boolean);
  for (const h of hosts) if (!isIP(h) && !/^[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(h)) throw new UsageError(`--node ${spec}: '${h}' is neither an address nor a DNS name`);
  return { name: m[1]!, hosts };
}

const command: Command = {
  path: ['certs'],
  summary: 'make a CA and the nodes\' TLS certificates (openssl)',
  help,
  async run(argv, io) {
    const { values } = usageErrors(() =>
      parseArgs({ args: argv, strict: true, options: { dir: { type: 'string' }, node: { type: 'string', multiple: true }, days: { type: 'string', default: '825' } } }),
    );
    if (!values.dir) throw new UsageError('--dir DIR is required');
    if (!values.node || values.node.length === 0) throw new UsageError('give at least one --node NAME=HOST[,HOST...]');
    const days = Number(values.days);
    if (!Number.isInteger(days) || days < 1) throw new UsageError(`--days ${values.days}: a whole number of days >= 1`);
    const nodes = values.node.map(nodeSpec);
    const dir = resolve(values.dir);
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      if (!existsSync(join(dir, 'ca.crt')) || !existsSync(join(dir, 'ca.key'))) {
        openssl(
          ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '3650', '-subj', '/CN=colo pair CA',
            '-keyout', 'ca.key', '-out', 'ca.crt', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
          dir,
        );
        chmodSync(join(dir, 'ca.key'), 0o600);
        io.stdout.write(`${join(dir, 'ca.crt')} (and ca.key: keep it off the hosts)\n`);
      }
      for (const n of nodes) {
        openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${n.name}`, '-keyout', `${n.name}.key`, '-out', `${n.name}.csr`], dir);
        chmodSync(join(dir, `${n.name}.key`), 0o600);
        const san = n.hosts.map((h) => (isIP(h) ? `IP:${h}` : `DNS:${h}`)).join(',');
        writeFileSync(join(dir, `${n.name}.ext`), `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${san}\n`);
        openssl(['x509', '-req', '-in', `${n.name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', String(days), '-extfile', `${n.name}.ext`, '-out', `${n.name}.crt`], dir);
        rmSync(join(dir, `${n.name}.csr`));
        rmSync(join(dir, `${n.name}.ext`));
        io.stdout.write(`${join(dir, `${n.name}.crt`)} and ${n.name}.key, for ${n.hosts.join(', ')}\n`);
      }
    } catch (e) {
      io.stderr.write(`colo certs: ${(e as Error).message}\n`);
      return ExitCode.IO;
    }
    return ExitCode.OK;
  },
};
export default command;
