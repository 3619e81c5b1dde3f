import { envName, flagName, SETTINGS } from './schema.js';

/** docs/configuration.md's settings table, generated from the schema (a test checks the file matches). */
export function configurationTable(): string {
  const rows = SETTINGS.map((s) => {
    const def = s.default === undefined ? '' : `\`${s.default}\``;
    const type = s.type === 'enum' ? s.values!.map((v) => `\`${v}\``).join(' \\| ') : s.type;
    return `| \`${s.path}\` | ${type} | ${def} | \`${envName(s.path)}\` / \`--${flagName(s.path)}\` | ${s.doc.replace(/\|/g, '\\|')}${s.secret ? ' *(secret: never logged)*' : ''} |`;
  });
  return ['| setting | type | default | environment / flag | meaning |', '|---|---|---|---|---|', ...rows].join('\n');
}
