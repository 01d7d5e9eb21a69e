// zeroring, the command's package: what a program may use besides running the command itself,
// the training dashboard (serve a page for a run's events, or follow a run's --out directory),
// and the defaults `zeroring train` takes per GPT preset (steps, batch size, learning rate).
export { PRESET_DEFAULTS } from './train-job.ts';
export {
  startDashboard,
  startDashboardThread,
  DashboardStartError,
  followRun,
  readRunEvents,
  RunDirError,
  type Dashboard,
  type DashboardOptions,
  type DashboardThread,
} from './dashboard/index.ts';
