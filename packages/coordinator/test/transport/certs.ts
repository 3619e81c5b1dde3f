import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Test certificates, made fresh by the real `openssl` CLI into a temp dir: two CAs, a server and a client
 * certificate signed by CA1, and a client certificate signed by CA2 (the impostor).
 */
export interface TestPki {
  ca1: Buffer;
  ca2: Buffer;
  server: { cert: Buffer; key: Buffer };
  client: { cert: Buffer; key: Buffer };
  impostor: { cert: Buffer; key: Buffer };
  dispose(): void;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
    if (err.code === 'ENOENT') {
      throw new Error('the `openssl` CLI is missing: install it (apt-get install -y openssl), or run `npm run tools`');
    }
    throw new Error(`openssl ${args.join(' ')} failed: ${err.stderr?.toString() ?? err.message}`);
  }
}

export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'colo-pki-'));
  const ca = (name: string) =>
    openssl(
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
        '-subj', `/CN=colo test ${name}`, '-keyout', `${name}.key`, '-out', `${name}.crt`,
        '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
      dir,
    );
  const leaf = (name: string, signer: string, usage: 'serverAuth' | 'clientAuth') => {
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${name}`,
      '-keyout', `${name}.key`, '-out', `${name}.csr`], dir);
    writeFileSync(
      join(dir, `${name}.ext`),
      `basicConstraints=CA:FALSE\nextendedKeyUsage=${usage}\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n`,
    );
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${signer}.crt`, '-CAkey', `${signer}.key`,
      '-CAcreateserial', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.crt`], dir);
  };
  ca('ca1');
  ca('ca2');
  leaf('server', 'ca1', 'serverAuth');
  leaf('client', 'ca1', 'clientAuth');
  leaf('impostor', 'ca2', 'clientAuth');
  const read = (f: string) => readFileSync(join(dir, f));
  const pair = (n: string) => ({ cert: read(`${n}.crt`), key: read(`${n}.key`) });
  return {
    ca1: read('ca1.crt'),
    ca2: read('ca2.crt'),
    server: pair('server'),
    client: pair('client'),
    impostor: pair('impostor'),
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  };
}
