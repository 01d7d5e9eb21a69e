export { getLogger, type Logger } from './logger.ts';
