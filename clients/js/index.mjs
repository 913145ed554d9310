// ES module entry of portcullis-client: the same code as the browser file
// portcullis-client.js (a classic script / CommonJS module), re-exported.
import client from "./portcullis-client.js";

export const { REFRESH_EVENT, RefreshError, decodeClaims, tokenExpiry, refreshDelay, refreshToken, keepTokenFresh } = client;
export default client;
