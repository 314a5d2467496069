// Structured JSON logs (pino) on stderr: one line per RPC plus lifecycle events.
import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(level: string): Logger {
  return pino({ level, base: { svc: 'iofilter-agent', pid: process.pid } }, pino.destination(2));
}
