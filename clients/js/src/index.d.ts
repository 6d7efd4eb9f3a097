// Types of ./index.js (hand-written beside it; the tests check they name every export).

export interface Defaults {
  keepaliveMs: number;
  baseMs: number;
  capMs: number;
  maxAttempts: number | null;
  stableMs: number;
  connectTimeoutMs: number;
  queueLimit: number;
  dedupeWindow: number;
  tokenParameter: string;
}
export const DEFAULTS: Readonly<Defaults>;

export type State = 'connecting' | 'open' | 'reconnecting' | 'closed';
export const STATES: readonly State[];

/** The function's `message` frame (docs/protocol.md). */
export interface MessageFrame {
  type: 'message';
  id: string;
  from: string;
  userId?: string;
  data: unknown;
  sentAt: string;
}
export type ServerFrame =
  | MessageFrame
  | { type: 'sent'; recipients: number }
  | { type: 'pong' }
  | { type: 'error'; code: string; message: string }
  | Record<string, unknown>;

export interface StateDetail {
  attempt?: number;
  code?: number | null;
  reason?: string;
  opened?: boolean;
  why?: string;
  delayMs?: number;
  dropped?: number;
}

export interface Clock {
  setTimeout(f: () => void, ms: number): unknown;
  clearTimeout(timer: unknown): void;
  now(): number;
}

export interface Options extends Partial<Defaults> {
  token?: string | (() => string | Promise<string>);
  onMessage?: (frame: MessageFrame) => void;
  onFrame?: (frame: ServerFrame) => void;
  onState?: (state: State, detail: StateDetail) => void;
  WebSocket?: new (url: string) => WebSocket;
  random?: () => number;
  clock?: Clock;
}

export interface Client {
  readonly state: State;
  send(data: unknown): 'sent' | 'queued';
  ping(): 'sent' | 'queued';
  sendFrame(frame: { action: string; data?: unknown }): 'sent' | 'queued';
  close(): void;
}

export function connect(url: string, options?: Options): Client;

export class ClientError extends Error {
  code: 'queue_full' | 'closed' | 'no_websocket';
}

export function closeAdvice(code: number): { reconnect: boolean; why: string };
export function backoffDelay(attempt: number, limits: { baseMs: number; capMs: number }, random?: () => number): number;
export function withToken(url: string, token: string | undefined | null, parameter: string): string;

export class RecentIds {
  constructor(size: number);
  seen(id: string): boolean;
}
