/** Errors of the eBPF socket-LB data plane, each with a stable `code`. */
export class EbpfError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EbpfError';
    this.code = code;
  }
}

/** bpftool (or the future addon) failed to run a command. */
export class BpfCommandError extends EbpfError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_EBPF_COMMAND', message, options);
    this.name = 'BpfCommandError';
  }
}

/** The compiled object is missing (scripts/build-bpf.sh not run, or no clang). */
export class BpfObjectMissingError extends EbpfError {
  constructor(path: string) {
    super('ERR_EBPF_OBJECT_MISSING', `eBPF object ${path} not found; run scripts/build-bpf.sh`);
    this.name = 'BpfObjectMissingError';
  }
}

/** The host cannot run socket-LB (no cgroup v2, no bpffs, missing BPF features). */
export class EbpfUnsupportedError extends EbpfError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_EBPF_UNSUPPORTED', message, options);
    this.name = 'EbpfUnsupportedError';
  }
}

/** A configuration value the data plane cannot use (e.g. a pin path with a dot). */
export class EbpfConfigError extends EbpfError {
  constructor(message: string) {
    super('ERR_EBPF_CONFIG', message);
    this.name = 'EbpfConfigError';
  }
}
