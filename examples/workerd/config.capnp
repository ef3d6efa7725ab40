# workerd config for worker.js: one module worker on one HTTP socket.
#
# It embeds two files from the directory it sits in:
#   worker.js              the worker bundled with the library (esbuild, see ../README.md)
#   kernels.baseline.wasm  a copy of node_modules/jacobian-wasm/dist/kernels.baseline.wasm
# (or change the paths below: they are relative to this file). Then
#   workerd serve config.capnp                                    listens on 127.0.0.1:8787
#   workerd serve config.capnp --socket-addr http=127.0.0.1:9000  anywhere else
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [(name = "main", worker = .normsWorker)],
  sockets = [(name = "http", address = "127.0.0.1:8787", http = (), service = "main")],
);

const normsWorker :Workerd.Worker = (
  modules = [
    (name = "worker.js", esModule = embed "worker.js"),
    # A `wasm` module, named as the bundle imports it: workerd compiles it when it loads the
    # config, and the import gives the WebAssembly.Module that initialize() takes.
    (name = "jacobian-wasm/kernels.baseline.wasm", wasm = embed "kernels.baseline.wasm"),
  ],
  # At most the date of the workerd build that runs it (`workerd --version` prints it).
  compatibilityDate = "2026-11-01",
);
