// The agent image under podman INSIDE the VM, run as deploy/kubernetes/daemonset.yaml
// runs it (the arguments come from the YAML through tests/helpers/daemonset.ts), on a
// kernel with error injection: the self-test fails a read with real EIO inside the
// container, and a filter scoped to another container fails that container's direct
// I/O and the writeback of the pages it dirtied, while its neighbour's I/O succeeds.
// The guest has no overlayfs and no pids controller in the test kernel: podman keeps its
// storage on tmpfs with the vfs driver and sets no pids limit (neither is the YAML's).
// Slow under TCG: each container's rootfs is a 156 MB copy; about 15 minutes in all.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { IoFilterClient } from '../../client';
import { podmanRunArgs } from '../helpers/daemonset';
import { KERNEL, SERIES } from '../helpers/guest';
import { buildImage, podmanUnavailableReason, RUNTIME, TEST_IMAGE } from '../helpers/podman';
import { describeIf } from '../helpers/tier';
import { Vm, vmUnavailableReason } from '../helpers/vm';

const d = describeIf(vmUnavailableReason() ?? podmanUnavailableReason());
const P = 'podman --root /run/ctr/storage --runroot /run/ctr/runroot --storage-driver vfs --cgroup-manager cgroupfs --events-backend file';
const q = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);

d(`VM on Linux ${KERNEL}: the DaemonSet's agent under podman, real EIO for one container`, () => {
  let vm: Vm | undefined;
  let client: IoFilterClient;
  let dir: string;
  let loop: string;
  const ddIn = (name: string, args: string) => vm!.exec(`${P} exec ${name} /bin/dd ${args} bs=4096 count=1 status=none`, 600_000);

  beforeAll(async () => {
    const archive = /archive:\s+(\S+)/.exec(buildImage())![1];
    dir = fs.mkdtempSync('/var/tmp/iofilter-vm-ctr-'); // the guest sees /var/tmp (not /tmp)
    fs.mkdirSync(path.join(dir, 'tls'));
    const args = podmanRunArgs({
      name: 'agent',
      image: TEST_IMAGE,
      runtime: RUNTIME,
      configDir: dir,
      secrets: { 'iofilter-agent-tls': path.join(dir, 'tls') },
      hostPaths: { '/var/lib/iofilter': path.join(dir, 'state') },
      extraFlags: ['--pids-limit', '0'],
      editConfig: (_cm, key, text) => {
        if (key !== 'agent.json') return text;
        const c = JSON.parse(text);
        // the forwarded port reaches the guest's 0.0.0.0:50051; no certificates in this test
        Object.assign(c, { insecure: true, pinDir: '/sys/fs/bpf/iofilter-vm-ctr' });
        delete c.tls;
        delete c.metricsListen;
        return JSON.stringify(c);
      },
    });
    expect(args).toEqual(expect.arrayContaining(['--privileged', '--pid', 'host', '--network', 'host']));
    vm = await Vm.boot();
    await vm.sh(`mkdir -p /run/ctr && ${P} load -q -i ${archive} && ${P} tag localhost/latest:latest ${TEST_IMAGE}`, 900_000);
    loop = await vm.sh('truncate -s 64M /dev/shm/ctr.img && losetup -f --show /dev/shm/ctr.img');
    await vm.sh(`${P} ${args.map(q).join(' ')}`, 900_000);
    await vm.sh(`for t in $(seq 1800); do ${P} logs agent 2>&1 | grep -q '"msg":"serving"' && exit 0; sleep 1; done; ${P} logs agent | tail -5; exit 1`, 1_900_000);
    for (const n of ['a', 'b']) await vm.sh(`${P} --runtime ${RUNTIME} run -d --pids-limit 0 --name ${n} --network none --device ${loop} --entrypoint /bin/sleep ${TEST_IMAGE} infinity`, 900_000);
    client = new IoFilterClient(vm.agentAddress, { timeoutMs: 120_000 });
  }, 3_600_000);

  afterAll(async () => {
    client?.close();
    await vm?.shutdown();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  test('the containerised agent attached fmod_ret and its self-test failed a read with EIO inside the container', async () => {
    const st = await client.status();
    expect(st.kernelRelease.startsWith(`${SERIES}.`)).toBe(true);
    expect(st.state).toMatchObject({ attached: true, mode: 'MODE_FMOD_RET', selfTest: { passed: true } });
    expect(st.state?.selfTest?.detail).toMatch(/scratch \/dev\/loop\d+ .*error EIO, counted 1 matched, 1 failed/);
    // the answer comes from the container's process (its cgroup is podman's)
    const pid = await vm!.sh(`${P} inspect agent --format '{{.State.Pid}}'`);
    expect(await vm!.sh(`cat /proc/${pid}/cgroup`)).toMatch(/^0::\/libpod_parent\/libpod-[0-9a-f]{64}$/);
  }, 600_000);

  test("a filter scoped to container A by its cgroup fails A's direct I/O and A's writeback with EIO; B's I/O succeeds", async () => {
    const pidA = await vm!.sh(`${P} inspect a --format '{{.State.Pid}}'`);
    const cgA = (await vm!.sh(`sed -n 's/^0:://p' /proc/${pidA}/cgroup`)).trim();
    const r = await client.setFilterResponse({ device: loop, wholeDeviceOps: ['OP_READ', 'OP_WRITE'], cgroupPath: cgA, ttlMs: 1_800_000 });
    expect(r.warnings).toEqual([]); // io and memory are enabled down to the container's cgroup
    expect(r.filter?.cgroup?.path).toBe(cgA);

    const a = await ddIn('a', `if=${loop} of=/dev/null iflag=direct`);
    expect(a).toMatchObject({ code: 1 });
    expect(a.stderr).toMatch(/Input\/output error/);
    expect(await ddIn('b', `if=${loop} of=/dev/null iflag=direct`)).toMatchObject({ code: 0 });
    expect(await ddIn('b', `if=/dev/zero of=${loop} seek=8 conv=notrunc oflag=direct`)).toMatchObject({ code: 0 });

    // A dirties pages (its write only reaches the page cache); the guest's root shell
    // flushes them while holding the device open (else dd's last close writes them back in A)
    const before = Number((await client.status()).filters[0].failedIos);
    const flush = await vm!.exec(`exec 3<${loop}; ${P} exec a /bin/dd if=/dev/zero of=${loop} seek=100 bs=4096 count=4 conv=notrunc status=none && echo dirtied; blockdev --flushbufs ${loop}; echo "flush=$?"`, 600_000);
    expect(flush.stdout).toMatch(/^dirtied$/m); // its exit status may or may not carry the writeback error: the filter counts it
    const f = (await client.status()).filters[0];
    expect(Number(f.failedIos)).toBeGreaterThan(before);
    // B's buffered writes are not checked: writeback ownership is per inode (README), and
    // the raw device's one inode is A's now, so B's dirty pages would be written back as
    // A's (measured: B's fsync then failed with EIO)
  }, 1_200_000);
});
