/** Errors of the config subsystem. Each has a stable `code`. */
export class ConfigError extends Error {
  readonly code = 'ERR_CONFIG';
  constructor(
    readonly file: string,
    readonly issues: readonly { path: string; message: string }[],
    options?: { cause?: unknown },
  ) {
    super(
      `invalid config ${file}:\n` + issues.map((i) => `  ${i.path || '(root)'}: ${i.message}`).join('\n'),
      options,
    );
    this.name = 'ConfigError';
  }
}
