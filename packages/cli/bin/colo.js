#!/usr/bin/env node
// The `colo` command as npm installs it. It lives outside dist/ so that `npm ci` finds it, links it into
// node_modules/.bin and marks it executable before anything is built (a bin inside dist/ does not exist yet
// at install time, and npm then links nothing: `npx colo` fails with "could not determine executable to run").
import { access } from 'node:fs/promises';

const built = new URL('../dist/bin.js', import.meta.url);
try {
  await access(built);
} catch {
  process.stderr.write('colo: the CLI is not built yet: run `npm run build` (or `npm start`) in the repository first\n');
  process.exit(3);
}
await import(built.href);
