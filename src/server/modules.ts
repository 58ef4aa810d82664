// The tunnel server's modules, in start order.
import type { ModuleFactory } from "../agent/module.ts";
import { relayModule } from "./relay/index.ts";

export const serverModules: ModuleFactory[] = [relayModule];
