// Transformers.js in a page served by seq2seq-onnx: the model, the library and ONNX Runtime's WASM
// all come from 127.0.0.1 (the default WASM location is a CDN, which fails offline).
export function useLocalFiles(env) {
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = '/models/';
  env.useBrowserCache = false;
  env.backends.onnx.wasm.wasmPaths = {
    mjs: '/lib/ort-wasm-simd-threaded.asyncify.mjs',
    wasm: '/lib/ort-wasm-simd-threaded.asyncify.wasm',
  };
}
