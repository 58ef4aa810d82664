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

/** The remote runs the other privnet version: set the same `privateNetwork` on every node. */
export class PrivnetVersionError extends Error {
  constructor(ours: 1 | 2, theirs: 1 | 2) {
    super(
      `privnet: the other end runs private network v${theirs}, this node v${ours} (an edgemesh from before v2, or privateNetwork: v1 set on one side): every node of a mesh must use the same`,
    );
    this.name = 'PrivnetVersionError';
  }
}
