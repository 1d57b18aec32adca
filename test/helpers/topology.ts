/** The topology moved to src/lab/ so the demo (src/demo/) shares it; tests keep importing it from here. */
export * from '../../src/lab/topology.js';
