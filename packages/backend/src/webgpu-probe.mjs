// Prints, as one JSON line on stdout, the WebGPU adapter that Dawn finds here (or null).
// backend 'auto' runs it in a child process: Dawn writes warnings about the adapter's limits
// straight to the process's stderr, which no JavaScript can silence, and a process that ends up
// on wasm should not print them. Plain JavaScript, so it runs without a TypeScript loader.
const dawn = await import('webgpu');
const gpu = dawn.create([]);
const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
const info = adapter?.info;
const described = info && {
  vendor: info.vendor,
  architecture: info.architecture,
  device: info.device,
  description: info.description,
  isFallbackAdapter: info.isFallbackAdapter === true,
};
process.stdout.write(JSON.stringify(described ?? null) + '\n');
// Dawn's instance can keep the event loop alive; the answer is out.
process.exit(0);
