// Builds the installable artefact: one directory tree, packed as dist/colo-VERSION-linux.tar.gz, that unpacks
// into a prefix (/usr/local) with everything a host needs besides Node 20:
//   bin/colo                          the whole CLI and node in one file (esbuild bundle of packages/cli)
//   lib/colo/                         files dependencies read at run time (etcd3's and gRPC's .proto)
//   lib/systemd/system/*.service      the units
//   lib/sysusers.d/colo.conf          the `colo` user and group (systemd-sysusers)
//   lib/tmpfiles.d/colo.conf          /etc/colo, /var/lib/colo (systemd-tmpfiles)
//   share/colo/examples/              host-a.yaml, host-b.yaml, colo-move-vip
//   share/colo/prometheus/, grafana/  scrape config, alert rules, dashboard and its provisioning
//   share/doc/colo/                   README and docs/
// Usage: node scripts/artefact.mjs [OUT_DIR]   (after `npm run build`; npm run artefact does both)
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const version = JSON.parse(readFileSync(join(root, 'packages/cli/package.json'), 'utf8')).version;
const out = resolve(process.argv[2] ?? join(root, 'dist'));
const name = `colo-${version}`;
const tree = join(out, name);
const entry = join(root, 'packages/cli/dist/bin.js');
if (!existsSync(entry)) {
  console.error('artefact: packages/cli/dist/bin.js is missing: run `npm run build` first (npm run artefact does)');
  process.exit(3);
}

/**
 * Dependencies that read files next to their own code (`${__dirname}/../proto/rpc.proto`): in the bundle their
 * __dirname becomes the matching directory under lib/colo/, where those files are copied (ASSETS).
 */
const ASSET_PACKAGES = /[\\/]node_modules[\\/](etcd3|@grpc[\\/]grpc-js)[\\/].*\.js$/;
const ASSETS = ['etcd3/proto', '@grpc/grpc-js/proto'];
const assetDirs = {
  name: 'colo-asset-dirs',
  setup(b) {
    b.onLoad({ filter: ASSET_PACKAGES }, (args) => {
      const dir = relative(join(root, 'node_modules'), dirname(args.path));
      const contents = readFileSync(args.path, 'utf8').replace(/\b__dirname\b/g, `__coloAsset(${JSON.stringify(dir)})`);
      return { contents, loader: 'js' };
    });
  },
};

rmSync(tree, { recursive: true, force: true });
mkdirSync(join(tree, 'bin'), { recursive: true });
await build({
  entryPoints: [entry],
  outfile: join(tree, 'bin/colo'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // ws uses these native speed-ups only when they are installed; the bundle runs without them.
  external: ['bufferutil', 'utf-8-validate'],
  // CommonJS dependencies (pino, prom-client, yaml) call require(): give the ES module one. Files some of them
  // read at run time (etcd3's and gRPC's .proto definitions) are shipped in lib/colo/, and found from the bundle.
  banner: {
    js: [
      "import { createRequire as __coloCreateRequire } from 'node:module';",
      "import { dirname as __coloDirname, join as __coloJoin } from 'node:path';",
      "import { fileURLToPath as __coloFileURLToPath } from 'node:url';",
      'const require = __coloCreateRequire(import.meta.url);',
      "const __coloAsset = (dir) => __coloJoin(__coloDirname(__coloFileURLToPath(import.meta.url)), '..', 'lib', 'colo', dir);",
    ].join('\n'),
  },
  plugins: [assetDirs],
  legalComments: 'external',
  logLevel: 'warning',
});
chmodSync(join(tree, 'bin/colo'), 0o755);
// The licences of the bundled dependencies, beside the docs.
mkdirSync(join(tree, 'share/doc/colo'), { recursive: true });
renameSync(join(tree, 'bin/colo.LEGAL.txt'), join(tree, 'share/doc/colo/THIRD-PARTY-NOTICES.txt'));

const copy = (from, to) => cpSync(join(root, from), join(tree, to), { recursive: true });
for (const a of ASSETS) copy(`node_modules/${a}`, `lib/colo/${a}`);
copy('deploy/systemd/colo-node.service', 'lib/systemd/system/colo-node.service');
copy('deploy/systemd/colo-secondary@.service', 'lib/systemd/system/colo-secondary@.service');
copy('deploy/systemd/colo.sysusers.conf', 'lib/sysusers.d/colo.conf');
copy('deploy/systemd/colo.tmpfiles.conf', 'lib/tmpfiles.d/colo.conf');
copy('deploy/examples', 'share/colo/examples');
copy('deploy/prometheus', 'share/colo/prometheus');
copy('deploy/grafana', 'share/colo/grafana');
copy('README.md', 'share/doc/colo/README.md');
copy('docs', 'share/doc/colo');

const tarball = join(out, `${name}-linux.tar.gz`);
execFileSync('tar', ['-C', tree, '--owner=0', '--group=0', '-czf', tarball, '.']);
console.log(`${tarball}\n  install: tar -C /usr/local -xzf ${name}-linux.tar.gz && systemd-sysusers && systemd-tmpfiles --create (docs/operations.md, "Two hosts from nothing")`);
