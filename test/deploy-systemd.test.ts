import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { NODE_HEAP_FLAGS } from '../packages/cli/src/runtime/node-flags.js';
import { repo, tool } from './support/tools.js';

const units = ['colo-node.service', 'colo-secondary@.service'];

describe('systemd units in deploy/systemd', () => {
  test.each(units)('%s starts colo with the node heap flags, exec\'d so the node is the main process', (unit) => {
    const text = readFileSync(join(repo, 'deploy/systemd', unit), 'utf8');
    const exec = text.split('\n').filter((l) => l.startsWith('ExecStart='));
    expect(exec).toHaveLength(1);
    for (const flag of NODE_HEAP_FLAGS) expect(exec[0]).toContain(` ${flag} `);
    expect(exec[0]).toMatch(/'exec node /);
  });

  test.each(units)('%s gives the node what the virtual-IP hook needs (CAP_NET_ADMIN, CAP_NET_RAW) and no more', (unit) => {
    const text = readFileSync(join(repo, 'deploy/systemd', unit), 'utf8');
    const value = (key: string) => text.split('\n').find((l) => l.startsWith(`${key}=`))?.slice(key.length + 1).split(/\s+/).sort();
    expect(value('AmbientCapabilities')).toEqual(['CAP_NET_ADMIN', 'CAP_NET_RAW']);
    expect(value('CapabilityBoundingSet')).toEqual(['CAP_NET_ADMIN', 'CAP_NET_RAW']);
    expect(value('NoNewPrivileges')).toEqual(['true']);
  });

  test.each(units)('%s passes systemd-analyze verify', (unit) => {
    const analyze = tool('SYSTEMD_ANALYZE');
    const dir = mkdtempSync(join(tmpdir(), 'colo-units-'));
    // A template is verified as an instance (the instance name must be a plain word for the verifier).
    const file = join(dir, unit.replace('@.', '@host-b.'));
    copyFileSync(join(repo, 'deploy/systemd', unit), file);
    const out = execFileSync('sh', ['-c', `"${analyze}" verify "${file}" 2>&1; echo "exit=$?"`], { encoding: 'utf8' });
    expect(out.trim()).toBe('exit=0');
  });
});
