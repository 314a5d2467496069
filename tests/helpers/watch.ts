// A Watch stream under test: what it received (events and Lost messages), when the
// agent accepted it, and the status it ended with.
import type * as grpc from '@grpc/grpc-js';
import type { IoFilterClient } from '../../client';
import type { IoEvent__Output } from '../../proto/gen/iofilter/v1/IoEvent';
import type { Lost__Output } from '../../proto/gen/iofilter/v1/Lost';
import type { WatchEvent__Output } from '../../proto/gen/iofilter/v1/WatchEvent';
import type { WatchRequest } from '../../proto/gen/iofilter/v1/WatchRequest';

export type WatchedStream = ReturnType<typeof watchStream>;

export function watchStream(client: IoFilterClient, req: WatchRequest) {
  const call = client.watch(req);
  const w = {
    call,
    ios: [] as IoEvent__Output[],
    lost: [] as Lost__Output[],
    status: null as grpc.StatusObject | null,
    accepted: new Promise<void>((resolve, reject) => {
      call.once('metadata', () => resolve());
      call.once('error', reject);
    }),
    /** Events the stream was told it lost, for one reason or all. */
    lostOf: (reason?: string) => w.lost.filter((l) => !reason || l.reason === reason).reduce((n, l) => n + Number(l.count), 0),
  };
  call.on('data', (m: WatchEvent__Output) => (m.io ? w.ios.push(m.io) : w.lost.push(m.lost!)));
  call.on('error', () => undefined);
  call.on('status', (s) => (w.status = s));
  return w;
}
