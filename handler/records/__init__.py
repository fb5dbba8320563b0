"""Records: stored objects -> one result or error record each, in S3.

``pipeline`` is the road (fetch, classify in one model call, write); ``notifications`` serves
S3/SQS events (``s3_handler``), ``bulk`` Distributed Map batches and S3 Batch Operations
(``bulk_handler``); ``storage`` is where records go and whether an object was already answered.
"""
