// bench/onnxruntime_forward.js: times ONNX Runtime's CPU forward pass (npm onnxruntime-node, MLAS)
// on a model exported by torch.onnx; bench/cpu_vs_peers.py runs it and reads the JSON it prints.
//
//   node bench/onnxruntime_forward.js MODEL.onnx BATCH HEIGHT WIDTH THREADS RUNS [PROFILE.json]
//
// With PROFILE.json, ONNX Runtime's own profiler runs too (the times printed are then a little
// slower) and each node's median kernel time over the timed runs goes to PROFILE.json, in the
// order the nodes ran: where ONNX Runtime spends its time, layer by layer, to set beside
// `prism bench`'s profile.
//
// onnxruntime-node is looked up through NODE_PATH (install it with
// `ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node@1.30.0`, which works offline).
const fs = require("fs");
const os = require("os");
const path = require("path");
const ort = require("onnxruntime-node");

// ONNX Runtime's profile (a JSON list of events) to [{node, op, output, ms}]: each node's median
// kernel time, leaving out its first run (the warm-up).
function nodeMedians(profileFile) {
  const byNode = new Map();
  for (const event of JSON.parse(fs.readFileSync(profileFile, "utf8"))) {
    if (event.cat !== "Node" || !event.name.endsWith("_kernel_time")) continue;
    if (!byNode.has(event.name)) byNode.set(event.name, { event, durations: [] });
    byNode.get(event.name).durations.push(event.dur);
  }
  return [...byNode.values()].map(({ event, durations }) => {
    const timed = durations.length > 1 ? durations.slice(1).sort((a, b) => a - b) : durations;
    return {
      node: event.name.replace(/_kernel_time$/, ""),
      op: event.args.op_name,
      output: (event.args.output_type_shape || []).map((typed) => Object.values(typed)[0]),
      ms: timed[Math.floor(timed.length / 2)] / 1000,
    };
  });
}

async function main() {
  const [modelPath, batch, height, width, threads, runs, profilePath] = process.argv.slice(2);
  const shape = [Number(batch), 3, Number(height), Number(width)];
  const profilePrefix = path.join(os.tmpdir(), `onnxruntime-profile-${process.pid}`);
  const session = await ort.InferenceSession.create(modelPath, {
    intraOpNumThreads: Number(threads),
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
    ...(profilePath ? { enableProfiling: true, profileFilePrefix: profilePrefix } : {}),
  });
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; ++i) data[i] = Math.sin(i * 0.37);  // any values: timing only
  const feeds = { [session.inputNames[0]]: new ort.Tensor("float32", data, shape) };
  await session.run(feeds);  // warm-up: allocations and kernel selection
  const seconds = [];
  for (let r = 0; r < Number(runs); ++r) {
    const start = process.hrtime.bigint();
    await session.run(feeds);
    seconds.push(Number(process.hrtime.bigint() - start) / 1e9);
  }
  seconds.sort((a, b) => a - b);
  const median = seconds[Math.floor(seconds.length / 2)];
  if (profilePath) {
    session.endProfiling();
    const folder = path.dirname(profilePrefix);
    const written = fs.readdirSync(folder).filter((name) => name.startsWith(path.basename(profilePrefix)));
    if (written.length !== 1) throw new Error(`ONNX Runtime's profile not found in ${folder}`);
    const profileFile = path.join(folder, written[0]);
    const lines = nodeMedians(profileFile).map((node) => JSON.stringify(node));
    fs.writeFileSync(profilePath, "[\n" + lines.join(",\n") + "\n]\n");
    fs.unlinkSync(profileFile);
  }
  console.log(JSON.stringify({ median_seconds: median, images_per_second: shape[0] / median }));
}

main().catch((error) => {
  console.error(error.message);
  process.exit(1);
});
