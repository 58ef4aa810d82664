// Help texts: the top-level one and one per subcommand.
export const MAIN_USAGE = `edgemesh: service mesh for edge nodes behind NATs

Usage:
  edgemesh server [--config FILE]     run the tunnel server (relay, hole-punch helper)
  edgemesh agent --config FILE        run the agent on an edge node
  edgemesh status [--admin HOST:PORT] [--json]
                                      show a running agent's or server's state
  edgemesh psk [--out FILE]           a new random mesh secret, printed or written (mode 600)
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
  help: "",
};
