"""Developer tools, never shipped in the function: the ``imgrec`` CLI, local stand-ins for what AWS
provides (API Gateway, the Lambda Runtime API, S3 with its POST policy checks), event builders,
the fixtures generator and the hostile-input builders."""
