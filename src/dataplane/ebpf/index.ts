/** Public surface of the eBPF socket-LB data plane (see README.md). */
export { SocketLb, type SocketLbOptions, type SocketLbStatus, type StartMode } from './socket-lb.js';
export { BpftoolBackend, type BpfBackend, type MapOp, type MapEntry, type PerCpuEntry, type CgroupAttachment } from './backend.js';
export { LibbpfBackend, defaultBpfBackend, nativeBpf } from './libbpf-backend.js';
export { probeSocketLb, findCgroup2Root, DEFAULT_OBJECT, type SocketLbProbe } from './host.js';
export { desiredFrontends, type FallbackReason } from './sync.js';
export { EbpfDataplane, socketLbDecision, type PlanDataplane, type SocketLbLifecycle, type DataplaneMode } from './combined.js';
export { SOCK_LB_ABI } from './layout.js';
export * from './errors.js';
