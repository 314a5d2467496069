// Structured JSON logs (pino) on stderr: one line per RPC plus lifecycle events.
import pino from 'pino';

export type Logger = pino.Logger;

/** `sync`: each line written before the call returns (pino's stream is asynchronous otherwise). */
export function createLogger(level: string, sync = false): Logger {
  return pino({ level, base: { svc: 'iofilter-agent', pid: process.pid } }, pino.destination({ dest: 2, sync }));
}
