// Block error injection rules, pure, against a model of the kernel's parser and walk
// (tests/helpers/fake-blkinject.ts): probability as 1/N or refused naming the nearest,
// ranges and ops as rules (partition offset, merging, flush refused, one rule per op
// with a chance), the kernel accepting every status iofilter offers with the errno the
// table names, and the writes between two lists (adds only when the old list is the
// new one's tail, else removeall and a rebuild).
import { addCommand, chanceOf, filterRules, listed, parseShown, Rule, shown, transition } from '../../agent/backends/blkinject/rules';
import { ERROR_STATUSES } from '../../proto/faults';
import { FakeBlkInjection, KERNEL_STATUSES, KRule, parseCommand } from '../helpers/fake-blkinject';

test('probability: exactly 1/N becomes chance N; anything else is refused naming the nearest 1/N', () => {
  expect(chanceOf(undefined)).toBe(1);
  expect(chanceOf(1)).toBe(1);
  expect(chanceOf(0.5)).toBe(2);
  expect(chanceOf(0.1)).toBe(10);
  expect(chanceOf(0.001)).toBe(1000);
  expect(chanceOf(1 / 3)).toBe(3);
  expect(chanceOf(0.3)).toBe('probability 0.3: block error injection fails exactly 1 in N I/Os (chance=N) and 0.3 is not 1/N; the nearest are 1/3 (0.3333) and 1/4 (0.25)');
  expect(chanceOf(0.75)).toMatch(/nearest are 1\/1 \(1\) and 1\/2 \(0\.5\)/);
  expect(chanceOf(1e-12)).toMatch(/N at most 4294967295/);
});

test('ranges and ops: one rule per op per merged range, shifted by the partition offset', () => {
  const r = filterRules(
    [
      { start: 10n, end: 19n, ops: ['read', 'write'] },
      { start: 20n, end: 29n, ops: ['read'] }, // adjacent: merged for read
      { start: 15n, end: 40n, ops: ['write'] }, // overlapping: merged for write
      { start: 100n, end: 100n, ops: ['discard', 'write_zeroes'] },
    ],
    2048n,
    'NOSPC',
    1,
  ) as Rule[];
  expect(r.map(shown)).toEqual([
    '2058:2077 op=READ,status=NOSPC,chance=1',
    '2058:2088 op=WRITE,status=NOSPC,chance=1',
    '2148:2148 op=DISCARD,status=NOSPC,chance=1',
    '2148:2148 op=WRITE_ZEROES,status=NOSPC,chance=1',
  ]);
  expect(r.map(addCommand)[0]).toBe('add,op=READ,status=NOSPC,start=2058,nr_sectors=20,chance=1');
});

test('refused: flush in any op set; a chance with two ranges of one op (the kernel would draw twice)', () => {
  expect(filterRules([{ start: 0n, end: 9n, ops: ['write', 'flush'] }], 0n, 'IOERR', 1)).toMatch(/^ranges\[0\] \(0-9\) ops write,flush: block error injection cannot fail flushes/);
  expect(filterRules([{ start: 0n, end: 9n, ops: ['read'] }, { start: 20n, end: 29n, ops: ['read'] }], 0n, 'IOERR', 4)).toMatch(/probability 1\/4 with 2 separate read ranges: the kernel draws once per rule/);
  // one range per op is fine with a chance, and so are two ranges that merge
  expect(filterRules([{ start: 0n, end: 9n, ops: ['read'] }, { start: 10n, end: 29n, ops: ['read', 'write'] }], 0n, 'IOERR', 4)).toHaveLength(2);
});

test('the kernel model takes every status iofilter offers, with the errno the README table names', () => {
  for (const s of ERROR_STATUSES) {
    expect(KERNEL_STATUSES[s.tag]).toBe(s.errno);
    const rules: KRule[] = [];
    parseCommand(addCommand({ op: 'WRITE', status: s.tag, start: 0n, end: 7n, chance: 1 }), rules);
    expect(rules).toEqual([{ start: 0n, end: 7n, op: 'WRITE', status: s.tag, chance: 1 }]);
  }
});

