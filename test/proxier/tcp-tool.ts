// Tiny TCP server/client run inside a test namespace.
//   serve HOST PORT    prints "listening", then "accepted LOCAL_ADDR:PORT" per connection
//   connect HOST PORT  prints the server's greeting; exit 1 on error, 2 on timeout
export {};

const [mode, host = "", portText = ""] = process.argv.slice(2);
const port = Number(portText);

if (mode === "serve") {
  Bun.listen({
    hostname: host,
    port,
    socket: {
      open(s) {
        console.log(`accepted ${s.localAddress}:${s.localPort}`);
        s.end("hello from listener\n");
      },
      data() {},
    },
  });
  console.log("listening");
} else if (mode === "connect") {
  setTimeout(() => {
    console.error("timeout");
    process.exit(2);
  }, 3000);
  let got = "";
  try {
    await Bun.connect({
      hostname: host,
      port,
      socket: {
        data(_s, d) {
          got += d.toString();
        },
        close() {
          console.log(got.trim());
          process.exit(0);
        },
        error(_s, e) {
          console.error(String(e));
          process.exit(1);
        },
      },
    });
  } catch (e) {
    console.error(String(e));
    process.exit(1);
  }
} else {
  console.error("usage: tcp-tool.ts serve|connect HOST PORT");
  process.exit(64);
}
