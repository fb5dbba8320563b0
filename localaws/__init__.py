"""Local stand-ins for what AWS provides, never shipped in the function: API Gateway (the local API
server and the events it builds), Lambda (a context object, an execution environment per process,
the Runtime API for the real ``awslambdaric``), and S3 (moto behind a proxy that checks presigned
POST policies, the S3 -> SQS notifier), with the upload client and the S3 demo that use them.
``imgrec serve``, ``imgrec rie``, ``imgrec upload`` and ``imgrec s3-demo`` run them."""
