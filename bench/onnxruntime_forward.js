// bench/onnxruntime_forward.js: times ONNX Runtime's CPU forward pass (npm onnxruntime-node, MLAS)
// on a model exported by torch.onnx; bench/cpu_vs_peers.py runs it and reads the JSON it prints.
//
//   node bench/onnxruntime_forward.js MODEL.onnx BATCH HEIGHT WIDTH THREADS RUNS
//
// onnxruntime-node is looked up through NODE_PATH (install it with
// `ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node@1.30.0`, which works offline).
const ort = require("onnxruntime-node");

async function main() {
  const [modelPath, batch, height, width, threads, runs] = process.argv.slice(2);
  const shape = [Number(batch), 3, Number(height), Number(width)];
  const session = await ort.InferenceSession.create(modelPath, {
    intraOpNumThreads: Number(threads),
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
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
  console.log(JSON.stringify({ median_seconds: median, images_per_second: shape[0] / median }));
}

main().catch((error) => {
  console.error(error.message);
  process.exit(1);
});
