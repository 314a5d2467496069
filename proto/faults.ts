// Fault kinds as people and the wire name them, shared by the agent and the CLI: the
// block layer's statuses with the errno an application sees (block/blk-core.c,
// blk_errors[] of 7.2), the words the CLI and plans take, and one line describing a
// Fault for status lines, logs and errors.
import type { ErrorStatus__Output } from './gen/iofilter/v1/ErrorStatus';
import type { Fault, Fault__Output } from './gen/iofilter/v1/Fault';

export interface StatusName {
  /** BLK_STS_<tag>, and what block/error-injection.c takes as status=<tag>. */
  tag: string;
  /** What read(2)/write(2)/fsync(2) return for it (blk_status_to_errno). */
  errno: string;
  wire: ErrorStatus__Output;
  what: string;
}

export const ERROR_STATUSES: readonly StatusName[] = [
  { tag: 'IOERR', errno: 'EIO', wire: 'ERROR_STATUS_IOERR', what: 'I/O error (the default; every backend)' },
  { tag: 'NOSPC', errno: 'ENOSPC', wire: 'ERROR_STATUS_NOSPC', what: 'critical space allocation (thin provisioning out of space)' },
  { tag: 'TIMEOUT', errno: 'ETIMEDOUT', wire: 'ERROR_STATUS_TIMEOUT', what: 'timeout' },
  { tag: 'MEDIUM', errno: 'ENODATA', wire: 'ERROR_STATUS_MEDIUM', what: 'critical medium error (unreadable sector)' },
  { tag: 'TARGET', errno: 'EREMOTEIO', wire: 'ERROR_STATUS_TARGET', what: 'critical target error' },
  { tag: 'TRANSPORT', errno: 'ENOLINK', wire: 'ERROR_STATUS_TRANSPORT', what: 'recoverable transport error' },
  { tag: 'RESV_CONFLICT', errno: 'EBADE', wire: 'ERROR_STATUS_RESV_CONFLICT', what: 'reservation conflict' },
  { tag: 'PROTECTION', errno: 'EILSEQ', wire: 'ERROR_STATUS_PROTECTION', what: 'protection information (integrity) error' },
  { tag: 'RESOURCE', errno: 'ENOMEM', wire: 'ERROR_STATUS_RESOURCE', what: 'kernel resource' },
  { tag: 'DEV_RESOURCE', errno: 'EBUSY', wire: 'ERROR_STATUS_DEV_RESOURCE', what: 'device resource' },
  { tag: 'AGAIN', errno: 'EAGAIN', wire: 'ERROR_STATUS_AGAIN', what: 'nonblocking retry' },
  { tag: 'OFFLINE', errno: 'ENODEV', wire: 'ERROR_STATUS_OFFLINE', what: 'device offline' },
  { tag: 'NOTSUPP', errno: 'EOPNOTSUPP', wire: 'ERROR_STATUS_NOTSUPP', what: 'operation not supported' },
];

/** 'enospc', 'ENOSPC', 'nospc', 'NOSPC' or 'ERROR_STATUS_NOSPC' (UNSPECIFIED: IOERR); undefined for anything else. */
export function errorStatus(v: unknown): StatusName | undefined {
  if (v === undefined || v === null || v === '' || v === 'ERROR_STATUS_UNSPECIFIED' || v === 0) return ERROR_STATUSES[0];
  if (typeof v !== 'string') return undefined;
  const u = v.toUpperCase().replace(/-/g, '_');
  return ERROR_STATUSES.find((s) => s.wire === u || s.tag === u || s.errno === u);
}

/** The words the CLI and plans take for --error. */
export const ERROR_WORDS = ERROR_STATUSES.map((s) => s.errno.toLowerCase());

export type FaultKindName = 'error' | 'delay' | 'throttle' | 'drop-writes' | 'corrupt';

/** Which kind a wire Fault is; unset means error. */
export function faultKind(f?: Fault | Fault__Output | null): FaultKindName {
  if (!f) return 'error';
  const k = f.kind ?? (['error', 'delay', 'throttle', 'dropWrites', 'corrupt'] as const).find((x) => f[x]);
  return k === 'dropWrites' ? 'drop-writes' : (k ?? 'error');
}

const ms = (n: unknown) => `${Number(n ?? 0)} ms`;
const bytes = (n: unknown) => {
  const v = Number(n ?? 0);
  for (const [u, m] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) if (v >= m && v % m === 0) return `${v / m} ${u}`;
  return `${v} B`;
};

/** One line: "error EIO", "delay read 50 ms, write 50 ms, flush 0 ms", "throttle wbps 1 MiB/s", ... */
export function describeFault(f?: Fault | Fault__Output | null): string {
  const k = faultKind(f);
  switch (k) {
    case 'error':
      return `error ${errorStatus(f?.error?.status)?.errno ?? String(f?.error?.status)}`;
    case 'delay': {
      const d = f!.delay!;
      return `delay read ${ms(d.readMs)}, write ${ms(d.writeMs)}, flush ${ms(d.flushMs)}`;
    }
    case 'throttle': {
      const t = f!.throttle!;
      const parts = [
        Number(t.rbps ?? 0) && `rbps ${bytes(t.rbps)}/s`,
        Number(t.wbps ?? 0) && `wbps ${bytes(t.wbps)}/s`,
        Number(t.riops ?? 0) && `riops ${Number(t.riops)}`,
        Number(t.wiops ?? 0) && `wiops ${Number(t.wiops)}`,
      ].filter(Boolean);
      return `throttle ${parts.join(', ')}`;
    }
    case 'drop-writes':
      return 'drop writes (acknowledged, not written)';
    case 'corrupt': {
      const c = f!.corrupt!;
      const dir = c.direction === 'CORRUPT_DIRECTION_WRITE' ? 'writes' : 'reads';
      if (Number(c.perBillion ?? 0)) return `corrupt ${dir}: random bytes, ${Number(c.perBillion)} per billion bios`;
      return `corrupt ${dir}: byte ${Number(c.byte ?? 0)} of each bio set to 0x${Number(c.value ?? 0).toString(16).padStart(2, '0')}`;
    }
  }
}
