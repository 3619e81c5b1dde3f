import { ExitCode, UsageError, type Command } from '../command.js';
import { flagName, SETTINGS } from '../config/schema.js';
import { commands } from '../registry.js';

const help = `Usage: colo completion bash|zsh

Prints a shell completion script for colo: commands, \`colo help\` topics, and every setting's flag of
\`colo node\`, \`colo primary\` and \`colo secondary\`; file names elsewhere.

  bash:  colo completion bash > /etc/bash_completion.d/colo     (or: source <(colo completion bash))
  zsh:   colo completion zsh > "\${fpath[1]}/_colo"               (or: source <(colo completion zsh))

Exit codes: 0 printed, 2 bad usage (no shell, or one other than bash and zsh).
`;

/** The bash completion function; zsh runs the same one through bashcompinit. */
function bashScript(): string {
  const top = [...new Set(commands.map((c) => c.path[0]!)), 'help', 'completion'].sort().join(' ');
  const groups = new Map<string, string[]>();
  for (const c of commands) if (c.path.length > 1) groups.set(c.path[0]!, [...(groups.get(c.path[0]!) ?? []), c.path[1]!]);
  const nodeFlags = ['--config', '--print-config', '--blackhole', '--help', ...SETTINGS.map((s) => `--${flagName(s.path)}`)].join(' ');
  const subcases = [...groups].map(([g, subs]) => `    ${g}) if [ "$COMP_CWORD" -eq 2 ]; then COMPREPLY=($(compgen -W "${subs.join(' ')}" -- "$cur")); return; fi ;;`).join('\n');
  return `# colo completion (colo completion bash)
_colo() {
  local cur=\${COMP_WORDS[COMP_CWORD]}
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "${top}" -- "$cur"))
    return
  fi
  case "\${COMP_WORDS[1]}" in
${subcases}
    help) COMPREPLY=($(compgen -W "${top}" -- "$cur")); return ;;
    completion) COMPREPLY=($(compgen -W "bash zsh" -- "$cur")); return ;;
    node|primary|secondary)
      if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "${nodeFlags}" -- "$cur")); return; fi ;;
  esac
  if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "--help" -- "$cur")); else COMPREPLY=($(compgen -f -- "$cur")); fi
}
complete -F _colo colo
`;
}

const command: Command = {
  path: ['completion'],
  summary: 'print a bash or zsh completion script',
  help,
  async run(argv, io) {
    const shell = argv[0];
    if (argv.length !== 1 || (shell !== 'bash' && shell !== 'zsh')) throw new UsageError('name the shell: colo completion bash, or colo completion zsh');
    io.stdout.write(shell === 'bash' ? bashScript() : `#compdef colo\nautoload -U +X bashcompinit && bashcompinit\n${bashScript()}`);
    return ExitCode.OK;
  },
};
export default command;
