import type { Command } from './command.js';

/** Every command, by path, with a lazy loader. Add a line here when adding a module under commands/. */
export const commands: ReadonlyArray<{ path: string[]; summary: string; load: () => Promise<Command> }> = [
  { path: ['stream', 'inspect'], summary: 'summarise a migration v2 stream (file or -)', load: async () => (await import('./commands/stream-inspect.js')).default },
  { path: ['stream', 'verify'], summary: 'check a migration v2 stream; exit 0 if valid', load: async () => (await import('./commands/stream-verify.js')).default },
  { path: ['guest'], summary: 'run an unprotected simulated guest serving RESP clients', load: async () => (await import('./commands/guest.js')).default },
  { path: ['save'], summary: 'write a libxl v2 image of a guest', load: async () => (await import('./commands/save.js')).default },
  { path: ['restore'], summary: 'serve a guest restored from a libxl v2 image', load: async () => (await import('./commands/restore.js')).default },
  { path: ['status'], summary: 'show role, state, epoch and protection of each node', load: async () => (await import('./commands/status.js')).default },
  { path: ['checkpoint'], summary: 'take a manual checkpoint on a primary', load: async () => (await import('./commands/checkpoint.js')).default },
  { path: ['failover'], summary: 'force a failover (drills)', load: async () => (await import('./commands/failover.js')).default },
  { path: ['drill'], summary: 'run a failover drill: ledger, crash, RTO, verify, re-protect', load: async () => (await import('./commands/drill.js')).default },
  { path: ['pair'], summary: 'run a primary/secondary pair on this machine (npm start)', load: async () => (await import('./commands/pair.js')).default },
  { path: ['node'], summary: 'run one node (role from the config file or --node-role)', load: async () => (await import('./commands/node.js')).default },
  { path: ['primary'], summary: 'run a node as primary (creates or restores the guest)', load: async () => (await import('./commands/primary.js')).default },
  { path: ['claim'], summary: "make the pair's next epoch this node's alone (both hosts lost, a record lost)", load: async () => (await import('./commands/claim.js')).default },
  { path: ['certs'], summary: 'make a CA and the nodes\' TLS certificates (openssl)', load: async () => (await import('./commands/certs.js')).default },
  { path: ['completion'], summary: 'print a bash or zsh completion script', load: async () => (await import('./commands/completion.js')).default },
  { path: ['secondary'], summary: 'run a node as secondary of --replication-peer', load: async () => (await import('./commands/secondary.js')).default },
];
