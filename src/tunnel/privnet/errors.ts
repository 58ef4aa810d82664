/** The nonce exchange or key confirmation did not complete (timeout, EOF, reflected nonce). */
export class PrivnetHandshakeError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(`privnet: ${message}`, options);
    this.name = 'PrivnetHandshakeError';
  }
}

/** The remote's key confirmation did not decrypt: it holds a different mesh secret (or is not a mesh node). */
export class PrivnetKeyMismatchError extends Error {
  constructor() {
    super('privnet: key confirmation failed (peer uses a different mesh secret, or is not an edgemesh node)');
    this.name = 'PrivnetKeyMismatchError';
  }
}
