// Typed errors of @zeroring/backend. Each names the bad value and what was expected, so a
// user who asked for a backend learns why they did not get it and what to do about it.
// (Backend and comm are siblings in DESIGN.md's layering, so these do not extend comm's
// ZeroringError; both carry a stable `name` that callers can match on.)

export const BACKEND_KINDS = ['auto', 'webgpu', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendKind = (typeof BACKEND_KINDS)[number];

export class BackendError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** `initBackend` was given a kind it does not know. */
export class UnknownBackendError extends BackendError {
  constructor(readonly value: unknown) {
    super(`unknown backend ${JSON.stringify(value)}: expected one of ${BACKEND_KINDS.join(', ')}`);
  }
}

/** The backend exists but cannot start on this machine (no adapter, no driver, load failure). */
export class BackendUnavailableError extends BackendError {
  constructor(
    readonly backend: Exclude<BackendKind, 'auto'>,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`backend "${backend}" is unavailable: ${reason}`, options);
  }
}

/**
 * Neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node is installed. They are optional
 * peer dependencies rather than dependencies because their install script downloads a
 * libtensorflow binary (hundreds of MB, CUDA-specific for -gpu), which fails on machines
 * without access to that download and is wasted where WebGPU or wasm is used.
 */
export class TensorflowNotInstalledError extends BackendUnavailableError {
  readonly installHint =
    'pnpm add @tensorflow/tfjs-node-gpu@4.22.0   # NVIDIA GPU with CUDA 11.x + cuDNN 8\n' +
    'pnpm add @tensorflow/tfjs-node@4.22.0       # CPU build of libtensorflow';

  constructor(
    readonly tried: string[],
    options?: { cause?: unknown },
  ) {
    super(
      'tensorflow',
      `none of ${tried.join(', ')} is installed; install one next to zeroring: ` +
        '`pnpm add @tensorflow/tfjs-node-gpu@4.22.0` (NVIDIA GPU with CUDA 11.x and cuDNN 8) or ' +
        '`pnpm add @tensorflow/tfjs-node@4.22.0` (CPU build of libtensorflow). They are optional peers, ' +
        'not installed by default, because their install script downloads libtensorflow from ' +
        'storage.googleapis.com, which webgpu, wasm and cpu do not need',
      options,
    );
  }
}
