"""A LocalStack Lambda runtime executor that runs `provided.al2023` / `provided.al2` functions as
host processes, without Docker.

Each execution environment LocalStack asks for is one `adapter emulate` process (this repository's
adapter, serving only Lambda's Invoke API) hosting the function's `bootstrap`. See README.md.

Modules: `plugin` is what LocalStack discovers; `executor` is the `RuntimeExecutor`; `runnable`
decides what this executor can run and says why not; `output` splits the adapter's output into
each invocation's logs.
"""
