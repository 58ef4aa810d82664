// Runs the production proxier module (the factory the agent uses, host
// binaries, no command prefix) in this process: the test starts it under
// `ip netns exec`. stdin: one ListenerTable as JSON per line, or "stop".
// stdout: "started", then the module status (JSON) after each table applies,
// then "stopped".
import { Metrics } from "../../src/admin/metrics.ts";
import { Bus } from "../../src/agent/bus.ts";
import { proxierModule } from "../../src/agent/proxier/index.ts";
import { buildConfig } from "../../src/config/load.ts";
import { createLogger } from "../../src/log.ts";
import type { ListenerTable } from "../../src/model/listeners.ts";
import { tempConfigDir } from "../util/run.ts";

const dir = tempConfigDir();
const config = buildConfig({ psk: "psk" }, dir.dir, "", { role: "agent", hostname: () => "node1" });
const log = createLogger("proxier", "info");
const bus = new Bus(log);
const module = proxierModule.create({ config, bus, log, metrics: new Metrics(), setReady: () => {} });
const status = () => (module.status!() as { proxier: { generation: number } }).proxier;

await module.start();
console.log("started");
for await (const line of console) {
  if (line.trim() === "stop") break;
  const t = JSON.parse(line) as ListenerTable;
  bus.publish("listeners", t);
  while (status().generation !== t.generation) await Bun.sleep(5);
  console.log(JSON.stringify(status()));
}
await module.stop();
console.log("stopped");
process.exit(0);
