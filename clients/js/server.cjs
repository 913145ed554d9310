// Token revocation for Node application servers, through the official
// `@azure/web-pubsub` WebPubSubServiceClient the app already has: the calls
// go through the client's own pipeline, so they are signed exactly as its
// other REST calls (a JWT with the access key, audience the request URL).
//
//   const { WebPubSubServiceClient } = require("@azure/web-pubsub");
//   const { revokeUserTokens, revokeToken } = require("portcullis-client/server");
//   const service = new WebPubSubServiceClient(connectionString, "chat");
//   await revokeUserTokens(service, "alice");          // a logout: every token so far
//   await revokeToken(service, jti, { expiresAt });    // one token, by its jti
//
// Both resolve to `{ closed }`, the number of live connections closed, and
// reject with an Error carrying `statusCode` when the gateway refuses.
"use strict";

const API_VERSION = "2024-01-01";

function seconds(value) {
  if (value === undefined || value === null) return undefined;
  const ms = value instanceof Date ? value.getTime() : Number(value) * 1000;
  if (!Number.isFinite(ms) || ms < 0) throw new TypeError("a time must be a Date or unix seconds");
  return Math.ceil(ms / 1000);
}

// The pipeline helpers come with @azure/web-pubsub, which the app has: from
// this package's place in node_modules, or, where the package is linked in
// (`file:` dependencies are symlinks), from the app's.
function corePipeline() {
  const { createRequire } = require("node:module");
  const places = [__filename, require.main && require.main.filename, `${process.cwd()}/`];
  for (const place of places.filter(Boolean)) {
    try {
      return createRequire(place)("@azure/core-rest-pipeline");
    } catch (error) {
      if (error.code !== "MODULE_NOT_FOUND") throw error;
    }
  }
  throw new Error("portcullis-client/server needs @azure/web-pubsub (and its @azure/core-rest-pipeline) installed");
}

async function post(service, path, query) {
  const { createPipelineRequest } = corePipeline();
  const base = service.endpoint.endsWith("/") ? service.endpoint : `${service.endpoint}/`;
  const url = new URL(`api/hubs/${encodeURIComponent(service.hubName)}/${path}`, base);
  url.searchParams.set("api-version", API_VERSION);
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined) url.searchParams.set(name, String(value));
  }
  const request = createPipelineRequest({
    url: url.toString(),
    method: "POST",
    allowInsecureConnection: url.protocol === "http:",
  });
  const response = await service.client.sendRequest(request);
  const body = response.bodyAsText ? JSON.parse(response.bodyAsText) : {};
  if (response.status !== 200) {
    const error = new Error(`revocation refused (${response.status}): ${body.message ?? ""}`);
    error.statusCode = response.status;
    throw error;
  }
  return { closed: body.closed };
}

/**
 * Revokes every token of `user` issued before `issuedBefore` (a Date or unix
 * seconds; default: every token issued so far, this second included).
 */
function revokeUserTokens(service, user, { issuedBefore } = {}) {
  const before = seconds(issuedBefore);
  return post(service, `users/${encodeURIComponent(user)}/tokens/:revoke`, { issuedBefore: before });
}

/**
 * Revokes one token by its `jti`; `expiresAt` (its `exp`, a Date or unix
 * seconds) lets the gateway forget the revocation once the token expires.
 */
function revokeToken(service, tokenId, { expiresAt } = {}) {
  return post(service, `tokens/${encodeURIComponent(tokenId)}/:revoke`, { expiresAt: seconds(expiresAt) });
}

module.exports = { revokeUserTokens, revokeToken };
