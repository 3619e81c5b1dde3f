/**
 * A readable account of a stream for people and scripts (`colo stream inspect`): one entry per header or
 * record, with runs of PAGE_DATA squashed into one entry and checkpoints numbered. Entries are plain JSON.
 */
import { coloControlName } from './names.js';
import { GuestType, LibxcType, type StreamItem, type StreamKind } from './types.js';

export interface SummaryEntry {
  /** Byte offset of the entry's first header or record. */
  offset: number;
  /** 'xl-header', 'libxl-header', 'libxc-image-header', 'libxc-domain-header', or the record kind. */
  what: string;
  layer: 'xl' | 'libxl' | 'libxc';
  /** Record type number (records only). */
  type?: number;
  /** For CHECKPOINT, CHECKPOINT_END and a following CHECKPOINT_STATE: which checkpoint (1, 2, ...). */
  checkpoint?: number;
  /** PAGE_DATA runs: records squashed, pfn entries, pages carrying data, lowest and highest pfn. */
  records?: number;
  pfns?: number;
  pages?: number;
  minPfn?: number;
  maxPfn?: number;
  /** CHECKPOINT_STATE: the COLO control id and its name. */
  controlId?: number;
  control?: string;
  /** Human-readable details (sizes, ids, names). */
  detail?: string;
}

export interface StreamStats {
  kind: StreamKind;
  headers: number;
  records: number;
  pageDataRecords: number;
  pfns: number;
  pages: number;
  checkpoints: number;
  optionalRecords: number;
  guestType?: 'x86 PV' | 'x86 HVM';
}

const guestNames: Record<number, 'x86 PV' | 'x86 HVM'> = { [GuestType.X86_PV]: 'x86 PV', [GuestType.X86_HVM]: 'x86 HVM' };

export class StreamSummarizer {
  readonly stats: StreamStats;
  private run: SummaryEntry | undefined;
  private checkpoint = 0;

  constructor(kind: StreamKind) {
    this.stats = { kind, headers: 0, records: 0, pageDataRecords: 0, pfns: 0, pages: 0, checkpoints: 0, optionalRecords: 0 };
  }

  /** Adds an item; returns the entries it completes (a PAGE_DATA run completes when something else follows). */
  add(item: StreamItem): SummaryEntry[] {
    const out: SummaryEntry[] = [];
    if (item.item === 'record' && item.record.kind === 'PAGE_DATA') {
      const r = item.record;
      this.stats.records++;
      this.stats.pageDataRecords++;
      this.stats.pfns += r.pfns.length;
      this.stats.pages += r.data.length / 4096;
      let min = Infinity;
      let max = -Infinity;
      for (const p of r.pfns) {
        if (p < min) min = p;
        if (p > max) max = p;
      }
      if (!this.run) this.run = { offset: item.offset, what: 'PAGE_DATA', layer: 'libxc', type: LibxcType.PAGE_DATA, records: 0, pfns: 0, pages: 0, minPfn: min, maxPfn: max };
      const run = this.run;
      run.records! += 1;
      run.pfns! += r.pfns.length;
      run.pages! += r.data.length / 4096;
      run.minPfn = Math.min(run.minPfn!, min);
      run.maxPfn = Math.max(run.maxPfn!, max);
      return out;
    }
    out.push(...this.finish());
    out.push(this.entry(item));
    return out;
  }

  /** Flushes a pending PAGE_DATA run. */
  finish(): SummaryEntry[] {
    const run = this.run;
    this.run = undefined;
    if (!run) return [];
    run.detail = `${run.records} records, ${run.pfns} pfns, ${run.pages} pages of data, pfns 0x${run.minPfn!.toString(16)}-0x${run.maxPfn!.toString(16)}`;
    return [run];
  }

