import { actionCommand } from './action.js';

export default actionCommand(
  'checkpoint',
  'take a manual checkpoint on a primary',
  'Asks the primary to take a checkpoint now (reason "manual") and waits until it completes.',
);
