// scripts/build.sh defines EDGEMESH_VERSION (package.json version + git hash);
// running from source falls back to the package version marked "dev".
import pkg from "../package.json" with { type: "json" };

declare const EDGEMESH_VERSION: string | undefined;

export const VERSION: string = typeof EDGEMESH_VERSION === "string" ? EDGEMESH_VERSION : `${pkg.version}-dev`;
