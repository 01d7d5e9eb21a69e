// zeroring, the command's package: what a program may use besides running the command itself,
// the training dashboard (serve a page for a run's events, or follow a run's --out directory).
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
