// Live training dashboard: server, run-directory reader, train-command wiring.
export { startDashboard, type Dashboard, type DashboardOptions } from './server.ts';
export { startDashboardThread, DashboardStartError, type DashboardThread } from './thread.ts';
export { followRun, readRunEvents, RunDirError, METRICS_FILE, SUMMARY_FILE } from './run-reader.ts';
export {
  attachDashboard,
  dashboardOption,
  resolveDashboardPort,
  parsePort,
  DEFAULT_DASHBOARD_PORT,
  type AttachedDashboard,
} from './attach.ts';