test('the kernel model rejects what the kernel rejects', () => {
  const bad: [string, string][] = [
    ['add,op=READ', 'EINVAL'], // no status
    ['add,status=IOERR', 'EINVAL'], // no op
    ['add,op=READX,status=IOERR', 'EINVAL'],
    ['add,op=READ,status=OK', 'EINVAL'],
    ['add,op=READ,status=IOERR,chance=0', 'EINVAL'],
    ['add,op=READ,status=IOERR,chance=4294967296', 'ERANGE'],
    ['add,op=READ,status=IOERR,start=-1', 'EINVAL'],
    ['add,op=READ,status=IOERR,start=10x', 'EINVAL'],
    ['add,add,op=READ,status=IOERR', 'EINVAL'],
    ['removeall,op=READ', 'EINVAL'],
    ['op=READ,status=IOERR', 'EINVAL'], // no action
    ['add,op=READ,status=IOERR,start=18446744073709551615,nr_sectors=2', 'EINVAL'],
    ['add,op=READ,status=IOERR,foo=1', 'EINVAL'],
  ];
  for (const [cmd, code] of bad) {
    const rules: KRule[] = [];
    expect(() => parseCommand(cmd, rules)).toThrow(code);
    expect(rules).toEqual([]);
  }
  // base 0: a leading 0 is octal, which is why iofilter writes plain decimal
  const rules: KRule[] = [];
  parseCommand('add,op=READ,status=IOERR,start=010,nr_sectors=0x8', rules);
  expect(rules[0]).toMatchObject({ start: 8n, end: 15n });
});

test('rules listed by the kernel parse back to the same rules; the walk: first matching rule, overlap, no zero-sized bios', () => {
  const k = new FakeBlkInjection();
  k.add('loop0');
  const r: Rule = { op: 'READ', status: 'MEDIUM', start: 100n, end: 199n, chance: 1 };
  k.write('loop0', [addCommand(r)]);
  expect(listed(k.read('loop0'))).toEqual([shown(r)]);
  expect(parseShown(shown(r))).toEqual(r);
  expect(k.bio('loop0', 'READ', 92n, 8n)).toBeNull(); // 92-99
  expect(k.bio('loop0', 'READ', 93n, 8n)).toBe('MEDIUM'); // 93-100 overlaps
  expect(k.bio('loop0', 'READ', 199n, 8n)).toBe('MEDIUM');
  expect(k.bio('loop0', 'READ', 200n, 8n)).toBeNull();
  expect(k.bio('loop0', 'WRITE', 150n, 8n)).toBeNull();
  expect(k.bio('loop0', 'READ', 150n, 0n)).toBeNull();
});

test('transition: adds only (oldest new rule first) when the old list is the tail of the new; else removeall and rebuild', () => {
  const a = shown({ op: 'READ', status: 'IOERR', start: 0n, end: 9n, chance: 1 });
  const b = shown({ op: 'WRITE', status: 'NOSPC', start: 50n, end: 59n, chance: 2 });
  const c = shown({ op: 'READ', status: 'TIMEOUT', start: 70n, end: 79n, chance: 1 });
  expect(transition([a], [a])).toEqual([]);
  expect(transition([], [b, c])).toEqual(['add,op=READ,status=TIMEOUT,start=70,nr_sectors=10,chance=1', 'add,op=WRITE,status=NOSPC,start=50,nr_sectors=10,chance=2']);
  expect(transition([a], [b, a])).toEqual(['add,op=WRITE,status=NOSPC,start=50,nr_sectors=10,chance=2']);
  expect(transition([b, a], [a])).toEqual(['removeall', 'add,op=READ,status=IOERR,start=0,nr_sectors=10,chance=1']);
  expect(transition([a], [])).toEqual(['removeall']);
  // applied to the kernel model, each gives exactly the target list
  for (const [from, to] of [[[a], [b, a]], [[b, a], [c, a]], [[c, b, a], []], [[], [c, b, a]]] as string[][][]) {
    const k = new FakeBlkInjection();
    k.add('d');
    k.write('d', transition([], from));
    expect(listed(k.read('d'))).toEqual(from);
    k.write('d', transition(from, to));
    expect(listed(k.read('d'))).toEqual(to);
  }
});
