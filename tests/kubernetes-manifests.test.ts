// examples/kubernetes/train.yaml checked offline (no cluster here): every document validates
// against the Kubernetes OpenAPI schema that kubernetes-models ships (ajv-compiled validators),
// which does reject a field of the wrong type; the Job, Service and pod template agree with each
// other (Indexed, parallelism = completions = WORLD_SIZE, MASTER_ADDR is pod 0's name under the
// headless Service); and the pods' environment, resolved as the kubelet would for each index,
// starts `zeroring train` ranks that form the job and train (rank 0's name stood in for by this
// machine's, the one value that needs the cluster's DNS).
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Service } from 'kubernetes-models/v1/Service';
import { freePort } from '@zeroring/comm';
import { repoRoot, runCli } from './fixtures/cli.ts';

const dir = join(repoRoot, 'examples', 'kubernetes');
const root = mkdtempSync(join(tmpdir(), 'zr-k8s-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: Record<string, unknown>;
}

/** The model class of each kind the example uses: its validate() throws on a schema violation. */
const models: Record<string, (o: Manifest) => { validate(): void }> = {
  'v1/Service': (o) => new Service(o as never),
  'v1/PersistentVolumeClaim': (o) => new PersistentVolumeClaim(o as never),
  'batch/v1/Job': (o) => new Job(o as never),
};
const validate = (o: Manifest) => {
  const model = models[`${o.apiVersion}/${o.kind}`];
  if (!model) throw new Error(`no schema for ${o.apiVersion} ${o.kind} in this test`);
  model(o).validate();
};

function manifests(): Manifest[] {
  const docs = parseAllDocuments(readFileSync(join(dir, 'train.yaml'), 'utf8'));
  if (!Array.isArray(docs)) throw new Error('train.yaml: not a YAML stream');
  for (const d of docs) if (d.errors.length) throw new Error(`train.yaml: ${d.errors[0]!.message}`);
  return docs.map((d) => d.toJS() as Manifest);
}
const byKind = (kind: string) => manifests().find((m) => m.kind === kind)!;

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string }; secretKeyRef?: { name: string; key: string } };
}
interface PodSpec {
  subdomain?: string;
  containers: Array<{ command: string[]; args?: string[]; env: EnvVar[] }>;
}
const podSpec = (job: Manifest) => (job.spec.template as { spec: PodSpec }).spec;

const INDEX_ANNOTATION = "metadata.annotations['batch.kubernetes.io/job-completion-index']";

/** The container's environment as the kubelet would set it for pod `index`, the secret's value given. */
function podEnv(env: EnvVar[], index: number, secret: (name: string, key: string) => string) {
  const out: Record<string, string> = {};
  for (const e of env) {
    if (e.value !== undefined) out[e.name] = e.value;
    else if (e.valueFrom?.fieldRef?.fieldPath === INDEX_ANNOTATION) out[e.name] = String(index);
    else if (e.valueFrom?.secretKeyRef)
      out[e.name] = secret(e.valueFrom.secretKeyRef.name, e.valueFrom.secretKeyRef.key);
    else throw new Error(`${e.name}: a source this test does not resolve (${JSON.stringify(e.valueFrom)})`);
  }
  return out;
}

describe('examples/kubernetes/train.yaml', () => {
  it('every document validates against the Kubernetes schema', () => {
    const docs = manifests();
    expect(docs.map((d) => d.kind)).toEqual(['Service', 'PersistentVolumeClaim', 'Job']);
    for (const d of docs) expect(() => validate(d), d.kind).not.toThrow();
  });

  it('the validation rejects a field of the wrong type', () => {
    const job = byKind('Job');
    job.spec.completions = 'two';
    expect(() => validate(job)).toThrow(/completions must be integer/);
    const env = byKind('Job');
    (podSpec(env).containers[0]!.env as unknown as Array<{ value: unknown }>)[1]!.value = 2;
    expect(() => validate(env)).toThrow(/env\/1\/value must be string/);
    const service = byKind('Service');
    service.spec.ports = [{ port: '29500' }];
    expect(() => validate(service)).toThrow(/port must be integer/);
  });

  it('an Indexed Job of WORLD_SIZE pods under a headless Service that names pod 0 as MASTER_ADDR', () => {
    const job = byKind('Job');
    const service = byKind('Service');
    const pod = podSpec(job);
    const env = Object.fromEntries(pod.containers[0]!.env.map((e) => [e.name, e]));
    expect(job.spec).toMatchObject({ completionMode: 'Indexed', backoffLimit: 0 });
    expect(job.spec.parallelism).toBe(job.spec.completions);
    expect(env.WORLD_SIZE?.value).toBe(String(job.spec.completions));
    expect(env.RANK?.valueFrom?.fieldRef?.fieldPath).toBe(INDEX_ANNOTATION);
    expect(service.spec).toMatchObject({ clusterIP: 'None', selector: { 'job-name': job.metadata.name } });
    // Pod N of an Indexed Job is named <job>-N; its DNS name is <pod>.<subdomain> when the
    // subdomain is a headless Service's name.
    expect(pod.subdomain).toBe(service.metadata.name);
    expect(env.MASTER_ADDR?.value).toBe(`${job.metadata.name}-0.${service.metadata.name}`);
    expect(service.spec.ports).toContainEqual(expect.objectContaining({ port: Number(env.MASTER_PORT?.value) }));
  });

  it('each variable it sets is one zeroring reads (docs/environment.md), and the secret is the README one', () => {
    const documented = readFileSync(join(repoRoot, 'docs', 'environment.md'), 'utf8');
    const env = podSpec(byKind('Job')).containers[0]!.env;
    for (const e of env) expect(documented, e.name).toMatch(new RegExp(`^\\| \`${e.name}\` \\| [^|]*(comm|cli)`, 'm'));
    for (const name of ['RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT', 'ZERORING_TOKEN'])
      expect(env.map((e) => e.name)).toContain(name);
    const ref = env.find((e) => e.name === 'ZERORING_TOKEN')!.valueFrom!.secretKeyRef!;
    const readme = readFileSync(join(dir, 'README.md'), 'utf8');
    expect(readme).toContain(`kubectl create secret generic ${ref.name} --from-literal=${ref.key}=`);
  });

  it("the pods' command and environment, index by index, train as one job", async () => {
    const job = byKind('Job');
    const container = podSpec(job).containers[0]!;
    expect(container.command).toEqual(['zeroring', 'train']);
    const token = 'k8s-manifest-test-token';
    const port = String(await freePort());
    const out = join(root, 'run');
    // A short run into a local directory instead of the manifest's args, and this machine's
    // name for pod 0's: the rest of the environment is the manifest's, resolved per index.
    const args = '--backend wasm --steps 2 --batch-size 2 --eval-batches 1 --sample-tokens 0'.split(' ');
    const ranks = Array.from({ length: Number(job.spec.completions) }, (_, index) => {
      const env = { ...podEnv(container.env, index, () => token), MASTER_ADDR: hostname(), MASTER_PORT: port };
      return runCli([...container.command.slice(1), ...args, '--out', out], { env, timeoutMs: 120_000 });
    });
    const results = await Promise.all(ranks);
    for (const r of results) expect(r.code, r.output).toBe(0);
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    expect(summary).toMatchObject({ steps: 2, worldSize: 2, config: { nproc: 1 } });
  }, 180_000);
});
