// An offline check of Kubernetes objects for the kinds and fields this project's
// manifests use (Debian packages no schema validator, and kubectl validates against a
// cluster's OpenAPI). The field names, types and enums are those of the Kubernetes API
// reference (apps/v1 DaemonSet, core/v1 ConfigMap, PodSpec, Container, Volume; 1.30);
// the semantic rules are ones the API server enforces (apps and core validation) plus
// one a runtime enforces at start (no mount point inside a read-only volume). A field
// the schema does not list is an error: a typo must not pass as an unknown extension.

type Schema =
  | { t: 'string'; enum?: readonly string[]; pattern?: RegExp; max?: number }
  | { t: 'int'; min?: number; max?: number }
  | { t: 'bool' }
  | { t: 'intOrString' }
  | { t: 'obj'; props: Record<string, Schema>; required?: readonly string[] }
  | { t: 'map'; values: Schema }
  | { t: 'arr'; items: Schema };

const str = (o: Partial<{ enum: readonly string[]; pattern: RegExp; max: number }> = {}): Schema => ({ t: 'string', ...o });
const int = (min?: number, max?: number): Schema => ({ t: 'int', min, max });
const bool: Schema = { t: 'bool' };
const obj = (props: Record<string, Schema>, required: readonly string[] = []): Schema => ({ t: 'obj', props, required });
const arr = (items: Schema): Schema => ({ t: 'arr', items });
const map = (values: Schema): Schema => ({ t: 'map', values });

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/; // RFC 1123 label, at most 63
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/; // at most 253
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/; // at most 63
const PORT_NAME = /^(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?$/; // IANA_SVC_NAME, at most 15
/** Linux capabilities as Kubernetes names them: without the CAP_ prefix (the runtime adds it). */
export const CAPABILITIES = ['ALL', 'AUDIT_CONTROL', 'AUDIT_READ', 'AUDIT_WRITE', 'BLOCK_SUSPEND', 'BPF', 'CHECKPOINT_RESTORE', 'CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'IPC_LOCK', 'IPC_OWNER', 'KILL', 'LEASE', 'LINUX_IMMUTABLE', 'MAC_ADMIN', 'MAC_OVERRIDE', 'MKNOD', 'NET_ADMIN', 'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_RAW', 'PERFMON', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYSLOG', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_CHROOT', 'SYS_MODULE', 'SYS_NICE', 'SYS_PACCT', 'SYS_PTRACE', 'SYS_RAWIO', 'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'WAKE_ALARM'];

const objectMeta = obj({ name: str({ pattern: DNS_SUBDOMAIN, max: 253 }), namespace: str({ pattern: DNS_LABEL, max: 63 }), labels: map(str({ pattern: LABEL_VALUE, max: 63 })), annotations: map(str()) });
const labelSelector = obj({ matchLabels: map(str({ pattern: LABEL_VALUE, max: 63 })), matchExpressions: arr(obj({ key: str(), operator: str({ enum: ['In', 'NotIn', 'Exists', 'DoesNotExist'] }), values: arr(str()) }, ['key', 'operator'])) });
const keyToPath = arr(obj({ key: str(), path: str(), mode: int(0, 0o777) }, ['key', 'path']));
const volume = obj(
  {
    name: str({ pattern: DNS_LABEL, max: 63 }),
    hostPath: obj({ path: str(), type: str({ enum: ['', 'DirectoryOrCreate', 'Directory', 'FileOrCreate', 'File', 'Socket', 'CharDevice', 'BlockDevice'] }) }, ['path']),
    configMap: obj({ name: str(), items: keyToPath, defaultMode: int(0, 0o777), optional: bool }),
    secret: obj({ secretName: str(), items: keyToPath, defaultMode: int(0, 0o777), optional: bool }),
    emptyDir: obj({ medium: str({ enum: ['', 'Memory'] }), sizeLimit: { t: 'intOrString' } }),
  },
  ['name'],
);
const securityContext = obj({
  privileged: bool,
  capabilities: obj({ add: arr(str({ enum: CAPABILITIES })), drop: arr(str({ enum: CAPABILITIES })) }),
  seccompProfile: obj({ type: str({ enum: ['RuntimeDefault', 'Unconfined', 'Localhost'] }), localhostProfile: str() }, ['type']),
  readOnlyRootFilesystem: bool,
  allowPrivilegeEscalation: bool,
  runAsUser: int(0),
  runAsGroup: int(0),
  runAsNonRoot: bool,
  procMount: str({ enum: ['Default', 'Unmasked'] }),
});
const container = obj(
  {
    name: str({ pattern: DNS_LABEL, max: 63 }),
    image: str(),
    imagePullPolicy: str({ enum: ['Always', 'IfNotPresent', 'Never'] }),
    command: arr(str()),
    args: arr(str()),
    env: arr(obj({ name: str(), value: str() }, ['name'])),
    ports: arr(obj({ name: str({ pattern: PORT_NAME, max: 15 }), containerPort: int(1, 65535), hostPort: int(1, 65535), hostIP: str(), protocol: str({ enum: ['TCP', 'UDP', 'SCTP'] }) }, ['containerPort'])),
    volumeMounts: arr(obj({ name: str(), mountPath: str({ pattern: /^\// }), readOnly: bool, subPath: str(), mountPropagation: str({ enum: ['None', 'HostToContainer', 'Bidirectional'] }) }, ['name', 'mountPath'])),
    securityContext,
    resources: obj({ limits: map({ t: 'intOrString' }), requests: map({ t: 'intOrString' }) }),
  },
  ['name'],
);
const podSpec = obj(
  {
    containers: arr(container),
    volumes: arr(volume),
    hostNetwork: bool,
    hostPID: bool,
    hostIPC: bool,
    dnsPolicy: str({ enum: ['ClusterFirst', 'ClusterFirstWithHostNet', 'Default', 'None'] }),
    tolerations: arr(obj({ key: str(), operator: str({ enum: ['Exists', 'Equal'] }), value: str(), effect: str({ enum: ['NoSchedule', 'PreferNoSchedule', 'NoExecute'] }), tolerationSeconds: int() })),
    priorityClassName: str(),
    nodeSelector: map(str()),
    serviceAccountName: str({ pattern: DNS_SUBDOMAIN }),
    terminationGracePeriodSeconds: int(0),
  },
  ['containers'],
);
export const SCHEMAS: Record<string, Schema> = {
  'apps/v1/DaemonSet': obj(
    {
      apiVersion: str(),
      kind: str(),
      metadata: objectMeta,
      spec: obj(
        {
          selector: labelSelector,
          template: obj({ metadata: objectMeta, spec: podSpec }, ['spec']),
          updateStrategy: obj({ type: str({ enum: ['RollingUpdate', 'OnDelete'] }), rollingUpdate: obj({ maxUnavailable: { t: 'intOrString' }, maxSurge: { t: 'intOrString' } }) }),
          minReadySeconds: int(0),
          revisionHistoryLimit: int(0),
        },
        ['selector', 'template'],
      ),
    },
    ['apiVersion', 'kind', 'metadata', 'spec'],
  ),
  'v1/ConfigMap': obj({ apiVersion: str(), kind: str(), metadata: objectMeta, data: map(str()), binaryData: map(str()), immutable: bool }, ['apiVersion', 'kind', 'metadata']),
};

function check(v: unknown, s: Schema, at: string, errs: string[]): void {
  const type = Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v;
  const want = (ok: boolean, what: string) => ok || errs.push(`${at}: expected ${what}, got ${type} ${JSON.stringify(v)}`);
  switch (s.t) {
    case 'string':
      if (!want(typeof v === 'string', 'a string')) return;
      if (s.enum && !s.enum.includes(v as string)) errs.push(`${at}: "${v}" is not one of ${s.enum.join(', ')}`);
      if (s.pattern && !s.pattern.test(v as string)) errs.push(`${at}: "${v}" does not match ${s.pattern}`);
      if (s.max !== undefined && (v as string).length > s.max) errs.push(`${at}: longer than ${s.max}`);
      return;
    case 'int':
      if (!want(Number.isInteger(v), 'an integer')) return;
      if ((s.min !== undefined && (v as number) < s.min) || (s.max !== undefined && (v as number) > s.max)) errs.push(`${at}: ${v} is outside ${s.min ?? '-inf'}..${s.max ?? 'inf'}`);
      return;
    case 'bool':
      want(typeof v === 'boolean', 'true or false');
      return;
    case 'intOrString':
      want(Number.isInteger(v) || typeof v === 'string', 'an integer or a string');
      return;
    case 'arr':
      if (want(Array.isArray(v), 'a list')) (v as unknown[]).forEach((x, i) => check(x, s.items, `${at}[${i}]`, errs));
      return;
    case 'map':
      if (want(type === 'object', 'a map')) for (const [k, x] of Object.entries(v as object)) check(x, s.values, `${at}.${k}`, errs);
      return;
    case 'obj':
      if (!want(type === 'object', 'an object')) return;
      for (const r of s.required ?? []) if ((v as Record<string, unknown>)[r] === undefined) errs.push(`${at}.${r}: required`);
      for (const [k, x] of Object.entries(v as object)) {
        if (!s.props[k]) errs.push(`${at}.${k}: unknown field`);
        else check(x, s.props[k], `${at}.${k}`, errs);
      }
  }
}

const dup = (xs: string[]) => xs.filter((x, i) => xs.indexOf(x) !== i);

function podRules(pod: any, at: string, errs: string[]): void {
  const volumes = new Map<string, any>((pod.volumes ?? []).map((v: any) => [v.name, v]));
  for (const n of dup([...volumes.keys()])) errs.push(`${at}.volumes: duplicate name ${n}`);
  for (const n of dup(pod.containers.map((c: any) => c.name))) errs.push(`${at}.containers: duplicate name ${n}`);
  pod.containers.forEach((c: any, i: number) => {
    const cat = `${at}.containers[${i}]`;
    for (const n of dup((c.ports ?? []).map((p: any) => p.name).filter(Boolean))) errs.push(`${cat}.ports: duplicate name ${n}`);
    for (const p of c.ports ?? []) if (pod.hostNetwork && p.hostPort !== undefined && p.hostPort !== p.containerPort) errs.push(`${cat}.ports ${p.name}: hostPort must match containerPort when hostNetwork is true`);
    const mounts: any[] = c.volumeMounts ?? [];
    for (const p of dup(mounts.map((m) => m.mountPath))) errs.push(`${cat}.volumeMounts: duplicate mountPath ${p}`);
    for (const m of mounts) {
      const v = volumes.get(m.name);
      if (!v) errs.push(`${cat}.volumeMounts ${m.name}: no volume of that name`);
      if (m.mountPropagation === 'Bidirectional' && !c.securityContext?.privileged) errs.push(`${cat}.volumeMounts ${m.name}: Bidirectional propagation needs a privileged container`);
      // the kubelet mounts ConfigMaps and Secrets read-only and holding only their keys, so
      // a runtime cannot make a mount point inside one (runc: "mkdir ...: read-only file
      // system"); a read-only hostPath is fine where the directory exists on the host
      for (const outer of mounts)
        if (outer !== m && m.mountPath.startsWith(outer.mountPath.replace(/\/?$/, '/'))) {
          const ov = volumes.get(outer.name);
          if (ov?.configMap || ov?.secret) errs.push(`${cat}.volumeMounts ${m.name}: ${m.mountPath} is inside the read-only mount ${outer.mountPath} (${outer.name}): the runtime cannot make its mount point`);
        }
    }
  });
}

/** Errors in `objects` (one message per problem, naming the object and field); empty when valid. */
export function validateObjects(objects: any[]): string[] {
  const errs: string[] = [];
  for (const [i, o] of objects.entries()) {
    const key = `${o?.apiVersion}/${o?.kind}`;
    const at = `${o?.kind ?? 'object'} ${o?.metadata?.name ?? `#${i}`}`;
    const schema = SCHEMAS[key];
    if (!schema) {
      errs.push(`${at}: ${key} is not a kind this check knows`);
      continue;
    }
    const before = errs.length;
    check(o, schema, at, errs);
    if (errs.length > before) continue; // the rules below assume the shape
    if (o.kind === 'DaemonSet') {
      const labels = o.spec.template.metadata?.labels ?? {};
      for (const [k, v] of Object.entries(o.spec.selector.matchLabels ?? {})) if (labels[k] !== v) errs.push(`${at}.spec.selector: does not match template labels (${k}=${v})`);
      if (!Object.keys(o.spec.selector.matchLabels ?? {}).length && !(o.spec.selector.matchExpressions ?? []).length) errs.push(`${at}.spec.selector: empty`);
      podRules(o.spec.template.spec, `${at}.spec.template.spec`, errs);
    }
  }
  const names = objects.map((o) => `${o?.kind}/${o?.metadata?.namespace ?? 'default'}/${o?.metadata?.name}`);
  for (const n of dup(names)) errs.push(`${n}: defined twice`);
  return errs;
}
