"""The parts of the photo-size benchmark (`python -m workbench.bench.photos`): the inputs it
makes, the per-stage CPU in process, the duplicate check's cost, POST /index over HTTP against
raw onnxruntime, and the server's memory with 36 MP searches."""
