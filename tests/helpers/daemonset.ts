// Runs deploy/kubernetes/daemonset.yaml's pod under podman, with the settings read FROM
// THE YAML (host PID and network, ports, hostPath volumes and their propagation, the
// ConfigMap and Secret volumes, capabilities, seccomp, command, args, env), so the
// manifest and what the host tier tests cannot drift. A field this translation does not
// know is an error, not silently dropped. Also a command line:
//   node dist/tests/helpers/daemonset.js [--print] [--image REF] [--name N] [--secret NAME=DIR]...
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ROOT } from './common';

export const DAEMONSET_YAML = path.join(ROOT, 'deploy', 'kubernetes', 'daemonset.yaml');

/** The capabilities containerd and CRI-O give a container that drops none (their defaults). */
export const RUNTIME_DEFAULT_CAPS = ['CHOWN', 'DAC_OVERRIDE', 'FSETID', 'FOWNER', 'MKNOD', 'NET_RAW', 'SETGID', 'SETUID', 'SETFCAP', 'SETPCAP', 'NET_BIND_SERVICE', 'SYS_CHROOT', 'KILL', 'AUDIT_WRITE'];

/** The paths containerd (pkg/oci defaults) masks in a container that is not privileged. */
export const RUNTIME_MASKED_PATHS = ['/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap'];

export interface Manifests {
  /** Every object in the file, in order. */
  objects: any[];
  daemonSet: any;
  configMaps: Map<string, any>;
}

export function loadManifests(file = DAEMONSET_YAML): Manifests {
  const docs = parseAllDocuments(fs.readFileSync(file, 'utf8'));
  for (const d of docs) if (d.errors.length) throw new Error(`${file}: ${d.errors[0].message}`);
  const objects = docs.map((d) => d.toJS()).filter((o) => o !== null);
  const daemonSets = objects.filter((o) => o.kind === 'DaemonSet');
  if (daemonSets.length !== 1) throw new Error(`${file}: ${daemonSets.length} DaemonSets, expected 1`);
  const configMaps = new Map<string, any>(objects.filter((o) => o.kind === 'ConfigMap').map((o) => [o.metadata.name, o]));
  return { objects, daemonSet: daemonSets[0], configMaps };
}

export interface PodmanRunOptions {
  /** Container name. */
  name: string;
  /** Instead of the manifest's image (e.g. the locally built tag). */
  image?: string;
  /** Where ConfigMap volumes are written (one file per data key); a temp dir by default. */
  configDir?: string;
  /** Edits a ConfigMap key's text before it is written, e.g. a test's listen port and pin dir. */
  editConfig?: (configMap: string, key: string, text: string) => string;
  /** secretName -> a host directory holding its keys (tls.crt, ...). */
  secrets?: Record<string, string>;
  /** hostPath -> another host path, e.g. the state directory to a test's own. */
  hostPaths?: Record<string, string>;
  /** The OCI runtime (runc where crun refuses a hybrid cgroup v1/v2 host). */
  runtime?: string;
  /** Changes the parsed pod spec before it is translated (tests: a variant's securityContext). */
  editPod?: (pod: any) => void;
  /** Podman flags added before the image (tests: e.g. --ulimit). */
  extraFlags?: string[];
  file?: string;
}

const KNOWN_POD = new Set(['hostNetwork', 'hostPID', 'containers', 'volumes', 'tolerations', 'priorityClassName', 'nodeSelector', 'terminationGracePeriodSeconds', 'dnsPolicy', 'serviceAccountName']);
const KNOWN_CONTAINER = new Set(['name', 'image', 'imagePullPolicy', 'command', 'args', 'env', 'securityContext', 'ports', 'volumeMounts', 'resources', 'readinessProbe', 'livenessProbe']);
const KNOWN_SECURITY = new Set(['privileged', 'capabilities', 'seccompProfile', 'readOnlyRootFilesystem', 'allowPrivilegeEscalation', 'runAsUser', 'runAsNonRoot']);

function unknownKeys(obj: any, known: Set<string>, at: string): void {
  const extra = Object.keys(obj ?? {}).filter((k) => !known.has(k));
  if (extra.length) throw new Error(`daemonset: ${at} has ${extra.join(', ')}, which the podman translation does not know`);
}

