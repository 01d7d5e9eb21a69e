// Where a benchmark writes unless told otherwise: benchmarks/results/<what>-<machine>.json. A
// result is named by what it measured and on which machine, never by when, so a new run replaces
// the result it supersedes and the older figures stay in git history.
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The folder of the project's recorded results. */
export const RESULTS_DIR = fileURLToPath(new URL('../results/', import.meta.url));

/** What a tfjs backend reports about its WebGPU adapter (the fields the name needs). */
export interface AdapterLike {
  vendor?: string;
  device?: string;
  software?: boolean;
}

/**
 * The machine part of a result's name. A hardware GPU is named by its model (the adapter
 * `nvidia-h200` gives `h200`), since that is what a GPU figure depends on; anything else by the
 * CPUs this process may use (`2vcpu`), since the CPU benchmarks here run on small shared VMs
 * whose size is what sets their figures.
 */
export function machineTag(adapter?: AdapterLike): string {
  if (adapter && adapter.software !== true && adapter.device) {
    const vendor = adapter.vendor ? `${adapter.vendor.toLowerCase()}-` : '';
    const device = adapter.device.toLowerCase();
    const model = device.startsWith(vendor) ? device.slice(vendor.length) : device;
    return model.replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
  }
  return `${availableParallelism()}vcpu`;
}

/** benchmarks/results/<what>-<machine>.json, the default output of a benchmark. */
export function resultPath(what: string, adapter?: AdapterLike): string {
  return join(RESULTS_DIR, `${what}-${machineTag(adapter)}.json`);
}
