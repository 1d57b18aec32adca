// README.md documents every config key with its default: the YAML block under
// "## Configuration" must parse to exactly what the schema gives for an empty file.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseConfig } from '../../src/config/load.js';

describe('README configuration block', () => {
  it('lists every key with its real default', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('## Configuration'));
    const block = /```yaml\n([\s\S]*?)```/.exec(section)?.[1];
    expect(block).toBeDefined();
    const documented = parseConfig(parse(block!), 'README.md', {}, {});
    const defaults = parseConfig({}, 'empty.yaml', {}, { NODE_NAME: 'edge-1' });
    expect(documented).toEqual(defaults);
    // And nothing in the block is left to defaults: every key is written out.
    const flat = (o: unknown, p = ''): string[] => (o && typeof o === 'object' && !Array.isArray(o)
      ? Object.entries(o).flatMap(([k, v]) => flat(v, p ? `${p}.${k}` : k)) : [p]);
    expect(flat(parse(block!)).sort()).toEqual(flat(defaults).sort());
  });
});
