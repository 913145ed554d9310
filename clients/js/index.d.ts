// Types of portcullis-client (the code is plain JavaScript: portcullis-client.js).
import type { Socket } from "socket.io-client";

/** The reserved event the gateway intercepts: "portcullis:refresh". */
export const REFRESH_EVENT: "portcullis:refresh";

/** A refused (400, 401, 403), unanswered ("timeout") or unsent ("disconnected") refresh. */
export class RefreshError extends Error {
  code: number | "timeout" | "disconnected" | "stopped";
}

/** The claims of a JWT, decoded without verification, or null. */
export function decodeClaims(token: string): Record<string, unknown> | null;

/** `exp` and `iat` of a JWT in milliseconds since the epoch, or null without `exp`. */
export function tokenExpiry(token: string): { expiresAt: number; issuedAt: number | null } | null;

/** Milliseconds to wait before refreshing `token`, or null without `exp`. */
export function refreshDelay(token: string, marginMs?: number, now?: number): number | null;

/** Sends "portcullis:refresh" with `token`; resolves with the new deadline (unix seconds). */
export function refreshToken(socket: Socket, token: string, options?: { timeoutMs?: number }): Promise<{ expiresAt: number }>;

export interface KeepTokenFreshOptions {
  /** The app's negotiate: resolves to its answer ({ token, ... }) or the token. */
  negotiate: (context: { reason: "refresh" | "reconnect" }) => Promise<{ token: string } | string>;
  /** Refresh this long before expiry (default 30000; at most half the remaining lifetime). */
  marginMs?: number;
  /** How long the gateway may take to acknowledge a refresh (default 10000). */
  ackTimeoutMs?: number;
  /** false: never refresh in-band, only keep the token fresh for reconnections. */
  inBand?: boolean;
  onRefresh?: (info: { expiresAt: number }) => void;
  onToken?: (token: string) => void;
  onError?: (error: Error, context: { phase: "negotiate" | "refresh" }) => void;
}

export interface TokenKeeper {
  /** Stops refreshing (the query keeps the last token). */
  stop(): void;
  /** Negotiates and hands the fresh token to the gateway now. */
  refresh(): Promise<{ expiresAt: number } | null>;
  /** The connection's deadline as last known, unix seconds, or null. */
  readonly expiresAt: number | null;
}

/** Keeps the access token of `socket`'s connection fresh until `stop()`. */
export function keepTokenFresh(socket: Socket, options: KeepTokenFreshOptions): TokenKeeper;

declare const client: {
  REFRESH_EVENT: typeof REFRESH_EVENT;
  RefreshError: typeof RefreshError;
  decodeClaims: typeof decodeClaims;
  tokenExpiry: typeof tokenExpiry;
  refreshDelay: typeof refreshDelay;
  refreshToken: typeof refreshToken;
  keepTokenFresh: typeof keepTokenFresh;
};
export default client;
