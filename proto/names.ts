// One place for the names of attach modes, operations and outcomes: as the wire has
// them (proto enums, e.g. MODE_FMOD_RET, OP_WRITE_ZEROES), as the native binding
// has them ('fmod_ret', 'write_zeroes') and as people type and read them
// ('fmod_ret', 'write-zeroes'). Every conversion between the three goes through here.
import type { Mode as NativeMode, Op as NativeOp } from '../native';
import type { Mode__Output } from './gen/iofilter/v1/Mode';
import type { Op__Output } from './gen/iofilter/v1/Op';
import type { Outcome__Output } from './gen/iofilter/v1/Outcome';

export type AttachModeName = NativeMode | 'auto';

export const MODE_NAMES: readonly AttachModeName[] = ['auto', 'fmod_ret', 'kprobe', 'observe'];
export const OP_NAMES: readonly NativeOp[] = ['read', 'write', 'flush', 'discard', 'write_zeroes'];

const MODE_WIRE: Record<AttachModeName, Mode__Output> = {
  auto: 'MODE_AUTO',
  fmod_ret: 'MODE_FMOD_RET',
  kprobe: 'MODE_KPROBE',
  observe: 'MODE_OBSERVE',
};
const OP_WIRE: Record<NativeOp, Op__Output> = {
  read: 'OP_READ',
  write: 'OP_WRITE',
  flush: 'OP_FLUSH',
  discard: 'OP_DISCARD',
  write_zeroes: 'OP_WRITE_ZEROES',
};
const invert = <K extends string, V extends string>(o: Record<K, V>) =>
  Object.fromEntries(Object.entries(o).map(([k, v]) => [v, k])) as Record<V, K>;
const MODE_FROM_WIRE: Record<string, AttachModeName> = { ...invert(MODE_WIRE), MODE_UNSPECIFIED: 'auto' };
const OP_FROM_WIRE: Record<string, NativeOp> = invert(OP_WIRE);

/** 'fmod_ret' -> 'MODE_FMOD_RET'. */
export const modeToWire = (m: AttachModeName): Mode__Output => MODE_WIRE[m];
/** 'MODE_FMOD_RET' (or MODE_UNSPECIFIED, meaning auto) -> 'fmod_ret'; undefined for anything else. */
export const modeFromWire = (m: unknown): AttachModeName | undefined => (typeof m === 'string' ? MODE_FROM_WIRE[m] : undefined);
/** 'write_zeroes' -> 'OP_WRITE_ZEROES'. */
export const opToWire = (o: NativeOp): Op__Output => OP_WIRE[o];
/** 'OP_WRITE_ZEROES' -> 'write_zeroes'; undefined for anything else (OP_UNSPECIFIED, numbers, junk). */
export const opFromWire = (o: unknown): NativeOp | undefined => (typeof o === 'string' ? OP_FROM_WIRE[o] : undefined);

/** The word people type and read: 'write_zeroes' -> 'write-zeroes'. */
export const opWord = (o: NativeOp): string => o.replace('_', '-');
/** A CLI word back to the native name: 'write-zeroes' -> 'write_zeroes'. */
export const opFromWord = (w: string): NativeOp | undefined => OP_NAMES.find((o) => opWord(o) === w);
/** How a wire op reads to people: 'OP_WRITE_ZEROES' -> 'write-zeroes'. */
export const wireOpWord = (o: Op__Output | string): string => {
  const n = opFromWire(o);
  return n ? opWord(n) : String(o);
};
/** How a wire mode reads to people: 'MODE_FMOD_RET' -> 'fmod_ret'. */
export const wireModeWord = (m: Mode__Output | string): string => modeFromWire(m) ?? String(m);

const OUTCOME_WORDS: Record<Outcome__Output, string> = {
  OUTCOME_UNSPECIFIED: '?',
  OUTCOME_FAILED: 'failed',
  OUTCOME_WOULD_FAIL: 'would-fail',
  OUTCOME_SPARED: 'spared',
};
/** 'OUTCOME_WOULD_FAIL' -> 'would-fail'. */
export const outcomeWord = (o: Outcome__Output | string): string => OUTCOME_WORDS[o as Outcome__Output] ?? String(o);
/** 'would-fail' -> 'OUTCOME_WOULD_FAIL'. */
export const outcomeFromWord = (w: string): Outcome__Output | undefined =>
  (Object.keys(OUTCOME_WORDS) as Outcome__Output[]).find((k) => k !== 'OUTCOME_UNSPECIFIED' && OUTCOME_WORDS[k] === w);

/** Outcomes as the native binding's kernel events name them. */
export type NativeOutcome = 'failed' | 'would_fail' | 'spared';
const OUTCOME_WIRE: Record<NativeOutcome, Outcome__Output> = {
  failed: 'OUTCOME_FAILED',
  would_fail: 'OUTCOME_WOULD_FAIL',
  spared: 'OUTCOME_SPARED',
};
const OUTCOME_FROM_WIRE: Record<string, NativeOutcome> = invert(OUTCOME_WIRE);
/** 'would_fail' -> 'OUTCOME_WOULD_FAIL'. */
export const outcomeToWire = (o: NativeOutcome): Outcome__Output => OUTCOME_WIRE[o];
/** 'OUTCOME_WOULD_FAIL' -> 'would_fail'; undefined for anything else (OUTCOME_UNSPECIFIED, numbers, junk). */
export const outcomeFromWire = (o: unknown): NativeOutcome | undefined => (typeof o === 'string' ? OUTCOME_FROM_WIRE[o] : undefined);
