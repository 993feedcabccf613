// Times examples/phase_cost.rs under V8 (Node), the runtime Envoy runs finguard in:
//   cargo build --release --example body_cost --target wasm32-wasip1
//   node examples/wasi_run.mjs target/wasm32-wasip1/release/examples/phase_cost.wasm v1 judge 20000
// The example links finguard's library, a proxy-wasm reactor, so it is driven through an export
// (phase_cost_run) rather than as a WASI command. Each step first runs unmeasured, so that V8 has
// optimised the code (Envoy compiles everything with TurboFan up front), and then is timed.
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import { argv } from "node:process";

const STEPS = ["none", "judge", "strict", "value", "ignore", "headers",
  "cold-RS256", "cold-PS256", "cold-ES256", "cold-EdDSA", "tape",
  "sig-RS256", "sig-PS256", "sig-ES256", "sig-EdDSA", "redact", "walk", "rules", "detect", "tokenise"];
const CONFIGS = ["f1", "f2", "v1", "v2", "r1"];
const [module, config = "v1", step = "judge", count = "20000", mode = "warm"] = argv.slice(2);
const n = Number(count);
const wasi = new WASI({ version: "preview1", args: [module] });
const wasm = await WebAssembly.compile(await readFile(module));
const imports = wasi.getImportObject();
// The proxy-wasm host functions are imported but never called by the core.
for (const { module: from, name, kind } of WebAssembly.Module.imports(wasm)) {
  if (kind !== "function" || from === "wasi_snapshot_preview1") continue;
  imports[from] ??= {};
  imports[from][name] = () => {
    throw new Error(`host function ${from}.${name} called`);
  };
}
const instance = await WebAssembly.instantiate(wasm, imports);
wasi.initialize({ exports: { memory: instance.exports.memory } });
const run = instance.exports.phase_cost_run;
const configIndex = CONFIGS.indexOf(config);
if (configIndex < 0) throw new Error(`config must be one of ${CONFIGS.join(", ")}`);
const stepIndex = STEPS.indexOf(step);
if (stepIndex < 0) throw new Error(`step must be one of ${STEPS.join(", ")}`);

run(configIndex, stepIndex, n); // warm-up: tier up to TurboFan
if (mode === "cold") {
  // Caches evicted before every request; the module times the requests alone (the clock read
  // costs the same in the `none` step, which is subtracted).
  const cold = instance.exports.phase_cost_run_cold;
  let best = Infinity;
  let floor = Infinity;
  for (let round = 0; round < 11; round++) {
    floor = Math.min(floor, Number(cold(configIndex, 0, n)) / n);
    best = Math.min(best, Number(cold(configIndex, stepIndex, n)) / n);
  }
  console.log(`${config} ${step} (cold caches): ${(best - floor).toFixed(0)} ns (best of 11)`);
  process.exit(0);
}
const setup = timed(() => run(configIndex, 0, 1));
let best = Infinity;
let allocations = 0;
for (let round = 0; round < 5; round++) {
  let ns = timed(() => (allocations = run(configIndex, stepIndex, n)));
  best = Math.min(best, (ns - setup) / n);
}
console.log(`${config} ${step}: ${best.toFixed(0)} ns (best of 5), ${allocations} allocations per request`);

function timed(f) {
  const start = process.hrtime.bigint();
  f();
  return Number(process.hrtime.bigint() - start);
}
