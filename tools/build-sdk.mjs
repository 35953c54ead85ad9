// npm run build:sdk: compiles sdk/src into sdk/dist/esm (import) and sdk/dist/cjs (require), each
// with its .d.ts files; dist/cjs gets a package.json saying "commonjs" so Node reads it as such. The
// CLI (src/cli, the package's "bin") is built into dist/esm only, and made executable: npm pack keeps
// the mode, so the tarball's bin runs as it is.
import { execFileSync } from "node:child_process";
import { chmodSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const sdk = join(root, "sdk");
const tsc = join(root, "node_modules", "typescript", "bin", "tsc");

rmSync(join(sdk, "dist"), { recursive: true, force: true });
for (const project of ["tsconfig.json", "tsconfig.cjs.json"]) {
  execFileSync(process.execPath, [tsc, "-p", join(sdk, project)], { stdio: "inherit" });
}
writeFileSync(join(sdk, "dist", "cjs", "package.json"), '{ "type": "commonjs" }\n');
chmodSync(join(sdk, "dist", "esm", "cli", "main.js"), 0o755);
