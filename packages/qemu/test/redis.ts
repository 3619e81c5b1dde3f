import { connect } from 'node:net';

/** One RESP command over a fresh connection: a bulk reply's contents, or any other reply's first line. */
export function redis(port: number, ...words: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    let got = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no reply to ${words.join(' ')} within 10 s`));
    }, 10_000);
    s.once('connect', () => s.write(`*${words.length}\r\n${words.map((w) => `$${Buffer.byteLength(w)}\r\n${w}\r\n`).join('')}`));
    s.on('data', (d) => {
      got += d.toString();
      const line = got.indexOf('\r\n');
      if (line < 0) return;
      const first = got.slice(0, line);
      if (first.startsWith('$') && first !== '$-1') {
        const length = Number(first.slice(1));
        if (Buffer.byteLength(got) < line + 2 + length + 2) return;
        clearTimeout(timer);
        s.destroy();
        return resolve(got.slice(line + 2, line + 2 + length));
      }
      clearTimeout(timer);
      s.destroy();
      resolve(first);
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

