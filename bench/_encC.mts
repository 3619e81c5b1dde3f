const D: any = await import('../packages/stream/dist/index.js');
const S: any = await import('../packages/stream/src/index.ts');
const PAGES = 65536, mem = Buffer.alloc(PAGES * 4096, 7);
const flat = Buffer.alloc(PAGES * 4096 + 1e6, 1), dst = Buffer.alloc(flat.length);
const pfns = Array.from({ length: PAGES }, (_, i) => i);
const pageOf = (p: number) => mem.subarray(p * 4096, p * 4096 + 4096);
const MiB = 1 << 20;
function enc(A: any) {
  const w = new A.StreamWriter({ chunkSize: 4 * MiB });
  for (let i = 0; i < PAGES; i += 1024) { w.pageData(pfns.slice(i, i + 1024), pageOf); for (const c of w.take()) w.recycle(c); }
}
const cp = () => { for (let at = 0; at < flat.length; at += 4 * MiB) flat.copy(dst, at, at, Math.min(at + 4 * MiB, flat.length)); };
const t = (f: () => void) => { const a = process.hrtime.bigint(); f(); return Number(process.hrtime.bigint() - a) / 1e6; };
const d: number[] = [], s: number[] = [], c: number[] = [];
for (let r = 0; r < 14; r++) { c.push(t(cp)); d.push(t(() => enc(D))); c.push(t(cp)); s.push(t(() => enc(S))); }
const med = (x: number[]) => [...x].sort((p, q) => p - q)[x.length >> 1]!.toFixed(1);
console.log('memcpy', med(c), 'dist', med(d), 'src', med(s));
