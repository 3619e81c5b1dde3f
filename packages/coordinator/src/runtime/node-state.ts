import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { CoordinatorError, CoordinatorErrorCode } from '../errors.js';
import type { NodeRole } from '../statechart/types.js';

/**
 * What a node remembers across its own restarts (node.state_dir/state.json): that it has been a member of its
 * pair, the highest epoch it has seen and the role it last acted in. Its guest is not in it: a node's guest lives
 * and dies with its process. The arbiter's record says who holds the pair now; this file says what this node
 * knew, so that a restart can tell "a new pair" from "a pair whose record was lost" and never accepts a primary
 * of an epoch older than one it has seen (docs/operations.md, "The role at start").
 */
export interface NodeState {
  /** The node this file belongs to (a file copied from another host is refused, not believed). */
  node: string;
  role: NodeRole;
  epoch: number;
}

const FILE = 'state.json';
const VERSION = 1;

/** The file's path in `dir`. */
export function nodeStatePath(dir: string): string {
  return join(dir, FILE);
}

/**
 * The state this node persisted in `dir`, or null when it has none (a node that never ran with this directory).
 * A file that does not parse, or that names another node, is COLO_STATE_CORRUPT: an operator decides, never a
 * guess.
 */
export function readNodeState(dir: string, nodeId: string): NodeState | null {
  const path = nodeStatePath(dir);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new CoordinatorError(CoordinatorErrorCode.STATE_CORRUPT, `cannot read ${path}: ${(e as Error).message}`, { cause: e });
  }
  let v: { version?: unknown; node?: unknown; role?: unknown; epoch?: unknown };
  try {
    v = JSON.parse(text) as typeof v;
  } catch (e) {
    throw new CoordinatorError(CoordinatorErrorCode.STATE_CORRUPT, `${path} is not JSON: remove it, and the node decides from the arbiter's record alone`, { cause: e });
  }
  if (typeof v !== 'object' || v === null || v.version !== VERSION || typeof v.node !== 'string' || (v.role !== 'primary' && v.role !== 'secondary') || !Number.isSafeInteger(v.epoch) || (v.epoch as number) < 0) {
    throw new CoordinatorError(CoordinatorErrorCode.STATE_CORRUPT, `${path} is not a node state of version ${VERSION}: ${text.slice(0, 200)}`);
  }
  if (v.node !== nodeId) {
    throw new CoordinatorError(CoordinatorErrorCode.STATE_CORRUPT, `${path} belongs to node ${JSON.stringify(v.node)}, not ${JSON.stringify(nodeId)}: each node needs its own state directory`);
  }
  return { node: v.node, role: v.role, epoch: v.epoch as number };
}

/**
 * Writes a node's state to `dir` when it changes (a new role or a higher epoch; routine transitions write
 * nothing). Each write is whole or absent after a crash: a temporary file, fsync, rename, fsync of the directory.
 */
export class NodeStateFile {
  private readonly dir: string;
  private readonly nodeId: string;
  private last: NodeState | null;

  constructor(dir: string, nodeId: string, known: NodeState | null = null) {
    this.dir = dir;
    this.nodeId = nodeId;
    this.last = known;
  }

  /** Records `role` at `epoch` (an epoch never goes down in the file). Throws on I/O errors (the caller decides). */
  record(role: NodeRole, epoch: number): void {
    const next: NodeState = { node: this.nodeId, role, epoch: Math.max(epoch, this.last?.epoch ?? 0) };
    if (this.last && this.last.role === next.role && this.last.epoch === next.epoch) return;
    mkdirSync(this.dir, { recursive: true, mode: 0o750 });
    const path = nodeStatePath(this.dir);
    const tmp = `${path}.tmp`;
    const fd = openSync(tmp, 'w', 0o640);
    try {
      writeSync(fd, JSON.stringify({ version: VERSION, ...next, updated: new Date().toISOString() }) + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    const dirFd = openSync(this.dir, 'r');
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
    this.last = next;
  }

  get state(): NodeState | null {
    return this.last ? { ...this.last } : null;
  }
}
