// Deliberate fault injection, for tests of failure handling with real processes. These are
// documented test hooks read from the environment; unset (the default) they do nothing.
//
//   ZERORING_FAULT_RANK=R           the rank that misbehaves (default 1)
//   ZERORING_FAULT_KILL_AT_STEP=N   that rank kills itself with SIGKILL as it enters
//                                   finishStep of step N (0-based; DDP gradient all-reduces may
//                                   still be in flight), on the first attempt only
//                                   (ZERORING_RESTART_COUNT 0), so an elastic restart runs clean
//   ZERORING_FAULT_NAN_AT_STEP=N    that rank's gradients of the N-th step this process runs
//                                   (0-based) get a NaN, on every attempt (see nonfinite.ts)
import type { Strategy } from './strategy.ts';

export interface FaultPlan {
  killAtStep?: number;
  nanAtLocalStep?: number;
}

type Env = Readonly<Record<string, string | undefined>>;

function stepFrom(env: Env, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name}=${JSON.stringify(raw)}, expected a step index >= 0`);
  return n;
}

/** The faults this rank should inject, from the environment. */
export function faultPlanFromEnv(rank: number, env: Env = process.env): FaultPlan {
  const target =
    env.ZERORING_FAULT_RANK === undefined || env.ZERORING_FAULT_RANK === '' ? 1 : Number(env.ZERORING_FAULT_RANK);
  if (rank !== target) return {};
  const attempt = Number(env.ZERORING_RESTART_COUNT ?? env.TORCHELASTIC_RESTART_COUNT ?? 0);
  const plan: FaultPlan = {};
  const kill = stepFrom(env, 'ZERORING_FAULT_KILL_AT_STEP');
  if (kill !== undefined && attempt === 0) plan.killAtStep = kill;
  const nan = stepFrom(env, 'ZERORING_FAULT_NAN_AT_STEP');
  if (nan !== undefined) plan.nanAtLocalStep = nan;
  return plan;
}

/** `strategy`, except that finishStep of step `plan.killAtStep` ends this process with SIGKILL. */
export function withKillHook<S extends Strategy>(strategy: S, plan: FaultPlan): S {
  const at = plan.killAtStep;
  if (at === undefined) return strategy;
  return new Proxy(strategy, {
    get(target, prop) {
      if (prop === 'finishStep') {
        return (o: Parameters<S['finishStep']>[0]) => {
          if (o.step === at) {
            process.stderr.write(`ZERORING_FAULT_KILL_AT_STEP: rank killing itself (SIGKILL) at step ${at}\n`);
            process.kill(process.pid, 'SIGKILL');
          }
          return target.finishStep(o);
        };
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
