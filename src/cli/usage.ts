// Help texts: the top-level one and one per subcommand.
export const MAIN_USAGE = `edgemesh: service mesh for edge nodes behind NATs

Usage:
  edgemesh server [--config FILE]     run the tunnel server (relay, hole-punch helper)
  edgemesh agent --config FILE        run the agent on an edge node
  edgemesh status [--admin HOST:PORT] [--json]
                                      show a running agent's or server's state
  edgemesh psk [--out FILE]           a new random mesh secret, printed or written (mode 600)
  edgemesh ca init --dir DIR          a new mesh CA (on the operator's machine only)
  edgemesh cert issue --ca DIR --node NAME --out DIR [--role R] [--days N] [--pubkey FILE]
                                      a node's key and certificate
  edgemesh cert keygen --out FILE     a node key made on the node (FILE.pub goes to the CA)
  edgemesh ca revoke --ca DIR (--node NAME | --serial N) --out FILE
                                      add a node to the revocation list
  edgemesh version                    print the version
  edgemesh COMMAND --help             help for one command

Exit codes: 0 ok, 1 runtime or config error, 2 usage error.
`;

export const COMMAND_USAGE: Record<string, string> = {
  server: `Usage: edgemesh server [--config FILE]

Runs the tunnel server: a libp2p node that gives agents relay reservations,
relays their traffic when no direct path exists and helps them hole-punch.

  --config FILE   config file (default /etc/edgemesh/edgemesh.yaml); the server
                  reads the common fields and the "server" section
`,
  agent: `Usage: edgemesh agent --config FILE

Runs the agent on an edge node: service discovery, DNS, ClusterIP proxying
and the tunnel to other nodes.

  --config FILE   config file, e.g. /etc/edgemesh/edgemesh.yaml (required);
                  see edgemesh.yaml.example for every field
`,
  status: `Usage: edgemesh status [--admin HOST:PORT] [--json]

Asks a running agent or server for its state over the admin endpoint and
prints it as a table.

  --admin HOST:PORT   admin endpoint (default: the agent's 127.0.0.1:10556,
                      then the server's 127.0.0.1:10557)
  --json              print the raw /status document
`,
  version: `Usage: edgemesh version

Prints the version (release + git commit).
`,
  psk: `Usage: edgemesh psk [--out FILE]

Makes a new random mesh secret (32 bytes, base64). Every node of a mesh needs
the same secret, readable by root only:

  edgemesh psk --out /etc/edgemesh/psk

writes it with mode 600 (an existing file is never replaced). Without --out
it is printed to stdout. The agent and server warn at start when the file is
readable by others.
`,
  "ca init": `Usage: edgemesh ca init --dir DIR

Makes a new mesh CA: DIR/ca.key (mode 600; keep it on the operator's machine,
never on an edge node) and DIR/ca.pub (copied to every node as trust.ca).
Existing files are never replaced.
`,
  "cert issue": `Usage: edgemesh cert issue --ca DIR --node NAME --out OUTDIR [--role agent|server|relay] [--days N] [--pubkey FILE]

Issues a certificate binding NAME, its role and its key, signed by the CA in
DIR: OUTDIR/NAME.crt, and OUTDIR/NAME.key (mode 600, a new key) unless
--pubkey names a public key made on the node (edgemesh cert keygen), so the
private key never travels.

  --role    agent (default), server (a tunnel server), relay (an agent others may relay through)
  --days    validity in days (default 365)
`,
  "cert keygen": `Usage: edgemesh cert keygen --out FILE

Makes a node key on the node: FILE (mode 600) and FILE.pub, which goes to the
operator for "edgemesh cert issue --pubkey FILE.pub".
`,
  "ca revoke": `Usage: edgemesh ca revoke --ca DIR (--node NAME | --serial N) --out FILE

Adds an entry to the CA-signed revocation list in FILE (made when absent).
--node revokes every certificate of NAME issued until now (a replacement
issued later is not revoked); --serial one certificate. Servers read FILE
(server.revocations) and hand it to every agent.
`,
  help: "",
};
