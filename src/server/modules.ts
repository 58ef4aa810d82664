// The tunnel server's modules, in start order.
import type { ModuleFactory } from "../agent/module.ts";

export const serverModules: ModuleFactory[] = [];
