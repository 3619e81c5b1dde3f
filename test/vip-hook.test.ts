import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createLab, type Lab } from './support/netns.js';
import { repo } from './support/tools.js';

/**
 * deploy/examples/colo-move-vip, the promote/demote hook that moves a virtual IP, in a lab of network namespaces
 * (never the machine's own network): hosts a and b take turns holding the address, and host c, a client on the
 * same segment, reaches whichever holds it. The gratuitous ARP of a promotion updates c's neighbour entry at once
 * (without it c would keep sending to the old host's MAC until its cache expired).
 */
const VIP = '10.200.0.100';
const hook = join(repo, 'deploy/examples/colo-move-vip');
let lab: Lab;

beforeAll(async () => {
  lab = await createLab('vip-hook', ['a', 'b', 'c']);
}, 60_000);

afterAll(async () => {
  await lab?.destroy();
});

async function run(host: string, action: 'promote' | 'demote'): Promise<string> {
  const r = await lab.exec(host, 'env', [`VIP=${VIP}/24`, 'VIP_DEV=lab0', `COLO_HOOK=${action}`, 'COLO_NODE_ID=test', 'COLO_EPOCH=1', 'sh', hook], 20_000);
  expect(r.code, `${host} ${action}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

async function mac(host: string): Promise<string> {
  const r = await lab.exec(host, 'cat', ['/sys/class/net/lab0/address']);
  return r.stdout.trim();
}

/** c's neighbour entry for the VIP: the MAC it sends to. */
async function neighbourOfC(): Promise<string | undefined> {
  const r = await lab.exec('c', 'ip', ['neigh', 'show', VIP, 'dev', 'lab0']);
  return /lladdr ([0-9a-f:]+)/.exec(r.stdout)?.[1];
}

async function holds(host: string): Promise<boolean> {
  return (await lab.exec(host, 'ip', ['-o', 'address', 'show', 'dev', 'lab0'])).stdout.includes(` ${VIP}/24 `);
}

/** A client's request from c to the VIP: the name of the host that answered, or FAIL and why. */
async function ask(): Promise<string> {
  const script = `const s=require('net').connect(7000,'${VIP}');s.setTimeout(1500,()=>process.exit(3));s.on('data',(d)=>process.stdout.write(d));s.on('error',(e)=>{process.stderr.write(e.message);process.exit(2)})`;
  const r = await lab.exec('c', process.execPath, ['-e', script], 10_000);
  return r.code === 0 ? r.stdout : `FAIL ${r.code} ${r.stderr}`.trim();
}

async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  for (const deadline = Date.now() + 5000; ; ) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within 5 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('the virtual IP follows the promote hook; a client on the segment follows it at once', async () => {
  // A service on both hosts, on every address (the VIP included once a host holds it): it answers its host's name.
  for (const h of ['a', 'b']) lab.spawn(h, process.execPath, ['-e', `require('net').createServer((s)=>{s.on('error',()=>{});s.end('${h}')}).listen(7000,'0.0.0.0')`]);
  await until('both services up', async () => ((await lab.exec('c', process.execPath, ['-e', `require('net').connect(7000,'${lab.addr('b')}').on('connect',()=>process.exit(0)).on('error',()=>process.exit(1))`])).code === 0 ? true : undefined));
  expect(await ask()).toMatch(/^FAIL /);

  expect(await run('a', 'promote')).toMatch(/10\.200\.0\.100\/24 on lab0/);
  expect(await holds('a')).toBe(true);
  expect(await ask()).toBe('a');
  expect(await neighbourOfC()).toBe(await mac('a'));

  // A failover: the old primary gives it up (when it can: a dead host cannot), the new one takes it.
  expect(await run('a', 'demote')).toMatch(/given up/);
  expect(await holds('a')).toBe(false);
  await run('b', 'promote');
  expect(await holds('b')).toBe(true);
  // c learnt the new MAC from b's gratuitous ARP, before sending anything to it (its entry named a's MAC).
  expect(await neighbourOfC()).toBe(await mac('b'));
  expect(await ask()).toBe('b');

  // Idempotent both ways: a promote again, a demote of a host that does not hold it.
  await run('b', 'promote');
  expect(await run('a', 'demote')).toBe('');
  expect(await holds('b')).toBe(true);
  const usage = await lab.exec('a', 'env', [`VIP=${VIP}/24`, 'VIP_DEV=lab0', 'sh', hook, 'sideways']);
  expect(usage.code).toBe(2);
}, 60_000);
