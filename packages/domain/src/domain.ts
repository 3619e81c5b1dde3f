import type { HvmParam, TscInfo, XenstoreEntry } from '@colo/stream';

/**
 * What the coordinator needs from a hypervisor to protect one guest. The embedded simulated guest implements
 * it; a QEMU/KVM (QMP) or Xen (libxc/libxl) implementation would plug in here without touching the coordinator.
 * Each member says what a real hypervisor does for it.
 */
export interface Domain {
  /** Stable identity of the guest (Xen: domain UUID; QEMU: the -uuid option). */
  readonly uuid: string;
  /** Human name (Xen: domain name; QEMU: -name). */
  readonly name: string;
  /** Guest memory size in 4 KiB pages; pfns are 0 .. pageCount-1 (Xen: max_pfn + 1). */
  readonly pageCount: number;

  /** 'running' or 'suspended' (Xen: xc_domain_getinfo paused/shutdown(suspend); QEMU: query-status). */
  readonly state: DomainState;
  /**
   * Stops the guest's vCPUs and devices at an instruction boundary; after it resolves no page changes and no
   * output is produced until resume() (Xen: suspend via event channel/xenstore; QEMU: stop). Input delivered
   * while suspended is queued by the virtual NIC and processed after resume, in order.
   */
  suspend(): Promise<void>;
  /** Restarts a suspended guest (Xen: xc_domain_resume; QEMU: cont). Queued input is processed first, in order. */
  resume(): Promise<void>;

  /**
   * Starts tracking written pages (Xen: XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY; KVM: KVM_MEM_LOG_DIRTY_PAGES).
   * Every page counts as dirty right after enabling, so the first read returns all of them.
   */
  enableLogDirty(): void;
  /** Stops tracking and empties the dirty set (Xen: SHADOW_OP_OFF). */
  disableLogDirty(): void;
  /**
   * Returns the pages written since the last call (ascending pfns) and clears the set atomically
   * (Xen: XEN_DOMCTL_SHADOW_OP_CLEAN; KVM: KVM_GET_DIRTY_LOG / dirty ring reset). Empty while tracking is off.
   */
  readAndClearDirty(): Uint32Array;
  /** Peeks at the dirty set without clearing it (Xen: SHADOW_OP_PEEK). */
  peekDirty(): Uint32Array;

  /**
   * A view (not a copy) of one page's 4096 bytes, valid until the guest runs again
   * (Xen: xenforeignmemory_map of the gfn; QEMU: a pointer into the RAMBlock).
   */
  page(pfn: number): Uint8Array;
  /**
   * Optional: a view of `count` consecutive pages from `firstPfn` on, as page() gives one (a guest whose memory
   * is one buffer, like the simulated guest or a QEMU RAMBlock). Senders use it to take a run of dirty pages as
   * one view.
   */
  pages?(firstPfn: number, count: number): Uint8Array;
  /**
   * Overwrites pages: `data` holds pfns.length pages of 4096 bytes in order. Only while suspended or before the
   * guest first runs (Xen: the restore side's foreign mappings; QEMU: incoming migration's ram_load).
   * Writes by the hypervisor do not mark pages dirty. A guest that cannot take the write now throws
   * (the simulated guest: DomainError DOMAIN_NOT_SUSPENDED), before changing any page.
   */
  writePages(pfns: ArrayLike<number>, data: Uint8Array): void;
  /**
   * Optional: a staging copy of guest memory for a guest that has never run, filled page by page and adopted
   * whole (QEMU: incoming migration into RAM the guest does not use yet; Xen: restore into a domain built
   * paused). Lets a secondary's initial synchronisation write pages as they arrive instead of buffering the
   * whole stream, while keeping the all-or-nothing guarantee: until `adopt()` the guest is untouched, and a
   * staging that is dropped (or `discard()`ed) leaves no trace. Returns undefined when the guest cannot stage
   * (it has run); the caller then buffers and uses writePages.
   */
  stageMemory?(): MemoryStaging | undefined;

  /** vCPU and platform state, the HVM_CONTEXT blob (Xen: xc_domain_hvm_getcontext; QEMU: vmstate of the CPUs). */
  getVcpuContext(): Uint8Array;
  setVcpuContext(blob: Uint8Array): void;
  /** HVM parameters carried in HVM_PARAMS (Xen: xc_hvm_param_get of the migrated params). */
  getHvmParams(): HvmParam[];
  setHvmParams(params: HvmParam[]): void;
  /** TSC mode and frequency, X86_TSC_INFO (Xen: xc_domain_get_tsc_info). */
  getTscInfo(): TscInfo;
  setTscInfo(info: TscInfo): void;
  /**
   * Device model state, the EMULATOR_CONTEXT blob (QEMU: the device vmstate, xen-save-devices-state).
   * For the simulated guest: the per-connection protocol parse state, so a restored guest continues a
   * half-received command exactly where the original was.
   */
  getDeviceState(): Uint8Array;
  setDeviceState(blob: Uint8Array): void;
  /** Device-model xenstore keys, EMULATOR_XENSTORE_DATA (Xen: /local/domain/0/device-model/<domid>/...). */
  getXenstore(): XenstoreEntry[];
  setXenstore(entries: XenstoreEntry[]): void;

  /**
   * The guest's network side. The coordinator owns client sockets and assigns connection ids; in a real
   * deployment this is the tap/vif the proxy sits on (QEMU: filter-mirror/filter-redirector; Xen: the vif).
   */
  openConnection(id: number): void;
  /** The client went away: the guest drops the connection's state. */
  closeConnection(id: number): void;
  /** Bytes a client sent, in order. Processed at once while running, queued while suspended. */
  deliverInput(id: number, bytes: Uint8Array): void;
  /**
   * Registers a listener for bytes the guest sends to a client (and for the guest closing a connection, with
   * `bytes` null). Returns a function that removes the listener.
   */
  onOutput(listener: (id: number, bytes: Uint8Array | null) => void): () => void;

  /** Releases timers and resources; the domain is unusable afterwards (Xen: destroy; QEMU: quit). */
  destroy(): void;
}

export type DomainState = 'running' | 'suspended';

/** A staging copy of a never-run guest's memory (Domain.stageMemory). */
export interface MemoryStaging {
  /**
   * Writes pages into the staging copy, as Domain.writePages would into the guest (same checks: a bad pfn or a
   * data length that is not pfns.length pages throws DomainError before anything is written).
   */
  writePages(pfns: ArrayLike<number>, data: Uint8Array): void;
  /**
   * Makes the staging copy the guest's memory: staged pages replace the guest's, pages never staged keep the
   * guest's bytes. Throws DomainError STAGING_STALE (guest untouched) if the guest has run since stageMemory().
   * The staging is spent afterwards.
   */
  adopt(): void;
  /** Drops the staged pages; the guest is not touched. */
  discard(): void;
}
