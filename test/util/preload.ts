// Loaded before every test file (bunfig.toml): after the last test, the
// temporary directories the tests made are removed.
import { afterAll } from "bun:test";
import { removeTempDirs } from "./temp.ts";

afterAll(removeTempDirs);