  private entry(item: StreamItem): SummaryEntry {
    const { offset } = item;
    switch (item.item) {
      case 'xl-header':
        this.stats.headers++;
        return { offset, what: 'xl-header', layer: 'xl', detail: `mandatory flags 0x${item.header.mandatoryFlags.toString(16)}, ${item.header.optionalData.length} bytes of optional data (domain config)` };
      case 'libxl-header':
        this.stats.headers++;
        return { offset, what: 'libxl-header', layer: 'libxl', detail: `version 2, options 0x${item.header.options.toString(16)}${item.header.options & 2 ? ' (legacy converted)' : ''}` };
      case 'libxc-image-header':
        this.stats.headers++;
        return { offset, what: 'libxc-image-header', layer: 'libxc', detail: `version ${item.header.version}` };
      case 'libxc-domain-header': {
        this.stats.headers++;
        const h = item.header;
        this.stats.guestType = guestNames[h.guestType];
        return { offset, what: 'libxc-domain-header', layer: 'libxc', detail: `${guestNames[h.guestType] ?? h.guestType} guest, Xen ${h.xenMajor}.${h.xenMinor}` };
      }
      case 'record':
        break;
    }
    this.stats.records++;
    const r = item.record;
    const e: SummaryEntry = { offset, what: r.kind, layer: r.layer };
    switch (r.kind) {
      case 'CHECKPOINT':
        this.checkpoint++;
        this.stats.checkpoints++;
        e.checkpoint = this.checkpoint;
        e.detail = `checkpoint #${this.checkpoint}: libxc part complete, libxl takes the channel`;
        break;
      case 'CHECKPOINT_END':
        e.checkpoint = this.checkpoint;
        e.detail = `checkpoint #${this.checkpoint} complete`;
        break;
      case 'CHECKPOINT_STATE':
        e.controlId = r.controlId;
        e.control = coloControlName(r.controlId);
        e.detail = `COLO ${coloControlName(r.controlId)} (${r.controlId})`;
        break;
      case 'CHECKPOINT_DIRTY_PFN_LIST':
        e.detail = `${r.pfns.length} dirty pfns`;
        break;
      case 'EMULATOR_XENSTORE_DATA':
        e.detail = `emulator ${r.emulatorId} index ${r.index}, ${r.entries.length} keys`;
        break;
      case 'EMULATOR_CONTEXT':
        e.detail = `emulator ${r.emulatorId} index ${r.index}, ${r.blob.length} bytes`;
        break;
      case 'X86_TSC_INFO':
        e.detail = `mode ${r.mode}, ${r.khz} kHz, ${r.nsec} ns, incarnation ${r.incarnation}`;
        break;
      case 'HVM_CONTEXT':
        e.detail = `${r.blob.length} bytes`;
        break;
      case 'HVM_PARAMS':
        e.detail = `${r.params.length} params`;
        break;
      case 'X86_CPUID_POLICY':
        e.detail = `${r.data.length / 24} leaves`;
        break;
      case 'X86_MSR_POLICY':
        e.detail = `${r.data.length / 16} MSRs`;
        break;
      case 'OPTIONAL':
        this.stats.optionalRecords++;
        e.type = r.type;
        e.detail = `optional type 0x${r.type.toString(16)}, ${r.body.length} bytes (skipped)`;
        break;
    }
    return e;
  }
}

/** One line of `colo stream inspect` output. */
export function formatEntry(e: SummaryEntry): string {
  const where = String(e.offset).padStart(12);
  const name = e.what.endsWith('-header') ? e.what.replace(/-/g, ' ') : `${e.layer} ${e.what}`;
  const line = `${where}  ${name}${e.detail ? `  ${e.detail}` : ''}`;
  if (e.what === 'CHECKPOINT') return `${line}\n${''.padStart(12)}  ---- checkpoint #${e.checkpoint} ----`;
  return line;
}

/** The one-line verdict of `colo stream verify`. */
export function formatStats(s: StreamStats, bytes: number): string {
  const parts = [`${bytes} bytes`, `${s.records} records`, `${s.pageDataRecords} PAGE_DATA (${s.pages} pages)`];
  if (s.checkpoints > 0) parts.push(`${s.checkpoints} checkpoints`);
  if (s.optionalRecords > 0) parts.push(`${s.optionalRecords} optional records skipped`);
  if (s.guestType) parts.push(`${s.guestType} guest`);
  return `valid ${s.kind} stream: ${parts.join(', ')}`;
}
