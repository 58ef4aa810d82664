// The agent's modules, in start order (stopped in reverse). Declared once,
// here, as CoreDNS declares its plugin order in one file.
import type { ModuleFactory } from "./module.ts";
import { controllerModule } from "./controller/index.ts";
import { tunnelModule } from "./tunnel/index.ts";
import { trafficModule } from "./traffic/index.ts";

export const agentModules: ModuleFactory[] = [controllerModule, tunnelModule, trafficModule];
