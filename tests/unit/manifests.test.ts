// deploy/kubernetes/*.yaml are valid Kubernetes objects (tests/helpers/k8s-validate.ts:
// the API's field names, types and enums for the kinds used, and the API server's rules),
// the ConfigMap's agent.json is a config the agent accepts, the paths the pod spec and
// the config name agree, and the podman translation (the host tier's runner) knows every
// field. The checker is shown to catch each kind of mistake it claims to.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { resolveConfig } from '../../agent/config';
import { ROOT } from '../helpers/common';
import { loadManifests, podmanRunArgs } from '../helpers/daemonset';
import { validateObjects } from '../helpers/k8s-validate';

const DIR = path.join(ROOT, 'deploy', 'kubernetes');
const files = fs.readdirSync(DIR).filter((f) => /\.ya?ml$/.test(f));
const clone = <T>(x: T): T => structuredClone(x);

describe('the Kubernetes manifests', () => {
  test('there are manifests to check', () => {
    expect(files).toContain('daemonset.yaml');
  });

  test.each(files)('%s: every object is valid', (f) => {
    const { objects } = loadManifests(path.join(DIR, f));
    expect(objects.length).toBeGreaterThan(0);
    expect(validateObjects(objects)).toEqual([]);
  });

  describe('daemonset.yaml', () => {
    const { daemonSet, configMaps } = loadManifests();
    const pod = daemonSet.spec.template.spec;
    const c = pod.containers[0];
    const mountOf = (volume: string) => c.volumeMounts.find((m: any) => m.name === volume)?.mountPath as string;
    const configVolume = pod.volumes.find((v: any) => v.configMap);
    const cm = configMaps.get(configVolume.configMap.name);

    test('the ConfigMap is in the same namespace and its agent.json is a config the agent accepts, with mTLS on its non-loopback listener', () => {
      expect(cm.metadata.namespace).toBe(daemonSet.metadata.namespace);
      const cfg = resolveConfig(JSON.parse(cm.data['agent.json']));
      expect(cfg.listen).toMatch(/^0\.0\.0\.0:/);
      expect(cfg.tls).toBeDefined();
      expect(Number(cfg.listen.split(':')[1])).toBe(c.ports.find((p: any) => p.name === 'grpc').containerPort);
      expect(Number(cfg.metricsListen!.split(':')[1])).toBe(c.ports.find((p: any) => p.name === 'metrics').containerPort);
      expect(Number(daemonSet.spec.template.metadata.annotations['prometheus.io/port'])).toBe(Number(cfg.metricsListen!.split(':')[1]));
    });

    test('the paths agree: --config is the ConfigMap key, the TLS files are in the secret mount, the state dir and pin dir are host paths', () => {
      const cfgArg = c.args[c.args.indexOf('--config') + 1];
      expect(path.dirname(cfgArg)).toBe(mountOf(configVolume.name));
      expect(Object.keys(cm.data)).toContain(path.basename(cfgArg));
      const cfg = resolveConfig(JSON.parse(cm.data['agent.json']));
      const tlsVolume = pod.volumes.find((v: any) => v.secret).name;
      for (const f of Object.values(cfg.tls!)) expect(path.dirname(f)).toBe(mountOf(tlsVolume));
      // the innermost mount holding p, if it is a hostPath
      const hostPathMount = (p: string) => {
        const m = c.volumeMounts.filter((m: any) => p === m.mountPath || p.startsWith(m.mountPath + '/')).sort((x: any, y: any) => y.mountPath.length - x.mountPath.length)[0];
        return m && pod.volumes.find((v: any) => v.name === m.name).hostPath ? m : undefined;
      };
      expect(hostPathMount(cfg.stateDir)).toBeDefined();
      expect(hostPathMount(cfg.pinDir)).toMatchObject({ mountPropagation: 'HostToContainer' });
      expect(hostPathMount('/sys/fs/cgroup')).toBeDefined();
      expect(pod.hostPID).toBe(true); // --pid names host pids
    });

    test('the podman translation knows every field and gives what the YAML says', () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iofilter-manifests-'));
      try {
        const args = podmanRunArgs({ name: 'x', configDir: dir, secrets: { [pod.volumes.find((v: any) => v.secret).secret.secretName]: dir } });
        expect(args.slice(0, 3)).toEqual(['run', '-d', '--name']);
        expect(args).toEqual(expect.arrayContaining(['--network', 'host', '--pid', 'host', '--privileged', '-v', '/sys/fs/bpf:/sys/fs/bpf:rw,rslave', '-v', '/dev:/dev:ro']));
        expect(args.slice(-3)).toEqual([c.image, ...c.args]);
        expect(fs.readFileSync(path.join(dir, configVolume.name, 'agent.json'), 'utf8')).toBe(cm.data['agent.json']);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('the checker catches', () => {
    const { objects } = loadManifests();
    const ds = () => {
      const o = clone(objects);
      return { o, d: o.find((x: any) => x.kind === 'DaemonSet'), c: o.find((x: any) => x.kind === 'DaemonSet').spec.template.spec.containers[0] };
    };
    const cases: [string, (x: ReturnType<typeof ds>) => void, RegExp][] = [
      ['a misspelt field', ({ c }) => (c.volumeMounts[0].mountpath = '/x'), /volumeMounts\[0\]\.mountpath: unknown field/],
      ['a missing required field', ({ c }) => delete c.volumeMounts[0].mountPath, /volumeMounts\[0\]\.mountPath: required/],
      ['a number where the API wants a string (an unquoted annotation)', ({ d }) => (d.spec.template.metadata.annotations['prometheus.io/port'] = 9464), /annotations\.prometheus\.io\/port: expected a string/],
      ['a value outside an enum', ({ d }) => (d.spec.template.spec.volumes[0].hostPath.type = 'Dir'), /hostPath\.type: "Dir" is not one of/],
      ['a capability with the CAP_ prefix', ({ c }) => (c.securityContext.capabilities = { add: ['CAP_BPF'] }), /"CAP_BPF" is not one of/],
      ['a port out of range', ({ c }) => (c.ports[0].containerPort = 70000), /containerPort: 70000 is outside 1\.\.65535/],
      ['a selector that does not match the template', ({ d }) => (d.spec.selector.matchLabels.app = 'other'), /does not match template labels/],
      ['a hostPort unlike its containerPort under hostNetwork', ({ c }) => (c.ports[0].hostPort = 1234), /hostPort must match containerPort/],
      ['a mount of an undefined volume', ({ c }) => c.volumeMounts.push({ name: 'nope', mountPath: '/nope' }), /nope: no volume of that name/],
      ['a mount point inside the read-only ConfigMap mount', ({ c }) => (c.volumeMounts.find((m: any) => m.name === 'tls').mountPath = '/etc/iofilter/tls'), /\/etc\/iofilter\/tls is inside the read-only mount \/etc\/iofilter/],
      ['a name that is not a DNS label', ({ c }) => (c.name = 'Agent_1'), /containers\[0\]\.name: "Agent_1" does not match/],
      ['an object defined twice', ({ o }) => o.push(clone(o[1])), /defined twice/],
      ['a kind it does not know', ({ o }) => o.push({ apiVersion: 'v1', kind: 'Service', metadata: { name: 's' } }), /v1\/Service is not a kind this check knows/],
    ];
    test.each(cases)('%s', (_name, mutate, want) => {
      const x = ds();
      mutate(x);
      const errs = validateObjects(x.o);
      expect(errs.length).toBeGreaterThan(0);
      expect(errs.join('\n')).toMatch(want);
    });
  });
});
