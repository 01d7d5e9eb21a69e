export * from './model.ts';
export * from './engine.ts';
export * from './strategy.ts';
export * from './events.ts';
export { LocalStrategy, globalSquaredNorm, clipCoefficient, type LocalStrategyOptions } from './strategies/local.ts';
export * from './optim/adamw.ts';
