// The agent's modules, in start order (stopped in reverse). Declared once,
// here, as CoreDNS declares its plugin order in one file. The proxier comes
// before traffic: it brings up the bridge IP the listeners bind to.
import type { ModuleFactory } from "./module.ts";
import { controllerModule } from "./controller/index.ts";
import { tunnelModule } from "./tunnel/index.ts";
import { proxierModule } from "./proxier/index.ts";
import { dnsModule } from "./dns/index.ts";
import { trafficModule } from "./traffic/index.ts";
import { podnetModule } from "./podnet/index.ts";

export const agentModules: ModuleFactory[] = [controllerModule, tunnelModule, proxierModule, dnsModule, trafficModule, podnetModule];
