/** A primary's synchronisation progress as /status gives it (`sync`), for people: colo status and colo pair. */
interface SyncDoc {
  round?: number;
  pagesSent?: number;
  totalPages?: number;
  bytesSent?: number;
  seconds?: number;
}

const MiB = 1024 * 1024;

/**
 * "pre-copy round 1: 12,288 of 65,536 pages (48 of 256 MiB), 310 MiB/s, about 1 s left", or '' when no
 * synchronisation runs. The rate is the round's so far; the time left is the round's rest at that rate (a later
 * round sends what the guest dirtied meanwhile: usually much less).
 */
export function formatSync(sync: unknown): string {
  const s = sync as SyncDoc | null | undefined;
  if (!s || s.totalPages === undefined) return '';
  const sent = s.pagesSent ?? 0;
  const bytes = s.bytesSent ?? 0;
  const pageBytes = sent > 0 ? bytes / sent : 4096;
  const parts = [`pre-copy round ${s.round ?? 0}: ${sent.toLocaleString('en')} of ${s.totalPages.toLocaleString('en')} pages (${(bytes / MiB).toFixed(0)} of ${((s.totalPages * pageBytes) / MiB).toFixed(0)} MiB)`];
  const seconds = s.seconds ?? 0;
  if (seconds > 0 && bytes > 0) {
    const rate = bytes / seconds;
    parts.push(`${(rate / MiB).toFixed(0)} MiB/s`);
    const left = ((s.totalPages - sent) * pageBytes) / rate;
    parts.push(`about ${left < 1 ? 'under a second' : `${Math.ceil(left)} s`} left`);
  }
  return parts.join(', ');
}
