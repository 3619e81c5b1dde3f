import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// Every test run gets one temporary root that is removed when the run ends, pass or fail, so a test (or a node
// it killed mid-way) that leaves files behind never fills the machine's /tmp. Workers and the processes they spawn
// inherit TMPDIR, and os.tmpdir() reads it at each call. Each project runs this setup; the first one makes the
// root and the others share it.
let owned: string | undefined;

export function setup(): void {
  if (process.env.COLO_TEST_TMPDIR) return;
  owned = mkdtempSync(join(tmpdir(), 'colo-test-'));
  process.env.COLO_TEST_TMPDIR = owned;
  process.env.TMPDIR = owned;
}

export function teardown(): void {
  if (!owned) return;
  // COLO_KEEP_TMP=1 keeps the nodes' logs and configs of a run that is being debugged.
  if (process.env.COLO_KEEP_TMP) {
    console.log(`COLO_KEEP_TMP: the run's files are kept in ${owned}`);
    return;
  }
  rmSync(owned, { recursive: true, force: true });
  owned = undefined;
}
