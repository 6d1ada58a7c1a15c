// kvshard/client: a client that routes each request by its key's slot (docs/client.md).

export {
  KvClient,
  type CallOptions,
  type DeleteResult,
  type KvClientOptions,
  type ReadFrom,
  type SetOptions,
  type SetResult,
  type WriteResult,
} from './client.js';
export { KvClientError, type ClientOnlyCode } from './errors.js';
export { clusterMapVersion, keySlot, type ClusterMap, type MapShard } from './cluster-map.js';
