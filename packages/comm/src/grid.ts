// The usual 2D grid of pipeline × data parallelism, as Megatron's parallel_state lays it out:
// a pipeline is P consecutive ranks (stage s of pipeline i is rank i*P + s), and the ranks that
// hold the same stage in every pipeline form a data-parallel group. Every rank creates every
// group, in the same order, so that newGroup's numbering agrees; each keeps its own two.
import { ConfigError } from './errors.ts';
import type { ProcessGroup } from './process-group.ts';

export interface GridGroups {
  /** The P ranks of this rank's pipeline, numbered by stage. */
  pipeline: ProcessGroup;
  /** The ranks that hold this rank's stage, one per pipeline, numbered by pipeline. */
  data: ProcessGroup;
  /** This rank's stage within its pipeline (its rank in `pipeline`). */
  stage: number;
  /** Which pipeline this rank belongs to (its rank in `data`). */
  pipelineIndex: number;
}

export async function gridGroups(pg: ProcessGroup, o: { pp: number }): Promise<GridGroups> {
  const P = o.pp;
  const n = pg.worldSize;
  if (!Number.isInteger(P) || P < 1 || n % P !== 0) {
    throw new ConfigError(`gridGroups: pp=${P} must be a positive divisor of the world size ${n}`);
  }
  const D = n / P;
  const range = (k: number) => Array.from({ length: k }, (_, i) => i);
  let data: ProcessGroup | null = null;
  let pipeline: ProcessGroup | null = null;
  for (const s of range(P)) data = (await pg.newGroup(range(D).map((i) => i * P + s))) ?? data;
  for (const i of range(D)) pipeline = (await pg.newGroup(range(P).map((s) => i * P + s))) ?? pipeline;
  return { pipeline: pipeline!, data: data!, stage: pg.rank % P, pipelineIndex: Math.floor(pg.rank / P) };
}