/** podman's argument list (after `podman`) that runs the DaemonSet's pod as its node would. */
export function podmanRunArgs(o: PodmanRunOptions): string[] {
  const { daemonSet, configMaps } = loadManifests(o.file);
  const pod = daemonSet.spec.template.spec;
  o.editPod?.(pod);
  unknownKeys(pod, KNOWN_POD, 'the pod spec');
  if (pod.containers.length !== 1) throw new Error(`daemonset: ${pod.containers.length} containers, expected 1`);
  const c = pod.containers[0];
  unknownKeys(c, KNOWN_CONTAINER, `container ${c.name}`);
  const args: string[] = [];
  if (o.runtime) args.push('--runtime', o.runtime);
  args.push('run', '-d', '--name', o.name);
  args.push('--network', pod.hostNetwork ? 'host' : 'bridge');
  if (pod.hostPID) args.push('--pid', 'host');
  if (!pod.hostNetwork) for (const p of c.ports ?? []) if (p.hostPort) args.push('-p', `${p.hostPort}:${p.containerPort}/${(p.protocol ?? 'TCP').toLowerCase()}`);

  const sc = c.securityContext ?? {};
  unknownKeys(sc, KNOWN_SECURITY, `container ${c.name} securityContext`);
  if (sc.privileged) {
    // every capability and device, no seccomp filter, nothing masked: the runtime ignores the rest
    args.push('--privileged');
  } else {
    const drop: string[] = sc.capabilities?.drop ?? [];
    const add: string[] = sc.capabilities?.add ?? [];
    // Start from what a Kubernetes runtime gives (podman's own defaults differ) unless ALL is dropped.
    const base = drop.includes('ALL') ? [] : RUNTIME_DEFAULT_CAPS.filter((x) => !drop.includes(x));
    args.push('--cap-drop', 'all');
    for (const cap of [...new Set([...base, ...add])]) args.push('--cap-add', `CAP_${cap}`);
    const seccomp = sc.seccompProfile?.type ?? 'Unconfined'; // the kubelet's default without SeccompDefault
    if (seccomp === 'Unconfined') args.push('--security-opt', 'seccomp=unconfined');
    else if (seccomp !== 'RuntimeDefault') throw new Error(`daemonset: seccompProfile ${seccomp} is not translated`);
    // podman masks more than containerd does (/sys/dev/block among them, which the agent
    // reads to resolve devices): mask exactly what a Kubernetes runtime masks instead.
    args.push('--security-opt', 'unmask=ALL', '--security-opt', `mask=${RUNTIME_MASKED_PATHS.join(':')}`);
  }
  if (sc.readOnlyRootFilesystem) args.push('--read-only');
  if (sc.allowPrivilegeEscalation === false) args.push('--security-opt', 'no-new-privileges');

  const volumes = new Map<string, any>((pod.volumes ?? []).map((v: any) => [v.name, v]));
  const configDir = o.configDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'iofilter-configmap-'));
  for (const m of c.volumeMounts ?? []) {
    const v = volumes.get(m.name);
    if (!v) throw new Error(`daemonset: volumeMount ${m.name} names no volume`);
    let src: string;
    let ro = !!m.readOnly;
    if (v.hostPath) {
      src = o.hostPaths?.[v.hostPath.path] ?? v.hostPath.path;
      if (v.hostPath.type === 'DirectoryOrCreate') fs.mkdirSync(src, { recursive: true });
      else if (v.hostPath.type === 'Directory' && !fs.statSync(src).isDirectory()) throw new Error(`daemonset: hostPath ${src} is not a directory`);
    } else if (v.configMap) {
      const cm = configMaps.get(v.configMap.name);
      if (!cm) throw new Error(`daemonset: configMap ${v.configMap.name} is not in the file`);
      src = path.join(configDir, v.name);
      fs.mkdirSync(src, { recursive: true });
      for (const [k, text] of Object.entries<string>(cm.data ?? {})) fs.writeFileSync(path.join(src, k), o.editConfig ? o.editConfig(cm.metadata.name, k, text) : text);
      ro = true; // the kubelet mounts ConfigMaps read-only
    } else if (v.secret) {
      const dir = o.secrets?.[v.secret.secretName];
      if (!dir) throw new Error(`daemonset: secret ${v.secret.secretName}: pass its directory (--secret ${v.secret.secretName}=DIR)`);
      src = dir;
      ro = true;
    } else throw new Error(`daemonset: volume ${v.name} is of a kind the podman translation does not know`);
    const opts = [ro ? 'ro' : 'rw'];
    if (m.mountPropagation === 'HostToContainer') opts.push('rslave');
    else if (m.mountPropagation === 'Bidirectional') opts.push('rshared');
    else if (m.mountPropagation && m.mountPropagation !== 'None') throw new Error(`daemonset: mountPropagation ${m.mountPropagation}`);
    args.push('-v', `${src}:${m.mountPath}:${opts.join(',')}`);
  }
  for (const e of c.env ?? []) {
    if (e.valueFrom) throw new Error(`daemonset: env ${e.name} uses valueFrom, which the podman translation does not know`);
    args.push('-e', `${e.name}=${e.value ?? ''}`);
  }
  if (c.command) args.push('--entrypoint', JSON.stringify(c.command));
  args.push(...(o.extraFlags ?? []));
  args.push(o.image ?? c.image, ...(c.args ?? []));
  return args;
}

if (require.main === module) {
  const argv = process.argv.slice(2);
  const o: PodmanRunOptions = { name: 'iofilter-agent', secrets: {} };
  let print = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--print') print = true;
    else if (a === '--image') o.image = argv[++i];
    else if (a === '--name') o.name = argv[++i];
    else if (a === '--runtime') o.runtime = argv[++i];
    else if (a === '--secret') {
      const [k, v] = (argv[++i] ?? '').split('=');
      if (!k || !v) throw new Error('--secret NAME=DIR');
      o.secrets![k] = path.resolve(v);
    } else {
      console.error(`daemonset: unknown argument ${a}`);
      process.exit(2);
    }
  }
  const args = podmanRunArgs(o);
  if (print) console.log(['podman', ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' '));
  else process.stdout.write(execFileSync('podman', args, { encoding: 'utf8' }));
}
