"""The plux plugin LocalStack finds at start, in the namespace `localstack.lambda.runtime_executor`.

It is kept apart from the executor so that LocalStack can list plugins without importing the
executor (and its LocalStack imports) until `LAMBDA_RUNTIME_EXECUTOR=process` selects it.
"""

from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin


class ProcessRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    """`LAMBDA_RUNTIME_EXECUTOR=process`: Lambda functions as host processes under the adapter."""

    name = "process"

    def load(self, *args, **kwargs):
        from lambda_process_executor.executor import ProcessRuntimeExecutor

        return ProcessRuntimeExecutor
