// The plain-JavaScript CPU backend: always available, the reference the others are tested against.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { BackendUnavailableError } from './errors.ts';

export async function initCpu(): Promise<void> {
  if (!(await tf.setBackend('cpu'))) throw new BackendUnavailableError('cpu', 'tf.setBackend("cpu") returned false');
  await tf.ready();
  // tfjs-backend-cpu prints a "install tfjs-node" banner on its first write; initBackend
  // logs its own reason for the choice instead.
  const backend = tf.backend() as unknown as { firstUse?: boolean };
  if ('firstUse' in backend) backend.firstUse = false;
}
