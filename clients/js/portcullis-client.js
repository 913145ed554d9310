/*! portcullis-client 0.1.0 | MIT OR Apache-2.0
 *
 * Keeps the access token of a socket.io-client connection to a Portcullis
 * gateway fresh:
 *
 * - before the token expires it asks the application for a new one (the
 *   app's `/negotiate`) and hands it to the gateway over the live connection
 *   (the reserved event "portcullis:refresh", acknowledged by the gateway
 *   with the new expiry), so the connection keeps its socket id and rooms;
 * - it keeps the freshest token in `socket.io.opts.query.access_token`, and
 *   negotiates again as soon as the connection drops (and after a refused
 *   reconnection attempt), so socket.io's own reconnection presents a valid
 *   token.
 *
 * One plain file, no dependencies, no build step: a classic <script> gets
 * `window.PortcullisClient`; CommonJS gets `module.exports`; ES modules
 * import `portcullis-client` (index.mjs re-exports this file).
 */
(function (root, factory) {
  if (typeof module === "object" && module && module.exports) module.exports = factory();
  else root.PortcullisClient = factory();
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";

  /** The reserved Socket.IO event the gateway intercepts (never reaches the app). */
  const REFRESH_EVENT = "portcullis:refresh";
  /** Refresh this long before `exp` (at most half of the token's lifetime). */
  const DEFAULT_MARGIN_MS = 30000;
  /** How long the gateway may take to acknowledge a refresh. */
  const DEFAULT_ACK_TIMEOUT_MS = 10000;
  /** Never schedule refreshes closer than this: a token that is already
   * short or expired must not turn into a busy loop of negotiations. */
  const MIN_DELAY_MS = 1000;
  /** Retries after a failed refresh back off up to this. */
  const MAX_RETRY_MS = 30000;
  /** Clock skew tolerated between the token's issuer and this client. */
  const CLOCK_SKEW_MS = 30000;

  /**
   * A refresh the gateway refused (`code` 400, 401 or 403, as it answered),
   * or that got no answer (`code` "timeout") or could not be sent
   * (`code` "disconnected"). The message never contains the token.
   */
  class RefreshError extends Error {
    constructor(code, message) {
      super(message);
      this.name = "RefreshError";
      this.code = code;
    }
  }

  function base64UrlToBytes(text) {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    const binary = atob(base64);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  /**
   * The claims of a JWT, decoded WITHOUT verification (the client only
   * needs to know when its token expires; the gateway verifies it), or
   * null when `token` is not a JWT.
   */
  function decodeClaims(token) {
    if (typeof token !== "string") return null;
    const parts = token.split(".");
    if (parts.length !== 3) return null;
    try {
      const claims = JSON.parse(new TextDecoder().decode(base64UrlToBytes(parts[1])));
      return claims && typeof claims === "object" ? claims : null;
    } catch {
      return null;
    }
  }

  /**
   * When `token` expires and was issued, in milliseconds since the epoch
   * ({ expiresAt, issuedAt }; issuedAt null without `iat`), or null for a
   * token without a numeric `exp`.
   */
  function tokenExpiry(token) {
    const claims = decodeClaims(token);
    if (!claims || typeof claims.exp !== "number" || !Number.isFinite(claims.exp)) return null;
    const issuedAt = typeof claims.iat === "number" && Number.isFinite(claims.iat) ? claims.iat * 1000 : null;
    return { expiresAt: claims.exp * 1000, issuedAt };
  }

  /**
   * How long from `now` to wait before refreshing `token`: `marginMs` before
   * its expiry, or half its remaining lifetime when that is shorter (short
   * tokens), never less than a second. Null for a token without `exp`.
   *
   * The remaining lifetime is `exp - now` by the local clock, unless that
   * is impossible for a token with `iat` (already past, or longer than the
   * whole lifetime `exp - iat` plus 30 s): the local clock is wrong (a
   * browser's can be), and the lifetime counts from now instead (tokens
   * come fresh from negotiate). A clock that is ahead makes refreshes
   * early, never late.
   */
  function refreshDelay(token, marginMs = DEFAULT_MARGIN_MS, now = Date.now()) {
    const expiry = tokenExpiry(token);
    if (!expiry) return null;
    let remaining = expiry.expiresAt - now;
    const lifetime = expiry.issuedAt !== null ? expiry.expiresAt - expiry.issuedAt : null;
    if (lifetime !== null && lifetime > 0 && (remaining <= 0 || remaining > lifetime + CLOCK_SKEW_MS)) {
      remaining = lifetime;
    }
    const margin = Math.min(marginMs, remaining / 2);
    return Math.max(MIN_DELAY_MS, Math.floor(remaining - margin));
  }

  /**
   * Hands `token` to the gateway over the live connection of `socket` (any
   * namespace it is connected to). Resolves with `{ expiresAt }` (unix
   * seconds, the new token's `exp`) once the gateway accepted it; rejects with a
   * RefreshError otherwise. The connection keeps its old deadline on failure.
   */
  function refreshToken(socket, token, { timeoutMs = DEFAULT_ACK_TIMEOUT_MS } = {}) {
    return new Promise(function (resolve, reject) {
      if (!socket.connected) {
        reject(new RefreshError("disconnected", "the socket is not connected"));
        return;
      }
      socket.timeout(timeoutMs).emit(REFRESH_EVENT, { token: token }, function (err, answer) {
        if (err) {
          reject(new RefreshError("timeout", "the gateway did not acknowledge the refresh within " + timeoutMs + " ms"));
        } else if (answer && answer.ok === true) {
          resolve({ expiresAt: typeof answer.expiresAt === "number" ? answer.expiresAt : null });
        } else {
          const code = answer && typeof answer.code === "number" ? answer.code : 400;
          const message = answer && typeof answer.message === "string" ? answer.message : "the gateway refused the token";
          reject(new RefreshError(code, message));
        }
      });
    });
  }

  /** The query socket.io-client will use for its next Engine.IO connection, as an object. */
  function queryOf(manager) {
    const query = manager.opts.query;
    if (typeof query === "string") return Object.fromEntries(new URLSearchParams(query));
    return query && typeof query === "object" ? query : {};
  }

  /** The HTTP status of a failed (re)connection attempt, when engine.io-client tells it. */
  function statusOf(error) {
    if (!error) return undefined;
    if (typeof error.description === "number") return error.description;
    if (error.description && typeof error.description.status === "number") return error.description.status;
    if (error.context && typeof error.context.status === "number") return error.context.status;
    return undefined;
  }

  /**
   * Keeps the token of `socket`'s connection fresh until `stop()`.
   *
   * options:
   * - negotiate: async () => ({ token }) — the app's negotiate (a string is
   *   accepted too). Called before expiry, when the connection drops, and
   *   after a reconnection attempt refused with 401.
   * - marginMs: refresh this long before expiry (default 30 s; half the
   *   remaining lifetime for tokens shorter than twice that).
   * - ackTimeoutMs: how long the gateway may take to acknowledge (10 s).
   * - inBand: false to never send "portcullis:refresh" (a gateway without
   *   in-band refresh): the token is then only kept fresh for reconnections.
   * - onRefresh({ expiresAt }): the gateway accepted a fresh token.
   * - onToken(token): negotiate produced a token (now in the query).
   * - onError(error, { phase }): phase "negotiate" or "refresh".
   *
   * Returns { stop(), refresh(), expiresAt }: refresh() negotiates and hands
   * the token over now; expiresAt is the connection's deadline as last
   * known (unix seconds), or null.
   *
   * Use one per Manager (one Engine.IO connection): the token belongs to
   * the connection, whichever namespace carries the refresh.
   */
  function keepTokenFresh(socket, options) {
    const opts = options || {};
    if (typeof opts.negotiate !== "function") throw new TypeError("keepTokenFresh: options.negotiate must be a function");
    if (!socket || !socket.io || typeof socket.timeout !== "function") {
      throw new TypeError("keepTokenFresh: a socket.io-client Socket is required");
    }
    const manager = socket.io;
    const marginMs = opts.marginMs !== undefined ? opts.marginMs : DEFAULT_MARGIN_MS;
    const ackTimeoutMs = opts.ackTimeoutMs !== undefined ? opts.ackTimeoutMs : DEFAULT_ACK_TIMEOUT_MS;
    const inBand = opts.inBand !== false;

    let stopped = false;
    let timer = null;
    let negotiating = null;
    let failures = 0;
    let expiresAt = null;

    // The app's callbacks must not break the refresh loop.
    function notify(callback, value, extra) {
      if (typeof callback !== "function") return;
      try {
        callback(value, extra);
      } catch {
        // ignored: see above
      }
    }

    function report(error, phase) {
      notify(opts.onError, error, { phase: phase });
    }

    function currentToken() {
      const token = queryOf(manager).access_token;
      return typeof token === "string" ? token : null;
    }

    // A new query object rather than a change to the old one: the live
    // Engine.IO connection keeps the token it was opened with (its later
    // requests and its WebSocket upgrade carry it, as the gateway binds a
    // session to its token), while the next connection takes the fresh one
    // (socket.io-client hands `opts` to every new engine, and engine.io-client
    // copies the query into each transport when it creates it).
    function setToken(token) {
      manager.opts.query = Object.assign({}, queryOf(manager), { access_token: token });
      notify(opts.onToken, token);
    }

    // One negotiation at a time: a refresh and a drop at once share it.
    function negotiate(reason) {
      if (!negotiating) {
        negotiating = Promise.resolve()
          .then(function () {
            return opts.negotiate({ reason: reason });
          })
          .then(function (answer) {
            const token = typeof answer === "string" ? answer : answer && answer.token;
            if (typeof token !== "string" || token === "") {
              throw new TypeError("negotiate() must resolve to { token } (or the token)");
            }
            if (!stopped) setToken(token);
            return token;
          })
          .finally(function () {
            negotiating = null;
          });
      }
      return negotiating;
    }

    function clearTimer() {
      if (timer !== null) clearTimeout(timer);
      timer = null;
    }

    function arm(delay) {
      clearTimer();
      if (stopped || !inBand) return;
      timer = setTimeout(function () {
        timer = null;
        refreshNow().catch(function () {});
      }, delay);
      // In Node, a pending refresh alone does not keep the process alive.
      if (timer && typeof timer.unref === "function") timer.unref();
    }

    function schedule(token) {
      const expiry = tokenExpiry(token);
      expiresAt = expiry ? Math.floor(expiry.expiresAt / 1000) : null;
      const delay = refreshDelay(token, marginMs);
      if (delay !== null) arm(delay);
    }

    async function refreshNow() {
      clearTimer();
      if (stopped) throw new RefreshError("stopped", "keepTokenFresh was stopped");
      let token;
      try {
        token = await negotiate("refresh");
      } catch (error) {
        report(error, "negotiate");
        retry();
        throw error;
      }
      // Disconnected: the fresh token waits in the query for the
      // reconnection, whose "connect" schedules the next refresh.
      if (stopped || !socket.connected) return null;
      try {
        const answer = await refreshToken(socket, token, { timeoutMs: ackTimeoutMs });
        failures = 0;
        schedule(token);
        expiresAt = answer.expiresAt;
        notify(opts.onRefresh, { expiresAt: answer.expiresAt });
        return answer;
      } catch (error) {
        report(error, "refresh");
        retry();
        throw error;
      }
    }

    // Retries back off (1 s, 2 s, 4 s, … 30 s) while connected; until the
    // old deadline passes the connection stays, after it the reconnection
    // path takes over.
    function retry() {
      if (stopped || !socket.connected) return;
      failures += 1;
      arm(Math.min(MAX_RETRY_MS, MIN_DELAY_MS * Math.pow(2, failures - 1)));
    }

    function onConnect() {
      failures = 0;
      const token = currentToken();
      if (token) schedule(token);
    }

    function onDisconnect(reason) {
      clearTimer();
      // The server ended the session ("io server disconnect": a logout or a
      // revoked token) or the app did: socket.io does not reconnect, and
      // neither do we negotiate; the app decides what comes next.
      if (reason === "io server disconnect" || reason === "io client disconnect") return;
      // Otherwise socket.io reconnects after its first back-off delay (at
      // least half a second by default); negotiate at once so the fresh
      // token is in the query before that attempt.
      negotiate("reconnect").catch(function (error) {
        report(error, "negotiate");
      });
    }

    // A (re)connection attempt failed: a 401 means the token in the query
    // was refused (expired, revoked); get a new one before the next attempt.
    // Without a status (a WebSocket-only handshake does not say), do so when
    // the token in the query is within its refresh margin.
    function onManagerError(error) {
      if (stopped) return;
      const status = statusOf(error);
      const token = currentToken();
      const stale = !token || (refreshDelay(token, marginMs) || 0) <= MIN_DELAY_MS;
      if (status === 401 || (status === undefined && stale)) {
        negotiate("reconnect").catch(function (negotiateError) {
          report(negotiateError, "negotiate");
        });
      }
    }

    socket.on("connect", onConnect);
    socket.on("disconnect", onDisconnect);
    manager.on("error", onManagerError);
    if (socket.connected) onConnect();

    return {
      /** Stops refreshing and forgets the socket (the query keeps its token). */
      stop: function () {
        stopped = true;
        clearTimer();
        socket.off("connect", onConnect);
        socket.off("disconnect", onDisconnect);
        manager.off("error", onManagerError);
      },
      /** Negotiates and hands the fresh token to the gateway now. */
      refresh: refreshNow,
      /** The connection's deadline as last known, unix seconds (or null). */
      get expiresAt() {
        return expiresAt;
      },
    };
  }

  return {
    REFRESH_EVENT: REFRESH_EVENT,
    RefreshError: RefreshError,
    decodeClaims: decodeClaims,
    tokenExpiry: tokenExpiry,
    refreshDelay: refreshDelay,
    refreshToken: refreshToken,
    keepTokenFresh: keepTokenFresh,
  };
});
