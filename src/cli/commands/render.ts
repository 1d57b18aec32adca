import { configHelp, configOptions, EXIT_OK, UsageError, type Command } from '../command.js';
import { configFromArgs, createLogger, loadCatalogOnce } from '../runtime.js';
import { buildPlan } from '../../plan/build.js';
import { planOptions } from '../../plan/memo.js';
import { compile } from '../../dataplane/nftables/compile.js';
import { fullTransaction } from '../../dataplane/nftables/transaction.js';
import { declareText, rulesetText } from '../../dataplane/nftables/render.js';

export const renderCommand: Command = {
  name: 'render',
  summary: 'print the ruleset the configured sources compile to',
  help: `Usage: edgeway render --config FILE [--format nft|json|iptables]

Lists the configured sources once and prints the nftables ruleset the agent would
write (table inet edgeway), without touching the kernel.

Options:
${configHelp}
      --format FMT        nft (default): nft text, loadable with nft -f
                          json: {"declare": [nft text lines], "nftables": [commands]} —
                          the JSON transaction the agent runs after declaring the
                          sets nft 1.0.6 cannot declare in JSON
                          iptables: the iptables-restore --noflush input of iptables mode
                          (ClusterIP:port REDIRECTed to the userspace proxy)`,
  options: { ...configOptions, format: { type: 'string' } },
  async run(values) {
    const format = typeof values.format === 'string' ? values.format : 'nft';
    if (!['nft', 'json', 'iptables'].includes(format)) throw new UsageError(`--format must be nft, json or iptables (got "${format}")`);
    const config = await configFromArgs(values);
    const logger = createLogger(config.log.level === 'info' ? 'warn' : config.log.level);
    const { snapshot } = await loadCatalogOnce(config, logger);
    if (format === 'iptables') {
      const { renderIptables } = await import('../../dataplane/iptables/compile.js');
      process.stdout.write(renderIptables(buildPlan(snapshot, planOptions(config, 'iptables'))));
      return EXIT_OK;
    }
    const plan = buildPlan(snapshot, planOptions(config, 'nftables'));
    const rs = compile(plan);
    if (format === 'nft') {
      process.stdout.write(rulesetText(rs));
    } else {
      const tx = fullTransaction(rs);
      const declare = declareText(tx.declare).trim().split('\n');
      process.stdout.write(`${JSON.stringify({ declare, nftables: tx.commands }, null, 1)}\n`);
    }
    return EXIT_OK;
  },
};
