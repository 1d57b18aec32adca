/**
 * The static catalog of the two-LAN lab's e2e tests: Nodes of topology.ts's hosts
 * and one-endpoint Services, written by src/lab/catalog-yaml.ts (which the soak
 * shares); tested in test/lab/catalog-yaml.test.ts.
 */
export { labCatalogYaml, type LabHost, type LabNode, type LabService } from '../../src/lab/catalog-yaml.js';
