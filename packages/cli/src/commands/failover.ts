import { actionCommand } from './action.js';

export default actionCommand(
  'failover',
  'force a failover (drills)',
  `Forces a failover. On a secondary: it promotes itself to primary now (its epoch rises; the old primary, on
meeting the higher epoch, stops acting as primary). On a primary: it steps down, and its secondary takes over.
The secondary must have completed at least one checkpoint, or it refuses.`,
);
